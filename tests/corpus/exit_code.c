//@ args: 42
//@ exit: 42
/* exit() with a code from argv: buffered stdout is flushed by exit. */
#include "corpus.h"

static void bye(void) { printf("atexit handler ran\n"); }

int main(int argc, char **argv) {
    atexit(bye);
    int code = argc > 1 ? atoi(argv[1]) : 1;
    printf("exiting with %d", code); /* no newline: exit must flush it */
    printf("\n");
    exit(code);
}
