//@ refs-disagree proc_raise(0): proc_raise is gone from later WASI drafts; wasmtime answers ENOTSUP and Node (uvwasi) ENOSYS
/* proc_raise was removed from later WASI drafts; preview1 runtimes answer it
 * with an errno instead of raising a signal. Record which. */
#include "corpus.h"

__attribute__((import_module("wasi_snapshot_preview1"), import_name("proc_raise")))
uint16_t raw_proc_raise(uint8_t sig);

int main(void) {
    printf("proc_raise(0): %s\n", errname(raw_proc_raise(0)));
    printf("still running\n");
    return 0;
}
