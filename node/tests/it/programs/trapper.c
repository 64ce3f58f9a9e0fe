/* Prints a line, then traps (wasm `unreachable`): a vessel that fails, for
 * the tests of how `ps` shows a failure (short in the table, whole in
 * `ps VESSEL` and --json). */
#include <stdio.h>

int main(void) {
    printf("about to trap\n");
    fflush(stdout);
    __builtin_trap();
}
