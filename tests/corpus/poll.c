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

#include "poll_util.h"

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
