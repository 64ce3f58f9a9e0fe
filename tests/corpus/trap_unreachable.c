//@ trap
/* Executes `unreachable` after some output; only a non-zero exit is checked. */
#include "corpus.h"

__attribute__((noinline)) static void boom(int x) {
    if (x > 0) __builtin_trap();
}

int main(int argc, char **argv) {
    (void)argv;
    printf("before the trap\n");
    fflush(stdout);
    boom(argc);
    printf("not reached\n");
    return 0;
}
