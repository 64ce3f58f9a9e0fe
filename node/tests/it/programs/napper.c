/* A vessel that waits, as a sensor does:
 *
 *   napper MIB NAPS NAP_MS
 *
 * Holds MIB MiB of distinct non-zero memory. NAPS times it writes the next
 * 16 KiB of a ring in that memory and sleeps NAP_MS ms (nanosleep: one
 * poll_oneoff with a relative clock). So it spends nearly all its time
 * blocked in a host call, and reaches the end of a fuel slice rarely.
 *
 * `mark` (found by its magic in a copy of the memory) counts the naps
 * begun, so that a test can see from a memory copy how far it got. It
 * prints "ready" once the memory is filled, and at the end the naps taken,
 * how many of them were shorter than asked by its own monotonic clock
 * (which travels with the vessel and stands still while it moves), and a
 * checksum of the memory: the same for every run, however it was paused,
 * copied or moved. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RING_STEP (16 * 1024)

static volatile struct {
    char magic[16];
    unsigned naps;
} mark = {"NAPPER-MARK-v1\0", 0};

static long long monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

int main(int argc, char **argv) {
    size_t bytes = (size_t)(argc > 1 ? atol(argv[1]) : 16) << 20;
    long naps = argc > 2 ? atol(argv[2]) : 100;
    long nap_ms = argc > 3 ? atol(argv[3]) : 16;
    unsigned char *mem = malloc(bytes);
    if (!mem) { fprintf(stderr, "napper: cannot allocate %zu bytes\n", bytes); return 2; }
    unsigned x = 2463534242u;
    for (size_t i = 0; i < bytes; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        mem[i] = (unsigned char)(x | 1);
    }
    printf("ready\n");
    fflush(stdout);
    struct timespec nap = {nap_ms / 1000, (nap_ms % 1000) * 1000000L};
    long short_naps = 0;
    size_t at = 0;
    for (long n = 0; n < naps; n++) {
        mark.naps = (unsigned)n + 1;
        memset(mem + at, (int)(n % 255) + 1, RING_STEP);
        at = (at + RING_STEP) % bytes;
        long long before = monotonic_ns();
        nanosleep(&nap, NULL);
        if (monotonic_ns() - before < nap_ms * 1000000LL) short_naps++;
    }
    unsigned long long sum = 0;
    for (size_t i = 0; i < bytes; i += 8) {
        unsigned long long w;
        memcpy(&w, mem + i, 8);
        sum = sum * 1099511628211ULL + w;
    }
    printf("naps %ld, short %ld, checksum %016llx\n", naps, short_naps, sum);
    return 0;
}
