/* poll_oneoff: relative clock subscriptions on the monotonic and realtime
 * clocks (absolute ones are in poll_abstime.c, fd readiness in poll_fd.c),
 * several clocks at once, libc sleeps, and errors. Sleeps are checked
 * against half their length: Node's timers (libuv, millisecond loop time)
 * can wake a little early. Only properties are
 * printed: never times or byte counts. */
#include "corpus.h"
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

static __wasi_timestamp_t now(void) {
    __wasi_timestamp_t t;
    MUST(__wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, &t));
    return t;
}

static __wasi_subscription_t clock_sub(uint64_t ud, __wasi_clockid_t id, __wasi_timestamp_t timeout, int abstime) {
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

static __wasi_subscription_t fd_sub(uint64_t ud, int type, int fd) {
    __wasi_subscription_t s;
    memset(&s, 0, sizeof s);
    s.userdata = ud;
    s.u.tag = type;
    if (type == __WASI_EVENTTYPE_FD_READ) s.u.u.fd_read.file_descriptor = fd;
    else s.u.u.fd_write.file_descriptor = fd;
    return s;
}

static const char *evname(int t) {
    return t == __WASI_EVENTTYPE_CLOCK ? "clock" : t == __WASI_EVENTTYPE_FD_READ ? "fd_read" : t == __WASI_EVENTTYPE_FD_WRITE ? "fd_write" : "?";
}

static void show_events(const char *label, __wasi_event_t *ev, size_t n) {
    /* Sort by userdata so that the order of simultaneous events does not matter. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (ev[j].userdata < ev[i].userdata) { __wasi_event_t t = ev[i]; ev[i] = ev[j]; ev[j] = t; }
    printf("%s: %zu event(s)", label, n);
    for (size_t i = 0; i < n; i++) printf(" [ud=%llu %s %s]", (unsigned long long)ev[i].userdata, evname(ev[i].type), errname(ev[i].error));
    printf("\n");
}

int main(void) {
    __wasi_event_t ev[8];
    __wasi_size_t n;

    __wasi_subscription_t s1 = clock_sub(42, __WASI_CLOCKID_MONOTONIC, 20 * 1000000ull, 0);
    __wasi_timestamp_t t0 = now();
    MUST(__wasi_poll_oneoff(&s1, ev, 1, &n));
    __wasi_timestamp_t t1 = now();
    show_events("relative monotonic 20ms", ev, n);
    PROP("slept at least half of 20ms", t1 - t0 >= 10 * 1000000ull);
    PROP("slept less than 5s", t1 - t0 < 5000 * 1000000ull);

    __wasi_subscription_t s4 = clock_sub(9, __WASI_CLOCKID_REALTIME, 10 * 1000000ull, 0);
    t0 = now();
    MUST(__wasi_poll_oneoff(&s4, ev, 1, &n));
    t1 = now();
    show_events("relative realtime 10ms", ev, n);
    PROP("realtime sleep at least half of 10ms", t1 - t0 >= 5 * 1000000ull);

    __wasi_subscription_t s5 = clock_sub(10, __WASI_CLOCKID_MONOTONIC, 0, 0);
    MUST(__wasi_poll_oneoff(&s5, ev, 1, &n));
    show_events("relative timeout 0", ev, n);

    /* Two clocks: only the earlier one fires. */
    __wasi_subscription_t two[2] = {clock_sub(1, __WASI_CLOCKID_MONOTONIC, 2000 * 1000000ull, 0),
                                    clock_sub(2, __WASI_CLOCKID_MONOTONIC, 10 * 1000000ull, 0)};
    t0 = now();
    MUST(__wasi_poll_oneoff(two, ev, 2, &n));
    t1 = now();
    show_events("two clocks 2s and 10ms", ev, n);
    PROP("did not wait for the 2s clock", t1 - t0 < 1500 * 1000000ull);

    /* libc sleeps use poll_oneoff too. */
    t0 = now();
    usleep(12000);
    t1 = now();
    PROP("usleep(12ms) slept at least half of it", t1 - t0 >= 6 * 1000000ull);
    struct timespec ts = {0, 10000000};
    t0 = now();
    nanosleep(&ts, NULL);
    t1 = now();
    PROP("nanosleep(10ms) slept at least half of it", t1 - t0 >= 5 * 1000000ull);

    __wasi_subscription_t bad = clock_sub(11, __WASI_CLOCKID_MONOTONIC, 1, 0);
    bad.u.tag = 7;
    int e = __wasi_poll_oneoff(&bad, ev, 1, &n);
    printf("poll_oneoff with an unknown event type: %s\n", e ? errname(e) : "OK");
    e = __wasi_poll_oneoff(&s1, ev, 0, &n);
    printf("poll_oneoff with 0 subscriptions: %s\n", errname(e));
    return 0;
}
