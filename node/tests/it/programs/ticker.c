/* Prints "tick N" every 100 ms, forever: a vessel that is still running
 * whenever a test moves it. Its log shows whether anything was lost or
 * repeated (the ticks must be 0, 1, 2, … with no gap). */
#include <stdio.h>
#include <time.h>

int main(void) {
    struct timespec t = {0, 100 * 1000 * 1000};
    for (unsigned long n = 0;; n++) {
        printf("tick %lu\n", n);
        fflush(stdout);
        nanosleep(&t, NULL);
    }
}
