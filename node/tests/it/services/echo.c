/* A blocking echo server for services.rs: no poll, plain blocking accept,
 * recv and send, as the simplest C servers are written.
 *
 *   echo CHUNK CLIENTS
 *
 * Serves CLIENTS clients one after the other on the first listening socket
 * (descriptor 3 onwards), reading at most CHUNK bytes per recv (a slow
 * reader: the rest waits in the dock and the hub) and sending every byte
 * back. When a client half-closes, it closes that connection and takes the
 * next. Exits with 0 after the last client.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t chunk = argc > 1 ? (size_t)atol(argv[1]) : 1000;
    int clients = argc > 2 ? atoi(argv[2]) : 1;
    int lfd = -1;
    for (int fd = 3; fd < 64 && lfd < 0; fd++) {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) lfd = fd;
    }
    if (lfd < 0) { fprintf(stderr, "echo: no listening socket\n"); return 2; }
    char *buf = malloc(chunk);
    if (!buf) return 3;
    for (int n = 1; n <= clients; n++) {
        struct sockaddr_storage addr;
        socklen_t alen = sizeof addr;
        int c = accept(lfd, (struct sockaddr *)&addr, &alen);
        if (c < 0) { fprintf(stderr, "echo: accept: %s\n", strerror(errno)); return 4; }
        unsigned long long total = 0, calls = 0;
        for (;;) {
            ssize_t got = recv(c, buf, chunk, 0);
            if (got < 0) { fprintf(stderr, "echo: recv: %s\n", strerror(errno)); return 5; }
            if (got == 0) break;
            calls++;
            for (ssize_t off = 0; off < got;) {
                ssize_t put = send(c, buf + off, got - off, 0);
                if (put < 0) { fprintf(stderr, "echo: send: %s\n", strerror(errno)); return 6; }
                off += put;
            }
            total += got;
        }
        printf("client %d: echoed %llu bytes in %s recv calls\n", n, total, calls > 100 ? "many" : "few");
        fflush(stdout);
        close(c);
    }
    return 0;
}
