/* Prints a line, sleeps 4 s (one poll_oneoff with a relative clock
 * timeout, as nanosleep does in wasi-libc), prints another line. The
 * migration test moves it in the middle of the sleep. */
#include <stdio.h>
#include <time.h>

int main(void) {
    printf("before\n");
    fflush(stdout);
    struct timespec t = {4, 0};
    nanosleep(&t, NULL);
    printf("after\n");
    return 0;
}
