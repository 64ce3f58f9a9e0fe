// Test and benchmark program for the rewriter: CPU-heavy kernels with deep
// recursion and indirect calls in hot loops. No WASI calls: `run` is the
// entry point and everything it needs is in linear memory.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define N 48
static double ma[N][N], mb[N][N], mc[N][N];

static uint32_t matrix(int rounds) {
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            ma[i][j] = (double)((i * 7 + j * 3) % 17) / 7.0;
            mb[i][j] = (double)((i * 5 + j * 11) % 13) / 5.0;
        }
    double trace = 0;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) {
                double s = 0;
                for (int k = 0; k < N; k++) s += ma[i][k] * mb[k][j];
                mc[i][j] = s;
            }
        for (int i = 0; i < N; i++) trace += mc[i][i];
        ma[r % N][(r * 3) % N] += 0.25;
    }
    return (uint32_t)(int64_t)trace;
}

typedef struct { double x, y, z, vx, vy, vz, m; } body;

static uint32_t nbody(int steps) {
    body b[5] = {
        {0, 0, 0, 0, 0, 0, 39.47},
        {4.84, -1.16, -0.10, 0.60, 2.81, -0.02, 0.037},
        {8.34, 4.12, -0.40, -1.01, 1.82, 0.008, 0.011},
        {12.89, -15.11, -0.22, 1.08, 0.86, -0.01, 0.0017},
        {15.37, -25.91, 0.17, 0.97, 0.59, -0.03, 0.002},
    };
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < 5; i++)
            for (int j = i + 1; j < 5; j++) {
                double dx = b[i].x - b[j].x, dy = b[i].y - b[j].y, dz = b[i].z - b[j].z;
                double d2 = dx * dx + dy * dy + dz * dz + 0.01;
                double mag = 0.01 / (d2 * __builtin_sqrt(d2));
                b[i].vx -= dx * b[j].m * mag; b[i].vy -= dy * b[j].m * mag; b[i].vz -= dz * b[j].m * mag;
                b[j].vx += dx * b[i].m * mag; b[j].vy += dy * b[i].m * mag; b[j].vz += dz * b[i].m * mag;
            }
        for (int i = 0; i < 5; i++) {
            b[i].x += 0.01 * b[i].vx; b[i].y += 0.01 * b[i].vy; b[i].z += 0.01 * b[i].vz;
        }
    }
    double e = 0;
    for (int i = 0; i < 5; i++) e += b[i].x * 1000 + b[i].vy * 100;
    return (uint32_t)(int64_t)e;
}

static uint32_t fnv(const uint8_t *p, size_t n, uint32_t h) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static uint8_t text[8192], packed[16384], unpacked[8192];

// A tiny LZ77: (literal run | back-reference) tokens.
static size_t compress(const uint8_t *in, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        size_t best = 0, dist = 0;
        size_t start = i > 255 ? i - 255 : 0;
        for (size_t j = start; j < i; j++) {
            size_t l = 0;
            while (l < 127 && i + l < n && in[j + l] == in[i + l]) l++;
            if (l > best) { best = l; dist = i - j; }
        }
        if (best >= 4) {
            out[o++] = (uint8_t)(0x80 | best);
            out[o++] = (uint8_t)dist;
            i += best;
        } else {
            out[o++] = 1;
            out[o++] = in[i++];
        }
    }
    return o;
}

static size_t decompress(const uint8_t *in, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t t = in[i++];
        if (t & 0x80) {
            size_t l = t & 0x7f, d = in[i++];
            for (size_t k = 0; k < l; k++, o++) out[o] = out[o - d];
        } else {
            for (size_t k = 0; k < t; k++) out[o++] = in[i++];
        }
    }
    return o;
}

static uint32_t compression(int rounds) {
    uint32_t seed = 12345, h = 2166136261u;
    for (size_t i = 0; i < sizeof text; i++) {
        seed = seed * 1103515245u + 12345u;
        text[i] = "the quick brown fox jumps over the lazy dog "[(seed >> 16) % 44];
    }
    for (int r = 0; r < rounds; r++) {
        size_t n = compress(text, sizeof text / 4, packed);
        size_t m = decompress(packed, n, unpacked);
        h = fnv(unpacked, m, h) ^ (uint32_t)n;
        text[r % sizeof text] ^= 1;
    }
    return h;
}

// Deep, non-tail recursion.
static int depth_sum(int d) {
    volatile int pad[4] = {d, d + 1, d + 2, d + 3};
    if (d == 0) return 0;
    return pad[d & 3] + depth_sum(d - 1);
}

static uint32_t ackermann(uint32_t m, uint32_t n) {
    if (m == 0) return n + 1;
    if (n == 0) return ackermann(m - 1, 1);
    return ackermann(m - 1, ackermann(m, n - 1));
}

// Hash table whose hashing and comparison go through function pointers.
typedef uint32_t (*hash_fn)(uint32_t);
typedef int (*eq_fn)(uint32_t, uint32_t);
static uint32_t hash_a(uint32_t k) { return k * 2654435761u; }
static uint32_t hash_b(uint32_t k) { k ^= k >> 16; k *= 0x45d9f3b; return k ^ (k >> 16); }
static int eq_plain(uint32_t a, uint32_t b) { return a == b; }
static int eq_masked(uint32_t a, uint32_t b) { return (a & 0xffffff) == (b & 0xffffff); }

typedef struct { uint32_t *keys, *vals; uint32_t cap; hash_fn h; eq_fn eq; } table;

static void put(table *t, uint32_t k, uint32_t v) {
    uint32_t i = t->h(k) & (t->cap - 1);
    while (t->keys[i] && !t->eq(t->keys[i], k)) i = (i + 1) & (t->cap - 1);
    t->keys[i] = k;
    t->vals[i] += v;
}

static uint32_t get(table *t, uint32_t k) {
    uint32_t i = t->h(k) & (t->cap - 1);
    while (t->keys[i]) {
        if (t->eq(t->keys[i], k)) return t->vals[i];
        i = (i + 1) & (t->cap - 1);
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint32_t hashtable(int rounds) {
    hash_fn hs[2] = {hash_a, hash_b};
    eq_fn eqs[2] = {eq_plain, eq_masked};
    uint32_t acc = 0;
    for (int r = 0; r < rounds; r++) {
        table t = {calloc(4096, 4), calloc(4096, 4), 4096, hs[r & 1], eqs[(r >> 1) & 1]};
        for (uint32_t i = 1; i < 2000; i++) put(&t, i * 7919u + (uint32_t)r, i);
        for (uint32_t i = 1; i < 2000; i += 3) acc += get(&t, i * 7919u + (uint32_t)r);
        qsort(t.vals, 512, 4, cmp_u32);
        acc ^= t.vals[100] + t.vals[511];
        free(t.keys);
        free(t.vals);
    }
    return acc;
}

// Each kernel alone (for benchmarks), or all of them (`which` = 0).
__attribute__((export_name("run"))) uint32_t run(int which, int scale) {
    uint32_t h = 0;
    if (which == 0 || which == 1) h ^= matrix(scale);
    if (which == 0 || which == 2) h ^= nbody(scale * 200);
    if (which == 0 || which == 3) h ^= compression(scale);
    if (which == 0 || which == 4) h ^= (uint32_t)depth_sum(scale * 100) + ackermann(2, (uint32_t)scale * 50);
    if (which == 0 || which == 5) h ^= hashtable(scale);
    if (which == 0 || which == 6) h ^= fnv(text, sizeof text, (uint32_t)scale);
    return h;
}
