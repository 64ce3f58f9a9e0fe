/* Prints a line, sleeps 6 s (one poll_oneoff with a relative clock
 * timeout, as nanosleep does in wasi-libc), prints another line. Each line
 * carries the guest's own monotonic clock in ms, which travels with the
 * vessel and stands still while it moves (docs/wasi.md, "Clocks"), so the
 * test can tell how long the guest slept whatever the machine's load. The
 * migration test moves it in the middle of the sleep. */
#include <stdio.h>
#include <time.h>

static long long monotonic_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int main(void) {
    printf("before at %lld ms\n", monotonic_ms());
    fflush(stdout);
    struct timespec t = {6, 0};
    nanosleep(&t, NULL);
    printf("after at %lld ms\n", monotonic_ms());
    return 0;
}
