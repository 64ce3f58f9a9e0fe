//@ args: 4500
/* Recursion several thousand frames deep with a non-trivial frame (many live
 * wasm locals, no shadow-stack use), as wasmtime and Node run it. The depth is
 * argv[1] (default 4500: wasmtime's default 512 KiB stack ends between 5250 and 5500
 * frames of this function, or between 3000 and 4000 with fuel metering on;
 * Node's near 9000). Also a mutual recursion and an indirect-call
 * recursion. */
#include "corpus.h"

static uint64_t sink_b, sink_c;

/* Returns a scalar so that nothing lives on the C shadow stack (which is
 * only 64 KiB by default): every value is a wasm local or operand. */
__attribute__((noinline)) static uint64_t descend(int n, uint64_t x, uint64_t y, uint32_t z, double w) {
    if (n == 0) return x ^ y ^ z ^ (uint64_t)w;
    uint64_t x2 = x * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t y2 = (y ^ (x2 >> 29)) * 0x9E3779B97F4A7C15ull;
    uint32_t z2 = z + (uint32_t)(x2 >> 33) + (uint32_t)n;
    double w2 = w * 0.5 + (double)(z2 & 1023);
    uint64_t r = descend(n - 1, x2, y2, z2, w2);
    /* Work after the call keeps every local alive across it. */
    r ^= x2 + (uint64_t)n;
    r += y2 ^ z2;
    r = r * 31 + (uint64_t)(w2 > 100.0) + z;
    r += (uint64_t)n * (x & 7);
    sink_b += y2;
    sink_c ^= r;
    return r;
}

static int is_odd(int n);
__attribute__((noinline)) static int is_even(int n) { return n == 0 ? 1 : is_odd(n - 1); }
__attribute__((noinline)) static int is_odd(int n) { return n == 0 ? 0 : is_even(n - 1); }

typedef uint64_t (*step_fn)(int, uint64_t);
static uint64_t step_a(int n, uint64_t acc);
static uint64_t step_b(int n, uint64_t acc);
static volatile step_fn table[2] = {step_a, step_b};
__attribute__((noinline)) static uint64_t step_a(int n, uint64_t acc) {
    if (n <= 0) return acc;
    return table[n & 1](n - 1, acc * 3 + (uint64_t)n) + 1;
}
__attribute__((noinline)) static uint64_t step_b(int n, uint64_t acc) {
    if (n <= 0) return acc;
    return table[(n >> 1) & 1](n - 1, acc ^ ((uint64_t)n << 7)) + 2;
}

int main(int argc, char **argv) {
    int depth = argc > 1 ? atoi(argv[1]) : 4500;
    printf("depth %d\n", depth);
    uint64_t q = descend(depth, 1, 2, 3, 4.0);
    printf("descend: %016llx %016llx %016llx\n", (unsigned long long)q, (unsigned long long)sink_b,
           (unsigned long long)sink_c);
    printf("is_even(%d) by mutual recursion: %d\n", depth, is_even(depth));
    printf("indirect recursion: %016llx\n", (unsigned long long)step_a(depth, 5));
    return 0;
}
