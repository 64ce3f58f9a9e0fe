/* Benchmark: LZ77-style compression (hash-chain match finder, byte-oriented
 * tokens) and decompression of a generated 64 KiB text, ITERATIONS times,
 * checking the round trip each time.
 *   lz77 [ITERATIONS]   (default 10)   prints sizes and a checksum */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIZE 65536
#define WINDOW 4096
#define HBITS 12
#define MAXCHAIN 16

static uint8_t input[SIZE], packed[SIZE * 2], unpacked[SIZE];
static int32_t head[1 << HBITS], prevpos[SIZE];

static unsigned hash3(const uint8_t *p) { return ((p[0] << 8) ^ (p[1] << 4) ^ p[2]) * 2654435761u >> (32 - HBITS); }

/* Tokens: 0x00-0x7f: literal run of (n+1) bytes follows;
 *         0x80|len-3 (len 3..130), then 2-byte distance. */
static size_t compress(const uint8_t *in, size_t n, uint8_t *out) {
    for (int i = 0; i < (1 << HBITS); i++) head[i] = -1;
    size_t o = 0, lit_start = 0, i = 0;
    while (i < n) {
        int best_len = 0, best_dist = 0;
        if (i + 3 <= n) {
            unsigned h = hash3(in + i);
            int32_t cand = head[h];
            int chain = 0;
            while (cand >= 0 && i - (size_t)cand <= WINDOW && chain++ < MAXCHAIN) {
                int l = 0;
                while (i + l < n && l < 130 && in[cand + l] == in[i + l]) l++;
                if (l > best_len) { best_len = l; best_dist = (int)(i - cand); }
                cand = prevpos[cand];
            }
            prevpos[i] = head[h];
            head[h] = (int32_t)i;
        }
        if (best_len >= 3) {
            while (lit_start < i) {
                size_t run = i - lit_start > 128 ? 128 : i - lit_start;
                out[o++] = (uint8_t)(run - 1);
                memcpy(out + o, in + lit_start, run);
                o += run;
                lit_start += run;
            }
            out[o++] = (uint8_t)(0x80 | (best_len - 3));
            out[o++] = (uint8_t)(best_dist >> 8);
            out[o++] = (uint8_t)best_dist;
            for (int k = 1; k < best_len && i + k + 3 <= n; k++) {
                unsigned h = hash3(in + i + k);
                prevpos[i + k] = head[h];
                head[h] = (int32_t)(i + k);
            }
            i += best_len;
            lit_start = i;
        } else {
            i++;
        }
    }
    while (lit_start < n) {
        size_t run = n - lit_start > 128 ? 128 : n - lit_start;
        out[o++] = (uint8_t)(run - 1);
        memcpy(out + o, in + lit_start, run);
        o += run;
        lit_start += run;
    }
    return o;
}

static size_t decompress(const uint8_t *in, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t t = in[i++];
        if (t < 0x80) {
            memcpy(out + o, in + i, t + 1u);
            i += t + 1u;
            o += t + 1u;
        } else {
            int len = (t & 0x7f) + 3;
            int dist = in[i] << 8 | in[i + 1];
            i += 2;
            for (int k = 0; k < len; k++, o++) out[o] = out[o - dist];
        }
    }
    return o;
}

int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 10;
    static const char *words[] = {"mesh", "node", "vessel", "dock", "wasm", "chunk", "migrate", "the", "a", "of", "latency", "snapshot"};
    uint32_t s = 7;
    size_t p = 0;
    while (p < SIZE) {
        s = s * 1103515245 + 12345;
        const char *w = words[(s >> 16) % 12];
        size_t l = strlen(w);
        for (size_t k = 0; k < l && p < SIZE; k++) input[p++] = (uint8_t)w[k];
        if (p < SIZE) input[p++] = (s >> 8) % 9 == 0 ? '\n' : ' ';
    }
    size_t csize = 0;
    uint32_t check = 0;
    for (int it = 0; it < iters; it++) {
        input[(it * 7919) % SIZE] ^= (uint8_t)it; /* vary the input a little */
        csize = compress(input, SIZE, packed);
        size_t dsize = decompress(packed, csize, unpacked);
        if (dsize != SIZE || memcmp(input, unpacked, SIZE) != 0) { printf("round trip FAILED at iteration %d\n", it); return 1; }
        for (size_t k = 0; k < csize; k++) check = check * 31 + packed[k];
    }
    printf("lz77 iterations=%d in=%d packed=%zu checksum=%08x\n", iters, SIZE, csize, check);
    return 0;
}
