//@ skip node: uvwasi (Node 20) ignores SUBSCRIPTION_CLOCK_ABSTIME and sleeps for the absolute timestamp as if it were relative, so an absolute deadline "now + 15ms" on the monotonic clock waits for days
/* poll_oneoff with absolute clock subscriptions (SUBSCRIPTION_CLOCK_ABSTIME)
 * on the monotonic and realtime clocks, and a deadline in the past. */
#include "corpus.h"
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "poll_util.h"

int main(void) {
    __wasi_event_t ev[8];
    __wasi_size_t n;
    __wasi_timestamp_t t0, t1;

    __wasi_subscription_t s2 = clock_sub(7, __WASI_CLOCKID_MONOTONIC, now() + 15 * 1000000ull, 1);
    t0 = now();
    MUST(__wasi_poll_oneoff(&s2, ev, 1, &n));
    t1 = now();
    show_events("absolute monotonic +15ms", ev, n);
    PROP("absolute deadline reached", t1 - t0 >= 10 * 1000000ull);
    PROP("absolute deadline not overslept", t1 - t0 < 5000 * 1000000ull);

    __wasi_subscription_t s3 = clock_sub(8, __WASI_CLOCKID_MONOTONIC, 1, 1);
    t0 = now();
    MUST(__wasi_poll_oneoff(&s3, ev, 1, &n));
    t1 = now();
    show_events("absolute monotonic deadline in the past", ev, n);
    PROP("returned at once", t1 - t0 < 1000 * 1000000ull);

    __wasi_timestamp_t rt;
    MUST(__wasi_clock_time_get(__WASI_CLOCKID_REALTIME, 1, &rt));
    __wasi_subscription_t s4 = clock_sub(9, __WASI_CLOCKID_REALTIME, rt + 10 * 1000000ull, 1);
    t0 = now();
    MUST(__wasi_poll_oneoff(&s4, ev, 1, &n));
    t1 = now();
    show_events("absolute realtime +10ms", ev, n);
    PROP("absolute realtime deadline reached", t1 - t0 >= 5 * 1000000ull);
    PROP("absolute realtime deadline not overslept", t1 - t0 < 5000 * 1000000ull);

    /* An absolute and a relative clock together: the earlier fires. */
    __wasi_subscription_t two[2] = {clock_sub(1, __WASI_CLOCKID_MONOTONIC, now() + 3000 * 1000000ull, 1),
                                    clock_sub(2, __WASI_CLOCKID_MONOTONIC, 10 * 1000000ull, 0)};
    t0 = now();
    MUST(__wasi_poll_oneoff(two, ev, 2, &n));
    t1 = now();
    show_events("absolute +3s and relative 10ms", ev, n);
    PROP("did not wait for the 3s deadline", t1 - t0 < 2000 * 1000000ull);
    return 0;
}
