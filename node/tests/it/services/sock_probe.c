/* Socket semantics probe for the differential test in services.rs.
 *
 * Run with one listening socket (meshnode run --tcplisten, or wasmtime 36's
 * -S preview2=n -S tcplisten) and one preopened directory. The test drives
 * the client side at the markers READY, SENT and B, and compares every line
 * with what wasmtime prints. Calls that wasmtime answers with a trap
 * (unknown flag bits) are left out.
 */
#include <stdio.h>
#include <string.h>
#include <wasi/api.h>

static const char *en(int e) {
    switch (e) {
    case 0: return "OK";
    case __WASI_ERRNO_AGAIN: return "EAGAIN";
    case __WASI_ERRNO_BADF: return "EBADF";
    case __WASI_ERRNO_CONNRESET: return "ECONNRESET";
    case __WASI_ERRNO_INVAL: return "EINVAL";
    case __WASI_ERRNO_IO: return "EIO";
    case __WASI_ERRNO_NOTCONN: return "ENOTCONN";
    case __WASI_ERRNO_NOTSOCK: return "ENOTSOCK";
    case __WASI_ERRNO_PIPE: return "EPIPE";
    case __WASI_ERRNO_SPIPE: return "ESPIPE";
    default: {
        static char b[16];
        snprintf(b, sizeof b, "errno%d", e);
        return b;
    }
    }
}

#define P(...) do { printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)

static void showpoll(const char *what, int fd, int type, int ms) {
    __wasi_subscription_t s[2];
    memset(s, 0, sizeof s);
    s[0].userdata = 1;
    s[0].u.tag = type;
    s[0].u.u.fd_read.file_descriptor = fd;
    s[1].userdata = 2;
    s[1].u.tag = __WASI_EVENTTYPE_CLOCK;
    s[1].u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
    s[1].u.u.clock.timeout = (unsigned long long)ms * 1000000ull;
    __wasi_event_t ev[2];
    __wasi_size_t n = 0;
    int e = __wasi_poll_oneoff(s, ev, 2, &n);
    printf("%s: poll=%s", what, en(e));
    for (__wasi_size_t i = 0; i < n; i++)
        printf(" [%s err=%s nbytes=%llu hangup=%d]", ev[i].userdata == 1 ? "fd" : "clock", en(ev[i].error),
               (unsigned long long)ev[i].fd_readwrite.nbytes,
               ev[i].fd_readwrite.flags & __WASI_EVENTRWFLAGS_FD_READWRITE_HANGUP);
    P("");
}

static void rcv(int fd, int len, int flags, const char *what) {
    char buf[256];
    __wasi_iovec_t v = {(uint8_t *)buf, len};
    __wasi_size_t n = 0;
    __wasi_roflags_t rof = 0;
    int e = __wasi_sock_recv(fd, &v, 1, flags, &n, &rof);
    P("%s: recv(flags=%d)=%s n=%d roflags=%d data=%.*s", what, flags, en(e), e ? 0 : (int)n, e ? 0 : rof, e ? 0 : (int)n, buf);
}

static void snd(int fd, const char *s, int flags, const char *what) {
    __wasi_ciovec_t v = {(const uint8_t *)s, strlen(s)};
    __wasi_size_t n = 0;
    int e = __wasi_sock_send(fd, &v, 1, flags, &n);
    P("%s: send(flags=%d)=%s n=%d", what, flags, en(e), e ? 0 : (int)n);
}

static void stat(const char *what, int fd) {
    __wasi_fdstat_t st;
    int e = __wasi_fd_fdstat_get(fd, &st);
    __wasi_filestat_t fs;
    int e2 = __wasi_fd_filestat_get(fd, &fs);
    __wasi_filesize_t off;
    int e3 = __wasi_fd_seek(fd, 0, __WASI_WHENCE_CUR, &off);
    __wasi_prestat_t ps;
    int e4 = __wasi_fd_prestat_get(fd, &ps);
    P("%s: fdstat=%s filetype=%d nonblock=%d", what, en(e), st.fs_filetype, !!(st.fs_flags & __WASI_FDFLAGS_NONBLOCK));
    P("%s: rights read=%d write=%d", what, !!(st.fs_rights_base & __WASI_RIGHTS_FD_READ),
      !!(st.fs_rights_base & __WASI_RIGHTS_FD_WRITE));
    P("%s: filestat=%s filetype=%d", what, en(e2), fs.filetype);
    P("%s: seek=%s", what, en(e3));
    P("%s: prestat=%s sync=%s", what, en(e4), en(__wasi_fd_sync(fd)));
}

int main(void) {
    int L = -1, DIR = -1;
    for (int fd = 3; fd < 16; fd++) {
        __wasi_fdstat_t st;
        __wasi_prestat_t ps;
        if (L < 0 && __wasi_fd_fdstat_get(fd, &st) == 0 && st.fs_filetype == __WASI_FILETYPE_SOCKET_STREAM) L = fd;
        if (DIR < 0 && __wasi_fd_prestat_get(fd, &ps) == 0) DIR = fd;
    }
    P("listener fd %d, first preopen fd %d", L, DIR);
    __wasi_fd_t nfd = 0;
    stat("listener", L);
    P("accept(closed fd)=%s", en(__wasi_sock_accept(99, 0, &nfd)));
    P("setflags(listener, NONBLOCK)=%s", en(__wasi_fd_fdstat_set_flags(L, __WASI_FDFLAGS_NONBLOCK)));
    P("accept(listener, none waiting, nonblocking)=%s", en(__wasi_sock_accept(L, 0, &nfd)));
    P("accept(listener, flags=APPEND)=%s", en(__wasi_sock_accept(L, __WASI_FDFLAGS_APPEND, &nfd)));
    rcv(L, 10, 0, "listener");
    snd(L, "x", 0, "listener");
    P("shutdown(listener)=%s", en(__wasi_sock_shutdown(L, __WASI_SDFLAGS_WR)));
    {
        char buf[4];
        __wasi_iovec_t v = {(uint8_t *)buf, 4};
        __wasi_ciovec_t w = {(const uint8_t *)"x", 1};
        __wasi_size_t n;
        P("fd_read(listener)=%s", en(__wasi_fd_read(L, &v, 1, &n)));
        P("fd_write(listener)=%s", en(__wasi_fd_write(L, &w, 1, &n)));
    }
    showpoll("poll(listener, read, idle)", L, __WASI_EVENTTYPE_FD_READ, 20);
    showpoll("poll(listener, write)", L, __WASI_EVENTTYPE_FD_WRITE, 20);
    P("READY");
    showpoll("poll(listener, read, client waiting)", L, __WASI_EVENTTYPE_FD_READ, 10000);
    P("accept(listener)=%s", en(__wasi_sock_accept(L, 0, &nfd)));
    int a = nfd;
    P("accept(connection)=%s", en(__wasi_sock_accept(a, 0, &nfd)));
    stat("connection", a);
    showpoll("poll(a, read)", a, __WASI_EVENTTYPE_FD_READ, 10000);
    rcv(a, 3, __WASI_RIFLAGS_RECV_PEEK, "a peek");
    rcv(a, 100, 0, "a");
    snd(a, "world", 1, "a");
    snd(a, "world", 0, "a");
    P("setflags(a, NONBLOCK)=%s", en(__wasi_fd_fdstat_set_flags(a, __WASI_FDFLAGS_NONBLOCK)));
    rcv(a, 100, 0, "a, nothing sent, nonblocking");
    {
        char buf[4];
        __wasi_iovec_t v = {(uint8_t *)buf, 4};
        __wasi_size_t n = 0;
        int e = __wasi_fd_read(a, &v, 1, &n);
        P("fd_read(a, nothing sent, nonblocking)=%s", en(e));
    }
    P("SENT");
    showpoll("poll(a, read) after the client's SHUT_WR", a, __WASI_EVENTTYPE_FD_READ, 10000);
    rcv(a, 100, 0, "a at end-of-file");
    rcv(a, 100, 0, "a at end-of-file again");
    {
        char buf[4];
        __wasi_iovec_t v = {(uint8_t *)buf, 4};
        __wasi_size_t n = 99;
        int e = __wasi_fd_read(a, &v, 1, &n);
        P("fd_read(a at end-of-file)=%s n=%d", en(e), (int)n);
    }
    snd(a, "after-eof", 0, "a, client half-closed");
    P("shutdown(a, none)=%s", en(__wasi_sock_shutdown(a, 0)));
    P("shutdown(a, WR)=%s", en(__wasi_sock_shutdown(a, __WASI_SDFLAGS_WR)));
    P("shutdown(a, WR) again=%s", en(__wasi_sock_shutdown(a, __WASI_SDFLAGS_WR)));
    snd(a, "after-shut", 0, "a after SHUT_WR");
    {
        __wasi_ciovec_t w = {(const uint8_t *)"x", 1};
        __wasi_size_t n;
        P("fd_write(a after SHUT_WR)=%s", en(__wasi_fd_write(a, &w, 1, &n)));
    }
    P("shutdown(a, RD)=%s", en(__wasi_sock_shutdown(a, __WASI_SDFLAGS_RD)));
    rcv(a, 100, 0, "a after SHUT_RD");
    showpoll("poll(a, write) after SHUT_WR", a, __WASI_EVENTTYPE_FD_WRITE, 100);
    P("close(a)=%s", en(__wasi_fd_close(a)));
    P("close(a) again=%s", en(__wasi_fd_close(a)));
    P("B");
    showpoll("poll(listener, read, second client)", L, __WASI_EVENTTYPE_FD_READ, 10000);
    P("accept(listener, NONBLOCK)=%s", en(__wasi_sock_accept(L, __WASI_FDFLAGS_NONBLOCK, &nfd)));
    int b = nfd;
    {
        __wasi_fdstat_t st;
        int e = __wasi_fd_fdstat_get(b, &st);
        P("b: fdstat=%s nonblock=%d", en(e), !!(st.fs_flags & __WASI_FDFLAGS_NONBLOCK));
    }
    snd(b, "hi", 0, "b");
    P("RESET");
    /* The client resets once "hi" reached it: wait (10 s at most) until the
     * reset shows in poll, as an error or a hang-up. */
    for (int i = 0; i < 200; i++) {
        __wasi_subscription_t s;
        memset(&s, 0, sizeof s);
        s.u.tag = __WASI_EVENTTYPE_FD_READ;
        s.u.u.fd_read.file_descriptor = b;
        __wasi_event_t ev;
        __wasi_size_t n = 0;
        if (__wasi_poll_oneoff(&s, &ev, 1, &n) != 0) break;
        if (n == 1 && (ev.error != 0 || (ev.fd_readwrite.flags & __WASI_EVENTRWFLAGS_FD_READWRITE_HANGUP))) break;
        memset(&s, 0, sizeof s);
        s.u.tag = __WASI_EVENTTYPE_CLOCK;
        s.u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
        s.u.u.clock.timeout = 50000000ull;
        (void)__wasi_poll_oneoff(&s, &ev, 1, &n);
    }
    showpoll("poll(b, read) after the client's reset", b, __WASI_EVENTTYPE_FD_READ, 1000);
    rcv(b, 100, 0, "b after reset");
    rcv(b, 100, 0, "b after reset again");
    rcv(b, 100, 0, "b after reset, third");
    snd(b, "y", 0, "b after reset");
    P("shutdown(b, WR)=%s", en(__wasi_sock_shutdown(b, __WASI_SDFLAGS_WR)));
    P("close(b)=%s", en(__wasi_fd_close(b)));
    P("close(listener)=%s", en(__wasi_fd_close(L)));
    P("DONE");
    return 0;
}
