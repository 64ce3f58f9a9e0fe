//@ known-diff node *: uvwasi's socket stubs check rights first and answer ENOTCAPABLE (accept/recv/send) or ENOTSUP (shutdown, even on a closed fd) where preview1 and wasmtime give ENOTSOCK for a non-socket and EBADF for a closed descriptor
/* Socket calls before sockets exist: sock_accept, sock_recv, sock_send and
 * sock_shutdown on descriptors that are not sockets or not open. */
#include "corpus.h"
#include <fcntl.h>
#include <unistd.h>

static void all(const char *what, int fd) {
    char buf[16];
    __wasi_iovec_t riov = {(uint8_t *)buf, sizeof buf};
    __wasi_ciovec_t siov = {(const uint8_t *)"hi", 2};
    __wasi_size_t n;
    __wasi_roflags_t rof;
    __wasi_fd_t nfd;
    char label[96];
    snprintf(label, sizeof label, "sock_accept(%s)", what);
    SHOW(label, __wasi_sock_accept(fd, 0, &nfd));
    snprintf(label, sizeof label, "sock_recv(%s)", what);
    SHOW(label, __wasi_sock_recv(fd, &riov, 1, 0, &n, &rof));
    snprintf(label, sizeof label, "sock_send(%s)", what);
    SHOW(label, __wasi_sock_send(fd, &siov, 1, 0, &n));
    snprintf(label, sizeof label, "sock_shutdown(%s)", what);
    SHOW(label, __wasi_sock_shutdown(fd, __WASI_SDFLAGS_RD | __WASI_SDFLAGS_WR));
}

int main(void) {
    int f = open("/sandbox/notasocket.txt", O_RDWR | O_CREAT, 0644);
    MUSTC(f);
    all("regular file", f);
    all("preopened dir", find_preopen("/sandbox"));
    all("closed fd 99", 99);
    close(f);
    /* stdout is a file, pipe or tty depending on the runner: errno only. */
    fflush(stdout);
    __wasi_ciovec_t siov = {(const uint8_t *)"", 0};
    __wasi_size_t n;
    int e = __wasi_sock_send(1, &siov, 1, 0, &n);
    printf("sock_send(stdout): %s\n", e ? "error" : "OK");
    return 0;
}
