/* Grows its memory by 1 MiB every 20 ms, touching each new MiB, and
 * prints "held N MiB" after each: a vessel for `deploy --max-memory`
 * (issue 16), which must trap it past its limit, saying so, whatever
 * malloc would have answered. Ends by itself (exit 0) at argv[1] MiB
 * (default 256). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Kept where the compiler must assume they are read: otherwise it may
 * elide an allocation that nothing reads, and the memory never grows. */
static char *volatile kept[4096];

int main(int argc, char **argv) {
    long most = argc > 1 ? atol(argv[1]) : 256;
    struct timespec t = {0, 20 * 1000 * 1000};
    for (long n = 1; n <= most; n++) {
        char *p = malloc(1024 * 1024);
        if (!p) {
            printf("malloc failed at %ld MiB\n", n);
            return 3;
        }
        memset(p, 1, 1024 * 1024);
        kept[n % 4096] = p;
        printf("held %ld MiB\n", n);
        fflush(stdout);
        nanosleep(&t, NULL);
    }
    return 0;
}
