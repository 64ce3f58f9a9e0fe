/* memwriter: a vessel with a large, busy memory, for the migration
 * benchmark (scripts/bench_migration.py).
 *
 *   memwriter SIZE_MIB RATE_BYTES_PER_S [sweep|random] [SECONDS] [SEED] [spin|sleep]
 *
 * Allocates SIZE_MIB MiB and fills it with non-zero pseudo-random bytes
 * (every 64 KiB chunk differs from every other and none is all zero, so
 * neither the zero-chunk shortcut nor deduplication flatters a transfer),
 * prints "ready", then writes RATE_BYTES_PER_S bytes per second, 64 bytes at
 * a time, until SECONDS have passed (0 or absent: forever):
 *
 *   sweep   a cursor walks through the whole memory and wraps: the memory
 *           that changes per second equals the bytes written per second
 *           (a log, a ring buffer, a stream being processed);
 *   random  each 64-byte write lands at a uniformly random place: the worst
 *           case for 64 KiB chunks, where each write dirties a whole chunk.
 *
 * PACE picks how the writes are paced (both read the monotonic clock and
 * write what is due, capped at 50 ms' worth so that the program does not
 * burst after a migration paused it):
 *
 *   spin    (default) poll the clock in a loop. It burns a core, but the
 *           vessel uses up its fuel slice in milliseconds, so a migration's
 *           memory copies and pause are served at once;
 *   sleep   sleep 1 ms (nanosleep, i.e. poll_oneoff) between looks at the
 *           clock. The node serves a vessel's commands (copy the memory,
 *           pause) only between two fuel slices, and a vessel that sleeps
 *           burns little fuel per second: with the default slice (4,000,000)
 *           a migration waits seconds for each copy and for the pause
 *           (docs/benchmarks.md).
 *
 * SEED (a number) picks the bytes: vessels with different seeds share no
 * chunk, so one vessel's chunks never make another's transfer look cheap.
 *
 * Every 5 s it prints how many bytes it wrote; stdin is not used.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static inline uint64_t next(void) {
    /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: memwriter SIZE_MIB RATE_BYTES_PER_S [sweep|random] [SECONDS] [SEED] [spin|sleep]\n");
        return 2;
    }
    size_t mib = strtoul(argv[1], 0, 10);
    double rate = strtod(argv[2], 0);
    int random_spots = argc > 3 && strcmp(argv[3], "random") == 0;
    double seconds = argc > 4 ? strtod(argv[4], 0) : 0;
    if (argc > 5)
        rng ^= strtoull(argv[5], 0, 10) * 0xD6E8FEB86659FD93ull;
    if (!rng)
        rng = 1;
    int sleeps = argc > 6 && strcmp(argv[6], "sleep") == 0;
    size_t size = mib << 20;
    size_t words = size / 8;
    /* volatile: the program never reads its memory back, and the compiler
     * would otherwise drop every write to it (the fill included). */
    volatile uint64_t *mem = malloc(size);
    if (!mem) {
        fprintf(stderr, "cannot allocate %zu MiB\n", mib);
        return 1;
    }
    for (size_t i = 0; i < words; i++)
        mem[i] = next() | 0x0101010101010101ull; /* no zero byte */
    printf("ready %zu MiB, %.0f bytes/s, %s, %s\n", mib, rate, random_spots ? "random" : "sweep",
           sleeps ? "sleep" : "spin");
    fflush(stdout);

    size_t spots = size / 64, cursor = 0;
    double start = now_s(), last = start, report = start + 5, due = 0;
    uint64_t written = 0;
    struct timespec nap = {0, 1000000};
    for (;;) {
        double t = now_s();
        double dt = t - last;
        if (dt < 0)
            dt = 0;
        last = t;
        due += rate * dt;
        if (due > rate * 0.05)
            due = rate * 0.05;
        while (due >= 64) {
            size_t spot = random_spots ? (size_t)(next() % spots) : cursor;
            cursor = cursor + 1 == spots ? 0 : cursor + 1;
            volatile uint64_t *p = mem + spot * 8;
            uint64_t v = next() | 0x0101010101010101ull;
            for (int k = 0; k < 8; k++)
                p[k] = v + k;
            due -= 64;
            written += 64;
        }
        if (t >= report) {
            printf("wrote %llu bytes in %.1f s\n", (unsigned long long)written, t - start);
            fflush(stdout);
            report += 5;
        }
        if (seconds > 0 && t - start >= seconds)
            break;
        if (sleeps)
            nanosleep(&nap, 0);
    }
    printf("done\n");
    return 0;
}
