//@ stdin: hello world\nsecond line\n\nlast line without newline
/* Reads all of stdin through fd_read (raw, small buffer), then through libc
 * again at EOF, and prints statistics and an upper-cased copy. */
#include "corpus.h"
#include <ctype.h>

int main(void) {
    static char data[65536];
    size_t len = 0;
    for (;;) {
        __wasi_iovec_t iov[2] = {{(uint8_t *)data + len, 7}, {(uint8_t *)data + len + 7, 5}};
        __wasi_size_t n = 0;
        int e = __wasi_fd_read(0, iov, 2, &n);
        if (e) { printf("fd_read(stdin): %s\n", errname(e)); return 1; }
        if (n == 0) break;
        len += n;
        if (len + 12 > sizeof data) break;
    }
    int lines = 0, words = 0, inword = 0;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') lines++;
        if (isspace((unsigned char)data[i])) inword = 0;
        else if (!inword) { inword = 1; words++; }
    }
    printf("bytes=%zu lines=%d words=%d\n", len, lines, words);
    for (size_t i = 0; i < len; i++) putchar(toupper((unsigned char)data[i]));
    printf("\n--\n");
    int c = getchar();
    PROP("getchar at EOF", c == EOF);
    __wasi_iovec_t iov = {(uint8_t *)data, 10};
    __wasi_size_t n = 1;
    int e = __wasi_fd_read(0, &iov, 1, &n);
    printf("fd_read after EOF: %s n=%u\n", errname(e), (unsigned)n);
    return 0;
}
