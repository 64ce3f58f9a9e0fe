//@ args: 2000
/* CPU-bound work for fairness and fuel tests: argv[1] rounds (default 400000:
 * about 2.4G wasm instructions, 2-3 s in meshnode's wasmi; each round is
 * about 6100 instructions, and the test uses 2000) of integer mixing, a small sieve and
 * floating point. Prints one checksum per 1/4 of the rounds and at the end. */
#include "corpus.h"

static uint32_t sieve_count(uint32_t limit, uint8_t *buf) {
    memset(buf, 1, limit);
    buf[0] = buf[1] = 0;
    for (uint32_t i = 2; i * i < limit; i++)
        if (buf[i])
            for (uint32_t j = i * i; j < limit; j += i) buf[j] = 0;
    uint32_t c = 0;
    for (uint32_t i = 0; i < limit; i++) c += buf[i];
    return c;
}

int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 400000;
    static uint8_t buf[4096];
    uint64_t h = 0xcbf29ce484222325ull;
    double f = 1.0;
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < 200; i++) {
            h ^= (uint64_t)(r * 200 + i);
            h *= 0x100000001b3ull;
            h ^= h >> 31;
        }
        f = f * 1.0000001 + (double)(h & 0xff) * 1e-9;
        if (f > 1e6) f = 1.0;
        if (r % 16 == 0) h += sieve_count(1024 + (uint32_t)(r % 512) * 4, buf);
        if (rounds >= 4 && (r + 1) % (rounds / 4) == 0) printf("progress %ld: %016llx\n", r + 1, (unsigned long long)h);
    }
    printf("rounds %ld checksum %016llx f %.6f\n", rounds, (unsigned long long)h, f);
    return 0;
}
