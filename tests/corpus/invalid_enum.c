//@ known-diff wasmtime *: wasmtime (wiggle) traps on an out-of-range enum argument ("Invalid enum value Clockid") instead of returning EINVAL; Node returns EINVAL, which meshnode follows
/* Out-of-range enum arguments: clock ids, whence and advice values. */
#include "corpus.h"
#include <fcntl.h>

int main(void) {
    __wasi_timestamp_t t;
    SHOW("clock_res_get(clock 99)", __wasi_clock_res_get(99, &t));
    fflush(stdout);
    SHOW("clock_time_get(clock 99)", __wasi_clock_time_get(99, 1, &t));
    fflush(stdout);
    int fd = open("/sandbox/f", O_RDWR | O_CREAT, 0644);
    if (fd < 0) { printf("open failed\n"); return 1; }
    __wasi_filesize_t pos;
    SHOW("fd_seek(whence 9)", __wasi_fd_seek(fd, 0, 9, &pos));
    fflush(stdout);
    SHOW("fd_advise(advice 9)", __wasi_fd_advise(fd, 0, 10, 9));
    fflush(stdout);
    return 0;
}
