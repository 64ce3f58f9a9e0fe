/* Traps in a function of its own, after some output: `meshnode run` must
 * name `crash_here` in its one-line trap report (cli_errors.rs). */
#include <stdio.h>

__attribute__((noinline)) void crash_here(void) { __builtin_trap(); }

__attribute__((noinline)) int work(int n) {
    int sum = 0;
    for (int i = 0; i < n; i++) sum += i * i;
    return sum;
}

int main(void) {
    printf("before the trap: %d\n", work(10));
    fflush(stdout);
    crash_here();
    printf("not reached\n");
    return 0;
}
