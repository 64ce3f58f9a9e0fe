/* Benchmark: call-heavy recursion: naive fib(24) and ackermann(2, 300..),
 * ITERATIONS times.
 *   recursion [ITERATIONS]   (default 60)   prints the results */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) static uint32_t fib(uint32_t n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

__attribute__((noinline)) static uint32_t ack(uint32_t m, uint32_t n) {
    if (m == 0) return n + 1;
    if (n == 0) return ack(m - 1, 1);
    return ack(m - 1, ack(m, n - 1));
}

int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 60;
    uint64_t total = 0;
    for (int it = 0; it < iters; it++) {
        total += fib(24 + (it % 2));
        total += ack(2, 300 + (uint32_t)(it % 50));
    }
    printf("recursion iterations=%d fib(24)=%u ack(2,300)=%u total=%llu\n", iters, fib(24), ack(2, 300), (unsigned long long)total);
    return 0;
}
