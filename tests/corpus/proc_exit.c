//@ exit: 7
/* proc_exit called directly: text written with write() appears, text left
 * in stdio's buffer does not, and atexit handlers do not run. */
#include "corpus.h"
#include <unistd.h>

static void never(void) { write(1, "atexit ran (wrong)\n", 19); }

int main(void) {
    atexit(never);
    setvbuf(stdout, NULL, _IOFBF, 4096);
    const char msg[] = "written before proc_exit\n";
    write(1, msg, sizeof msg - 1);
    printf("this stays in the stdio buffer and is lost");
    __wasi_proc_exit(7);
}
