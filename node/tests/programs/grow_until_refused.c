// Allocates 16 MiB blocks until malloc fails, touching each (so that no
// compiler drops them), and prints how many MiB it got: the memory limit
// the vessel runs under, less what the program itself holds. On a 32-bit
// host that is the address-space bound (MAX_MEMORY_BYTES_32_BIT), not the
// configured limit (node/tests/it/cross_cpu.rs).
#include <stdio.h>
#include <stdlib.h>

#define BLOCK_BYTES (16u << 20)

int main(void) {
    unsigned long mib = 0;
    for (;;) {
        volatile char *p = malloc(BLOCK_BYTES);
        if (!p) break;
        p[0] = 1;
        p[BLOCK_BYTES - 1] = 1;
        mib += BLOCK_BYTES >> 20;
    }
    printf("%lu\n", mib);
    return 0;
}
