/* Opens PATH for reading and tries to read it, then says what happened:
 *
 *   fifo_reader PATH
 *
 * Given a FIFO nobody writes to, an open that blocks would never return
 * (issue 14, item 9); the dock opens it non-blocking, so the program
 * prints "opened" and the read's outcome, and exits. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) { printf("usage: fifo_reader PATH\n"); return 2; }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) { printf("open: %s\n", strerror(errno)); return 0; }
    printf("opened\n");
    char buf[16];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) printf("read: %s\n", strerror(errno));
    else printf("read %zd bytes\n", n);
    return 0;
}
