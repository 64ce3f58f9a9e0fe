/* poll_oneoff helpers shared by poll.c, poll_fd.c and poll_abstime.c. */
#ifndef POLL_UTIL_H
#define POLL_UTIL_H
#include "corpus.h"

static inline __wasi_timestamp_t now(void) {
    __wasi_timestamp_t t;
    MUST(__wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, &t));
    return t;
}

static inline __wasi_subscription_t clock_sub(uint64_t ud, __wasi_clockid_t id, __wasi_timestamp_t timeout, int abstime) {
    __wasi_subscription_t s;
    memset(&s, 0, sizeof s);
    s.userdata = ud;
    s.u.tag = __WASI_EVENTTYPE_CLOCK;
    s.u.u.clock.id = id;
    s.u.u.clock.timeout = timeout;
    s.u.u.clock.precision = 1000;
    s.u.u.clock.flags = abstime ? __WASI_SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME : 0;
    return s;
}

static inline __wasi_subscription_t fd_sub(uint64_t ud, int type, int fd) {
    __wasi_subscription_t s;
    memset(&s, 0, sizeof s);
    s.userdata = ud;
    s.u.tag = type;
    if (type == __WASI_EVENTTYPE_FD_READ) s.u.u.fd_read.file_descriptor = fd;
    else s.u.u.fd_write.file_descriptor = fd;
    return s;
}

static inline const char *evname(int t) {
    return t == __WASI_EVENTTYPE_CLOCK ? "clock" : t == __WASI_EVENTTYPE_FD_READ ? "fd_read" : t == __WASI_EVENTTYPE_FD_WRITE ? "fd_write" : "?";
}

static inline void show_events(const char *label, __wasi_event_t *ev, size_t n) {
    /* Sort by userdata so that the order of simultaneous events does not matter. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (ev[j].userdata < ev[i].userdata) { __wasi_event_t t = ev[i]; ev[i] = ev[j]; ev[j] = t; }
    printf("%s: %zu event(s)", label, n);
    for (size_t i = 0; i < n; i++) printf(" [ud=%llu %s %s]", (unsigned long long)ev[i].userdata, evname(ev[i].type), errname(ev[i].error));
    printf("\n");
}

#endif
