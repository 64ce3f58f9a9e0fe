//@ known-diff node *: uvwasi polls descriptors with epoll, which refuses regular files, so poll_oneoff on a file (or on stdout redirected to a file) fails with EPERM instead of reporting it ready
//@ known-diff wasmtime fd_read on fd 99: wasmtime fails the whole poll_oneoff with EBADF for one bad descriptor; preview1 reports errors per event (event.error), which meshnode does so that the other subscriptions still get answered (Node ignores the subscription instead)
/* poll_oneoff fd readiness: fd_read/fd_write on a regular file and fd_write
 * on stdout, each beside a long clock that must not be waited for; an
 * invalid descriptor. Only properties are
 * printed: never times or byte counts. */
#include "corpus.h"
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "poll_util.h"

int main(void) {
    __wasi_event_t ev[8];
    __wasi_size_t n;
    __wasi_timestamp_t t0, t1;
    /* fd readiness: a regular file is always ready for reading and writing. */
    int f = open("/sandbox/poll.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
    MUSTC(f);
    MUSTC(write(f, "some data\n", 10));
    lseek(f, 0, SEEK_SET);
    __wasi_subscription_t fr[2] = {fd_sub(100, __WASI_EVENTTYPE_FD_READ, f), clock_sub(101, __WASI_CLOCKID_MONOTONIC, 3000 * 1000000ull, 0)};
    t0 = now();
    MUST(__wasi_poll_oneoff(fr, ev, 2, &n));
    t1 = now();
    show_events("fd_read on a file + 3s clock", ev, n);
    PROP("file readiness did not wait", t1 - t0 < 2000 * 1000000ull);

    __wasi_subscription_t fw[2] = {fd_sub(200, __WASI_EVENTTYPE_FD_WRITE, f), clock_sub(201, __WASI_CLOCKID_MONOTONIC, 3000 * 1000000ull, 0)};
    MUST(__wasi_poll_oneoff(fw, ev, 2, &n));
    show_events("fd_write on a file + 3s clock", ev, n);

    __wasi_subscription_t so[2] = {fd_sub(300, __WASI_EVENTTYPE_FD_WRITE, 1), clock_sub(301, __WASI_CLOCKID_MONOTONIC, 3000 * 1000000ull, 0)};
    fflush(stdout);
    MUST(__wasi_poll_oneoff(so, ev, 2, &n));
    show_events("fd_write on stdout + 3s clock", ev, n);

    __wasi_subscription_t both[3] = {fd_sub(400, __WASI_EVENTTYPE_FD_READ, f), fd_sub(401, __WASI_EVENTTYPE_FD_WRITE, f),
                                     fd_sub(402, __WASI_EVENTTYPE_FD_WRITE, 1)};
    MUST(__wasi_poll_oneoff(both, ev, 3, &n));
    /* Which of the three ready subscriptions are reported in one call differs
     * (wasmtime may leave out fd_read), so check properties only. */
    int all_ok = 1, known = 1;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].error != 0) all_ok = 0;
        if (ev[i].userdata < 400 || ev[i].userdata > 402) known = 0;
    }
    PROP("read+write on file, write on stdout: at least one event", n >= 1 && n <= 3);
    PROP("read+write on file, write on stdout: events OK and ours", all_ok && known);

    __wasi_subscription_t bad[2] = {fd_sub(500, __WASI_EVENTTYPE_FD_READ, 99), clock_sub(501, __WASI_CLOCKID_MONOTONIC, 3000 * 1000000ull, 0)};
    int e = __wasi_poll_oneoff(bad, ev, 2, &n);
    if (e) printf("fd_read on fd 99: poll_oneoff %s\n", errname(e));
    else show_events("fd_read on fd 99", ev, n);

    close(f);
    return 0;
}
