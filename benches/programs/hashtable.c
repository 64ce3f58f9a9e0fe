/* Benchmark: an open-addressing hash table whose hash and equality functions
 * are called through function pointers in the hot loop (indirect calls), with
 * inserts, lookups and deletes, ITERATIONS rounds.
 *   hashtable [ITERATIONS]   (default 4)   prints counts and a checksum */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint32_t (*hash_fn)(const char *key, size_t len);
typedef int (*eq_fn)(const char *a, const char *b, size_t len);

struct slot { char key[24]; uint8_t len; uint8_t state; uint32_t value; }; /* state: 0 empty, 1 full, 2 deleted */
struct table { struct slot *slots; uint32_t mask; hash_fn hash; eq_fn eq; uint32_t count; };

static uint32_t fnv1a(const char *k, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)k[i]) * 16777619u;
    return h;
}
static uint32_t djb2(const char *k, size_t n) {
    uint32_t h = 5381;
    for (size_t i = 0; i < n; i++) h = h * 33 + (uint8_t)k[i];
    return h ^ (h >> 15);
}
static int eq_mem(const char *a, const char *b, size_t n) { return memcmp(a, b, n) == 0; }
static int eq_loop(const char *a, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++) if (a[i] != b[i]) return 0;
    return 1;
}

static volatile hash_fn hashes[2] = {fnv1a, djb2};
static volatile eq_fn eqs[2] = {eq_mem, eq_loop};

static struct slot *find(struct table *t, const char *k, size_t n, int for_insert) {
    uint32_t i = t->hash(k, n) & t->mask;
    struct slot *tomb = NULL;
    for (;;) {
        struct slot *s = &t->slots[i];
        if (s->state == 0) return for_insert && tomb ? tomb : s;
        if (s->state == 2) { if (!tomb) tomb = s; }
        else if (s->len == n && t->eq(s->key, k, n)) return s;
        i = (i + 1) & t->mask;
    }
}

static void put(struct table *t, const char *k, size_t n, uint32_t v) {
    struct slot *s = find(t, k, n, 1);
    if (s->state != 1) { memcpy(s->key, k, n); s->len = (uint8_t)n; s->state = 1; t->count++; s->value = v; }
    else s->value += v;
}

int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 4;
    uint64_t check = 0;
    uint32_t rng = 1;
    for (int it = 0; it < iters; it++) {
        struct table t = {calloc(1 << 15, sizeof(struct slot)), (1 << 15) - 1, hashes[it & 1], eqs[(it >> 1) & 1], 0};
        char key[24];
        for (int i = 0; i < 16000; i++) {
            rng = rng * 1664525 + 1013904223;
            int n = snprintf(key, sizeof key, "k%u", (rng >> 8) % 12000);
            put(&t, key, (size_t)n, (uint32_t)i);
        }
        uint32_t hits = 0;
        for (int i = 0; i < 20000; i++) {
            int n = snprintf(key, sizeof key, "k%d", i);
            struct slot *s = find(&t, key, (size_t)n, 0);
            if (s->state == 1) { hits++; check += s->value; if (i % 3 == 0) { s->state = 2; t.count--; } }
        }
        check = check * 1000003 + hits + t.count;
        free(t.slots);
    }
    printf("hashtable iterations=%d checksum=%016llx\n", iters, (unsigned long long)check);
    return 0;
}
