// A small line-based key-value server: an example service vessel.
//
//   meshnode run --tcplisten 127.0.0.1:7000 kvserver.wasm
//   (wasmtime 36 or older: wasmtime run -S preview2=n -S tcplisten=127.0.0.1:7000 kvserver.wasm)
//
// Commands, one per line (answers end in "\n"):
//   SET key value   -> OK            value is the rest of the line (any bytes but "\n")
//   GET key         -> VALUE value   or NOT_FOUND
//   DEL key         -> DELETED       or NOT_FOUND
//   COUNT           -> COUNT n
//   QUIT            -> BYE, then the server closes the connection
//   SHUTDOWN        -> BYE to every client, then the server exits (status 0)
//
// It serves many clients at once with poll(), with non-blocking sockets
// and a buffer per client each way, so a client that sends a large value
// or reads slowly never stalls the others. A client that half-closes gets
// its answers and then end-of-file; one that resets is dropped.
//
// The listening socket is the first descriptor from 3 on that is a socket
// (runtimes put --tcplisten sockets right after stdio).
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CLIENTS 64
#define MAX_LINE (8 * 1024 * 1024)
#define READ_CHUNK 65536

struct buf {
    char *data;
    size_t len, cap, off; // bytes data[off..len] are pending
};

struct client {
    int fd;
    int id;
    struct buf in, out;
    int peer_done; // the client sent end-of-file
    int closing;   // close once `out` is flushed
};

struct entry {
    char *key, *value;
    size_t value_len;
    struct entry *next;
};

static struct client clients[MAX_CLIENTS];
static int nclients;
static struct entry *table[1024];
static size_t nkeys;
static int shutting_down;

static void die(const char *what) {
    fprintf(stderr, "kvserver: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void buf_add(struct buf *b, const char *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data) die("out of memory");
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

// Drops the consumed prefix so that buffers do not grow forever.
static void buf_compact(struct buf *b) {
    if (b->off == 0) return;
    memmove(b->data, b->data + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
}

static unsigned hash(const char *s) {
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h % 1024;
}

static struct entry **find(const char *key) {
    struct entry **e = &table[hash(key)];
    while (*e && strcmp((*e)->key, key) != 0) e = &(*e)->next;
    return e;
}

static void reply(struct client *c, const char *s) { buf_add(&c->out, s, strlen(s)); }

// Runs one command line (without its "\n"; it may hold NUL bytes in a value).
static void command(struct client *c, char *line, size_t len) {
    if (len > 0 && line[len - 1] == '\r') line[--len] = 0;
    char *sp = memchr(line, ' ', len);
    size_t cmd_len = sp ? (size_t)(sp - line) : len;
    char *arg = sp ? sp + 1 : line + len;
    size_t arg_len = len - (arg - line);
    if (cmd_len == 3 && memcmp(line, "SET", 3) == 0) {
        char *sp2 = memchr(arg, ' ', arg_len);
        if (!sp2 || sp2 == arg) { reply(c, "ERR usage: SET key value\n"); return; }
        *sp2 = 0;
        size_t vlen = arg_len - (sp2 + 1 - arg);
        struct entry **e = find(arg);
        if (!*e) {
            *e = calloc(1, sizeof **e);
            if (!*e) die("out of memory");
            (*e)->key = strdup(arg);
            nkeys++;
        }
        free((*e)->value);
        (*e)->value = malloc(vlen ? vlen : 1);
        if (!(*e)->value) die("out of memory");
        memcpy((*e)->value, sp2 + 1, vlen);
        (*e)->value_len = vlen;
        reply(c, "OK\n");
    } else if (cmd_len == 3 && memcmp(line, "GET", 3) == 0) {
        struct entry **e = find(arg);
        if (!*e) { reply(c, "NOT_FOUND\n"); return; }
        reply(c, "VALUE ");
        buf_add(&c->out, (*e)->value, (*e)->value_len);
        reply(c, "\n");
    } else if (cmd_len == 3 && memcmp(line, "DEL", 3) == 0) {
        struct entry **e = find(arg);
        if (!*e) { reply(c, "NOT_FOUND\n"); return; }
        struct entry *gone = *e;
        *e = gone->next;
        free(gone->key);
        free(gone->value);
        free(gone);
        nkeys--;
        reply(c, "DELETED\n");
    } else if (cmd_len == 5 && memcmp(line, "COUNT", 5) == 0) {
        char msg[64];
        snprintf(msg, sizeof msg, "COUNT %zu\n", nkeys);
        reply(c, msg);
    } else if (cmd_len == 4 && memcmp(line, "QUIT", 4) == 0) {
        reply(c, "BYE\n");
        c->closing = 1;
    } else if (cmd_len == 8 && memcmp(line, "SHUTDOWN", 8) == 0) {
        shutting_down = 1;
    } else {
        reply(c, "ERR unknown command\n");
    }
}

// Runs every complete line in the client's input.
static void run_lines(struct client *c) {
    while (!c->closing) {
        char *start = c->in.data + c->in.off;
        size_t avail = c->in.len - c->in.off;
        char *nl = avail ? memchr(start, '\n', avail) : NULL;
        if (!nl) break;
        *nl = 0;
        c->in.off += (nl - start) + 1;
        command(c, start, nl - start);
    }
    if (c->in.len - c->in.off > MAX_LINE) {
        reply(c, "ERR line too long\n");
        c->closing = 1;
    }
    buf_compact(&c->in);
}

static void drop_client(int i, const char *why) {
    struct client *c = &clients[i];
    printf("client %d %s\n", c->id, why);
    close(c->fd);
    free(c->in.data);
    free(c->out.data);
    clients[i] = clients[--nclients];
}

// Reads what is there. Returns 0 when the client is gone for good.
static int read_client(struct client *c) {
    // Not on the stack: wasm32's default stack is only 64 KiB.
    static char chunk[READ_CHUNK];
    for (;;) {
        ssize_t n = recv(c->fd, chunk, sizeof chunk, 0);
        if (n > 0) { buf_add(&c->in, chunk, n); continue; }
        if (n == 0) { c->peer_done = 1; return 1; }
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
        if (errno == EINTR) continue;
        return 0; // ECONNRESET and friends
    }
}

// Writes what it can. Returns 0 when the client is gone for good.
static int write_client(struct client *c) {
    while (c->out.off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out.off, c->out.len - c->out.off, 0);
        if (n > 0) { c->out.off += n; continue; }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        if (n < 0 && errno == EINTR) continue;
        return 0; // EPIPE, ECONNRESET
    }
    c->out.off = c->out.len = 0;
    return 1;
}

static int find_listener(void) {
    for (int fd = 3; fd < 64; fd++) {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) return fd;
    }
    return -1;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int lfd = find_listener();
    if (lfd < 0) {
        fprintf(stderr, "kvserver: no listening socket (run with --tcplisten HOST:PORT)\n");
        return 2;
    }
    printf("kvserver: serving on descriptor %d\n", lfd);
    int next_id = 1;
    struct pollfd pfds[MAX_CLIENTS + 1];
    for (;;) {
        if (shutting_down) {
            // Say goodbye to everyone, flush, and leave.
            for (int i = 0; i < nclients; i++) {
                reply(&clients[i], "BYE\n");
                clients[i].closing = 1;
            }
            int pending = 0;
            for (int i = 0; i < nclients; i++) pending |= clients[i].out.len > clients[i].out.off;
            if (!pending) break;
        }
        int n = 0;
        if (!shutting_down && nclients < MAX_CLIENTS) {
            pfds[n].fd = lfd;
            pfds[n].events = POLLIN;
            n++;
        }
        for (int i = 0; i < nclients; i++) {
            struct client *c = &clients[i];
            pfds[n].fd = c->fd;
            pfds[n].events = 0;
            if (!c->peer_done && !c->closing) pfds[n].events |= POLLIN;
            if (c->out.len > c->out.off) pfds[n].events |= POLLOUT;
            n++;
        }
        if (poll(pfds, n, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        int base = 0;
        if (!shutting_down && nclients < MAX_CLIENTS) {
            base = 1;
            if (pfds[0].revents & POLLIN) {
                struct sockaddr_storage addr;
                socklen_t alen = sizeof addr;
                int cfd = accept(lfd, (struct sockaddr *)&addr, &alen);
                if (cfd >= 0) {
                    if (fcntl(cfd, F_SETFL, O_NONBLOCK) < 0) die("fcntl");
                    struct client *c = &clients[nclients++];
                    memset(c, 0, sizeof *c);
                    c->fd = cfd;
                    c->id = next_id++;
                    printf("client %d connected\n", c->id);
                } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED) {
                    die("accept");
                }
            }
        }
        // Walk clients backwards: drop_client moves the last one into the hole.
        int polled = n - base;
        for (int i = polled - 1; i >= 0; i--) {
            struct client *c = &clients[i];
            short re = pfds[base + i].revents;
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                if (!read_client(c)) { drop_client(i, "reset"); continue; }
                run_lines(c);
            }
            if (!write_client(c)) { drop_client(i, "reset"); continue; }
            if (c->out.len > c->out.off) continue;
            if (c->closing) { drop_client(i, "quit"); continue; }
            if (c->peer_done) {
                // Half-closed by the client and every answer sent: done.
                drop_client(i, "finished");
            }
        }
    }
    while (nclients > 0) drop_client(nclients - 1, "shut down");
    printf("kvserver: shut down with %zu keys\n", nkeys);
    return 0;
}
