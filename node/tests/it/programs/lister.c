/* Lists a huge directory in many fd_readdir calls, as issue 14 (item 10)
 * attacked it, and checks every listing:
 *
 *   lister DIR COUNT DESCRIPTORS
 *
 * DIR holds exactly COUNT entries named e000000, e000001, ... It checks
 * that each listing below sees `.`, `..` and every one of them exactly
 * once, with increasing cookies:
 *   1. one descriptor, read with raw fd_readdir calls and a 4 KiB buffer
 *      (hundreds of calls, each continuing from the last cookie);
 *   2. DESCRIPTORS descriptors each start a listing (one call from cookie
 *      0 each: the attack), then the first, a middle and the last one are
 *      read on to the end (their listings may have been dropped for the
 *      node's budget meanwhile, and must continue where they were);
 *   3. wasi-libc's readdir.
 * Prints "ok: ..." for each, or "FAIL: ..." and exits 1. Then prints
 * "listed" and reads stdin to its end, so that the test can measure the
 * node's memory while everything is still open. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wasi/api.h>

#define BUF 4096
#define MAX_FDS 64

static long count;
static unsigned char *seen;

static void fail(const char *what, const char *why) {
    printf("FAIL: %s: %s\n", what, why);
    exit(1);
}

/* Notes one listed name; returns 0 if it is not one of ours or seen. */
static int note(const char *name, size_t len) {
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.')) {
        long i = count + (long)len - 1; /* "." and ".." get the last slots */
        if (seen[i]) return 0;
        seen[i] = 1;
        return 1;
    }
    if (len != 7 || name[0] != 'e') return 0;
    long i = 0;
    for (size_t k = 1; k < 7; k++) {
        if (name[k] < '0' || name[k] > '9') return 0;
        i = i * 10 + (name[k] - '0');
    }
    if (i >= count || seen[i]) return 0;
    seen[i] = 1;
    return 1;
}

static void check_all_seen(const char *what) {
    for (long i = 0; i < count + 2; i++)
        if (!seen[i]) fail(what, "an entry is missing");
    memset(seen, 0, count + 2);
}

/* Reads one fd_readdir page of `fd` from `*cookie`; notes its entries and
 * moves `*cookie` on. Returns 0 at the end of the listing. */
static int page(const char *what, int fd, __wasi_dircookie_t *cookie) {
    static unsigned char buf[BUF];
    __wasi_size_t used = 0;
    if (__wasi_fd_readdir(fd, buf, BUF, *cookie, &used) != 0) fail(what, "fd_readdir failed");
    size_t off = 0;
    int whole = 0;
    while (off + sizeof(__wasi_dirent_t) <= used) {
        __wasi_dirent_t d;
        memcpy(&d, buf + off, sizeof d);
        if (off + sizeof d + d.d_namlen > used) break; /* cut: ask again from here */
        if (d.d_next <= *cookie) fail(what, "cookies do not increase");
        if (!note((const char *)buf + off + sizeof d, d.d_namlen)) fail(what, "an entry twice, or not ours");
        *cookie = d.d_next;
        off += sizeof d + d.d_namlen;
        whole++;
    }
    if (used < BUF) return 0;
    if (!whole) fail(what, "a page with no whole entry");
    return 1;
}

static int open_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) fail(dir, "cannot open");
    return fd;
}

int main(int argc, char **argv) {
    if (argc != 4) { printf("usage: lister DIR COUNT DESCRIPTORS\n"); return 2; }
    const char *dir = argv[1];
    count = atol(argv[2]);
    int n = atoi(argv[3]);
    if (n < 3 || n > MAX_FDS) { printf("DESCRIPTORS: 3 to %d\n", MAX_FDS); return 2; }
    seen = calloc(count + 2, 1);
    if (!seen) return 3;

    int fd = open_dir(dir);
    __wasi_dircookie_t cookie = 0;
    long pages = 1;
    while (page("one descriptor", fd, &cookie)) pages++;
    check_all_seen("one descriptor");
    printf("ok: one descriptor, %ld entries in %s calls\n", count, pages > 100 ? "many" : "few");

    int fds[MAX_FDS];
    __wasi_dircookie_t cookies[MAX_FDS];
    int picks[3] = {0, n / 2, n - 1};
    unsigned char *first_pages[3];
    for (int i = 0; i < n; i++) {
        fds[i] = open_dir(dir);
        cookies[i] = 0;
        page("the attack", fds[i], &cookies[i]);
        for (int p = 0; p < 3; p++) {
            if (picks[p] != i) continue;
            first_pages[p] = malloc(count + 2);
            if (!first_pages[p]) return 3;
            memcpy(first_pages[p], seen, count + 2);
        }
        memset(seen, 0, count + 2);
    }
    for (int p = 0; p < 3; p++) {
        int i = picks[p];
        /* What its first page saw, then the rest from its cookie on. */
        memcpy(seen, first_pages[p], count + 2);
        while (page("a continued descriptor", fds[i], &cookies[i])) {}
        check_all_seen("a continued descriptor");
    }
    printf("ok: %d descriptors started, 3 continued to the end\n", n);

    DIR *d = opendir(dir);
    if (!d) fail("readdir", "cannot open");
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!note(e->d_name, strlen(e->d_name))) fail("readdir", "an entry twice, or not ours");
    }
    check_all_seen("readdir");
    closedir(d);
    printf("ok: readdir\n");
    printf("listed\n");
    fflush(stdout);
    char sink[256];
    while (read(0, sink, sizeof sink) > 0) {}
    return 0;
}
