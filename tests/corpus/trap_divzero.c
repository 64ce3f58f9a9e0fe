//@ trap
/* Integer division by zero traps in wasm; only a non-zero exit is checked. */
#include "corpus.h"

int main(int argc, char **argv) {
    (void)argv;
    volatile int zero = argc - 1; /* 0 when run without arguments */
    printf("dividing by zero\n");
    fflush(stdout);
    int q = 100 / zero;
    printf("not reached %d\n", q);
    return 0;
}
