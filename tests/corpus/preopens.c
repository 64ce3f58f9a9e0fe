//@ dirs: /sandbox /data
//@ known-diff node fd_prestat_dir_name(buffer too small)|fd_prestat_get(stdout)|fd_prestat_get(regular file): uvwasi answers ENOBUFS for a short name buffer (wasmtime: ENAMETOOLONG) and EINVAL for fd_prestat_get on an open descriptor that is not a preopen (wasmtime and the spec: EBADF)
//@ setup: file data/given.txt=provided by the host
/* fd_prestat_get / fd_prestat_dir_name over every preopen, their errors, and
 * path calls that span two preopened directories. */
#include "corpus.h"
#include <fcntl.h>
#include <unistd.h>

int main(void) {
    int count = 0;
    char *names[16];
    for (int fd = 3; fd < 32; fd++) {
        __wasi_prestat_t ps;
        int e = __wasi_fd_prestat_get(fd, &ps);
        if (e) { printf("fd_prestat_get(first non-preopen fd): %s\n", errname(e)); break; }
        char buf[128];
        size_t n = ps.u.dir.pr_name_len;
        MUST(__wasi_fd_prestat_dir_name(fd, (uint8_t *)buf, n));
        buf[n] = 0;
        names[count++] = strdup(buf);
        if (count == 1) {
            /* Descriptor numbers are not compared, only the order below. */
            char small[2];
            int e2 = __wasi_fd_prestat_dir_name(fd, (uint8_t *)small, 1);
            printf("fd_prestat_dir_name(buffer too small): %s\n", errname(e2));
            __wasi_fdstat_t fs;
            MUST(__wasi_fd_fdstat_get(fd, &fs));
            printf("preopen fdstat: type=%s\n", ftname(fs.fs_filetype));
        }
    }
    qsort(names, count, sizeof *names, cmpstr);
    printf("%d preopens:", count);
    for (int i = 0; i < count; i++) printf(" %s", names[i]);
    printf("\n");
    __wasi_prestat_t ps;
    SHOW("fd_prestat_get(stdout)", __wasi_fd_prestat_get(1, &ps));
    SHOW("fd_prestat_get(99)", __wasi_fd_prestat_get(99, &ps));
    char b[8];
    SHOW("fd_prestat_dir_name(99)", __wasi_fd_prestat_dir_name(99, (uint8_t *)b, sizeof b));
    int f = open("/sandbox/file.txt", O_WRONLY | O_CREAT, 0644);
    MUSTC(f);
    SHOW("fd_prestat_get(regular file)", __wasi_fd_prestat_get(f, &ps));
    close(f);

    int sb = find_preopen("/sandbox"), data = find_preopen("/data");
    printf("both found: %s\n", sb >= 0 && data >= 0 ? "yes" : "no");
    int g = open("/data/given.txt", O_RDONLY);
    char buf[64] = {0};
    ssize_t n = g >= 0 ? read(g, buf, sizeof buf - 1) : -1;
    printf("read /data/given.txt: <%.*s>\n", (int)(n > 0 ? n : 0), buf);
    if (g >= 0) close(g);
    SHOW("path_rename across preopens", __wasi_path_rename(sb, "file.txt", data, "moved.txt"));
    SHOW("path_link across preopens", __wasi_path_link(data, 0, "given.txt", sb, "given-link.txt"));
    SHOW("path_symlink in /data", __wasi_path_symlink("given.txt", data, "alias"));
    g = open("/data/alias", O_RDONLY);
    n = g >= 0 ? read(g, buf, sizeof buf - 1) : -1;
    printf("read /data/alias: <%.*s>\n", (int)(n > 0 ? n : 0), buf);
    if (g >= 0) close(g);
    LIBC("libc rename across preopens", rename("/data/moved.txt", "/sandbox/back.txt"));
    return 0;
}
