//@ known-diff node path_open(ln, nofollow)|open O_NOFOLLOW on symlink: uvwasi ignores a missing LOOKUPFLAGS_SYMLINK_FOLLOW on the last component and opens the link's target; wasmtime refuses with ELOOP like O_NOFOLLOW
/* Symbolic and hard links inside the sandbox: path_symlink, path_readlink,
 * path_link, lookups that follow or do not follow links, and their errors. */
#include "corpus.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static int sb;

static void put(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    MUSTC(fd);
    MUSTC(write(fd, text, strlen(text)));
    close(fd);
}

static void rl(const char *rel, size_t bufsize) {
    char buf[256];
    __wasi_size_t n = 0;
    int e = __wasi_path_readlink(sb, rel, (uint8_t *)buf, bufsize, &n);
    if (e) printf("path_readlink(%s, buf %zu): %s\n", rel, bufsize, errname(e));
    else printf("path_readlink(%s, buf %zu): <%.*s>\n", rel, bufsize, (int)n, buf);
}

static void st(const char *rel, int follow) {
    __wasi_filestat_t s;
    int e = __wasi_path_filestat_get(sb, follow ? __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW : 0, rel, &s);
    if (e) printf("path_filestat_get(%s, %s): %s\n", rel, follow ? "follow" : "nofollow", errname(e));
    else printf("path_filestat_get(%s, %s): type=%s nlink=%llu%s\n", rel, follow ? "follow" : "nofollow",
                ftname(s.filetype), (unsigned long long)s.nlink,
                s.filetype == __WASI_FILETYPE_REGULAR_FILE ? (s.size == 7 ? " size=7" : " size=other") : "");
}

static void cat(const char *path) {
    char buf[64];
    int fd = open(path, O_RDONLY);
    if (fd < 0) { printf("cat %s: %s\n", path, errname(errno)); return; }
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    printf("cat %s: <%.*s>\n", path, (int)(n > 0 ? n - 1 : 0), buf);
}

int main(void) {
    sb = find_preopen("/sandbox");
    if (sb < 0) { printf("no /sandbox\n"); return 1; }
    put("/sandbox/target.txt", "target\n");
    MUST(__wasi_path_create_directory(sb, "dir"));
    put("/sandbox/dir/inner.txt", "inner!\n");

    SHOW("path_symlink(target.txt <- ln)", __wasi_path_symlink("target.txt", sb, "ln"));
    SHOW("path_symlink(dir <- dirlink)", __wasi_path_symlink("dir", sb, "dirlink"));
    SHOW("path_symlink(missing <- dangling)", __wasi_path_symlink("missing", sb, "dangling"));
    SHOW("path_symlink(x <- ln) exists", __wasi_path_symlink("x", sb, "ln"));
    SHOW("path_symlink(x <- target.txt) exists", __wasi_path_symlink("x", sb, "target.txt"));
    SHOW("path_symlink(x <- nodir/l)", __wasi_path_symlink("x", sb, "nodir/l"));
    LIBC("symlink() via libc", symlink("dir/inner.txt", "/sandbox/ln2"));

    rl("ln", 255);
    rl("dirlink", 255);
    rl("dangling", 255);
    rl("target.txt", 255);
    rl("missing", 255);
    char buf[64];
    ssize_t n = readlink("/sandbox/ln2", buf, sizeof buf);
    printf("readlink() via libc: <%.*s>\n", (int)(n > 0 ? n : 0), buf);

    st("ln", 1);
    st("ln", 0);
    st("dangling", 1);
    st("dangling", 0);
    st("dirlink", 1);
    st("dirlink", 0);
    st("dirlink/inner.txt", 0);

    cat("/sandbox/ln");
    cat("/sandbox/dirlink/inner.txt");
    cat("/sandbox/ln2");
    cat("/sandbox/dangling");

    /* Opening a symlink without LOOKUP_SYMLINK_FOLLOW. */
    __wasi_fd_t fd;
    int e = __wasi_path_open(sb, 0, "ln", 0, __WASI_RIGHTS_FD_READ, 0, 0, &fd);
    printf("path_open(ln, nofollow): %s\n", errname(e));
    if (!e) (void)__wasi_fd_close(fd);
    LIBC("open O_NOFOLLOW on symlink", open("/sandbox/ln", O_RDONLY | O_NOFOLLOW));
    e = __wasi_path_open(sb, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "ln", 0, __WASI_RIGHTS_FD_READ, 0, 0, &fd);
    printf("path_open(ln, follow): %s\n", errname(e));
    if (!e) (void)__wasi_fd_close(fd);
    /* Writing through a dangling link creates its target. */
    int w = open("/sandbox/dangling", O_WRONLY | O_CREAT, 0644);
    printf("open(dangling, O_CREAT): %s\n", w >= 0 ? "OK" : errname(errno));
    if (w >= 0) { write(w, "made\n", 5); close(w); }

    /* Hard links. */
    SHOW("path_link(target.txt -> hard.txt)", __wasi_path_link(sb, 0, "target.txt", sb, "hard.txt"));
    st("target.txt", 0);
    st("hard.txt", 0);
    SHOW("path_link(target.txt -> hard.txt) exists", __wasi_path_link(sb, 0, "target.txt", sb, "hard.txt"));
    SHOW("path_link(nosuch -> x)", __wasi_path_link(sb, 0, "nosuch", sb, "x"));
    SHOW("path_link(dir -> dirhard) a directory", __wasi_path_link(sb, 0, "dir", sb, "dirhard"));
    SHOW("path_link(target.txt -> nodir/h)", __wasi_path_link(sb, 0, "target.txt", sb, "nodir/h"));
    SHOW("path_link(ln -> lnhard) the link itself", __wasi_path_link(sb, 0, "ln", sb, "lnhard"));
    st("lnhard", 0);
    LIBC("link() via libc", link("/sandbox/target.txt", "/sandbox/dir/hard2.txt"));
    /* Writes through one name show through the other. */
    int hw = open("/sandbox/hard.txt", O_WRONLY);
    MUSTC(hw);
    MUSTC(write(hw, "TARGET", 6));
    close(hw);
    cat("/sandbox/target.txt");
    SHOW("path_unlink_file(target.txt)", __wasi_path_unlink_file(sb, "target.txt"));
    st("hard.txt", 0);
    cat("/sandbox/ln");

    /* Unlinking a symlink removes the link, not the target. */
    SHOW("path_unlink_file(ln2)", __wasi_path_unlink_file(sb, "ln2"));
    st("dir/inner.txt", 0);
    /* A symlink to a directory is removed with unlink, not rmdir. */
    SHOW("path_remove_directory(dirlink)", __wasi_path_remove_directory(sb, "dirlink"));
    SHOW("path_unlink_file(dirlink)", __wasi_path_unlink_file(sb, "dirlink"));
    st("dir", 0);
    /* Trailing slash on a symlink to a file. */
    st("ln/", 1);
    printf("done\n");
    return 0;
}
