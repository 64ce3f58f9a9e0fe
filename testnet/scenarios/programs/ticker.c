// A vessel that stands in for a service until services are merged: it
// prints a numbered line every 200 ms (sleeping in poll_oneoff, where a
// vessel moves at once) for as many ticks as its first argument says.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 600;
    struct timespec ts = {0, 200 * 1000 * 1000};
    for (long i = 1; i <= n; i++) {
        printf("tick %ld\n", i);
        fflush(stdout);
        nanosleep(&ts, NULL);
    }
    return 0;
}
