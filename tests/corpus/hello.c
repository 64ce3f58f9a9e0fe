/* Smallest program: stdout and stderr through fd_write, and one large
 * stdout write (128 KiB) in a loop that handles partial writes. */
#include "corpus.h"
#include <unistd.h>

int main(void) {
    printf("hello from the corpus\n");
    fprintf(stderr, "a line on stderr\n");
    static char big[128 * 1024];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (i % 64 == 63) ? '\n' : (char)('a' + (i * 7) % 26);
    fflush(stdout);
    size_t off = 0;
    while (off < sizeof big) {
        ssize_t n = write(1, big + off, sizeof big - off);
        if (n <= 0) { fprintf(stderr, "write failed\n"); return 1; }
        off += (size_t)n;
    }
    /* Raw fd_write with several iovecs, one empty. A runtime may write only
     * part of them (wasmtime writes just the first non-empty buffer), so
     * loop as a careful program must; print the total, not per call. */
    __wasi_ciovec_t iov[3] = {{(const uint8_t *)"gather", 6}, {(const uint8_t *)"", 0}, {(const uint8_t *)"ed\n", 3}};
    __wasi_ciovec_t *cur = iov;
    size_t left = 3, total = 0;
    while (left > 0) {
        __wasi_size_t nw = 0;
        MUST(__wasi_fd_write(1, cur, left, &nw));
        total += nw;
        while (left > 0 && nw >= cur->buf_len) { nw -= cur->buf_len; cur++; left--; }
        if (left > 0) { cur->buf += nw; cur->buf_len -= nw; }
    }
    printf("total written=%zu\n", total);
    printf("done\n");
    return 0;
}
