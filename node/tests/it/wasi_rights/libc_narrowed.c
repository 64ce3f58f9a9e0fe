/* Ordinary C (wasi-libc) under narrowed rights (node/tests/it/wasi_rights.rs).
 *
 * wasi-libc's open() asks path_open for the rights it wants that the
 * directory can pass on, and the directory's own inheriting rights. So
 * after the preopen /sandbox (fd 3) drops FD_WRITE from its inheriting
 * rights, files still open and read, a file opened for writing cannot be
 * written (ENOTCAPABLE), and after it drops PATH_CREATE_FILE nothing new
 * can be created. Prints one line per step; the test compares them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <wasi/api.h>

static void narrow(__wasi_rights_t base_drop, __wasi_rights_t inheriting_drop) {
    __wasi_fdstat_t st;
    if (__wasi_fd_fdstat_get(3, &st) != 0 ||
        __wasi_fd_fdstat_set_rights(3, st.fs_rights_base & ~base_drop,
                                    st.fs_rights_inheriting & ~inheriting_drop) != 0) {
        printf("narrowing failed\n");
    }
}

/* "ok", or the errno of a call that failed. */
static void show(const char *what, int failed) {
    if (failed)
        printf("%s: errno %d\n", what, errno);
    else
        printf("%s: ok\n", what);
}

int main(void) {
    int fd = open("/sandbox/a.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    show("create a.txt", fd < 0);
    show("write a.txt", write(fd, "hello", 5) != 5);
    close(fd);

    narrow(0, __WASI_RIGHTS_FD_WRITE);
    char buf[8] = {0};
    fd = open("/sandbox/a.txt", O_RDONLY);
    show("open a.txt read-only", fd < 0);
    show("read a.txt", read(fd, buf, sizeof buf - 1) != 5);
    printf("read <%s>\n", buf);
    close(fd);
    DIR *d = opendir("/sandbox");
    show("opendir", d == NULL);
    if (d) closedir(d);
    fd = open("/sandbox/a.txt", O_WRONLY);
    show("open a.txt write-only", fd < 0);
    /* wasi-libc's write() turns ENOTCAPABLE into EBADF, as POSIX says for
     * a descriptor not open for writing; the host call says ENOTCAPABLE. */
    show("write a.txt without FD_WRITE", write(fd, "x", 1) < 0);
    __wasi_ciovec_t iov = {(const uint8_t *)"x", 1};
    size_t n;
    printf("fd_write without FD_WRITE: %d\n", __wasi_fd_write(fd, &iov, 1, &n));
    close(fd);
    FILE *f = fopen("/sandbox/a.txt", "a");
    show("fopen a.txt append", f == NULL);
    if (f) {
        fputs("more", f);
        show("fflush without FD_WRITE", fflush(f) != 0);
        fclose(f);
    }

    narrow(__WASI_RIGHTS_PATH_CREATE_FILE, 0);
    show("create b.txt without PATH_CREATE_FILE", open("/sandbox/b.txt", O_RDONLY | O_CREAT, 0644) < 0);
    show("unlink a.txt", unlink("/sandbox/a.txt") != 0);
    printf("ENOTCAPABLE is %d\n", ENOTCAPABLE);
    return 0;
}
