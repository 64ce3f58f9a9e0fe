//@ known-diff node *: uvwasi resolves a new symlink's target against the preopen root instead of the link's own directory, so it refuses "dir/up -> ../target.txt" (ENOTCAPABLE) although the target stays inside the sandbox
/* A relative symlink in a subdirectory that points back up to a file that is
 * still inside the sandbox: legal, and must be followed. */
#include "corpus.h"
#include <fcntl.h>
#include <unistd.h>

int main(void) {
    int sb = find_preopen("/sandbox");
    int fd = open("/sandbox/target.txt", O_WRONLY | O_CREAT, 0644);
    MUSTC(fd);
    write(fd, "target\n", 7);
    close(fd);
    MUST(__wasi_path_create_directory(sb, "dir"));
    MUST(__wasi_path_create_directory(sb, "dir/deeper"));
    SHOW("path_symlink(../target.txt <- dir/up)", __wasi_path_symlink("../target.txt", sb, "dir/up"));
    SHOW("path_symlink(../../target.txt <- dir/deeper/up2)", __wasi_path_symlink("../../target.txt", sb, "dir/deeper/up2"));
    SHOW("path_symlink(../deeper <- dir/deeper/self)", __wasi_path_symlink("../deeper", sb, "dir/deeper/self"));
    char buf[64];
    __wasi_size_t n;
    int e = __wasi_path_readlink(sb, "dir/up", (uint8_t *)buf, sizeof buf, &n);
    printf("path_readlink(dir/up): %s <%.*s>\n", errname(e), e ? 0 : (int)n, buf);
    const char *paths[] = {"/sandbox/dir/up", "/sandbox/dir/deeper/up2", "/sandbox/dir/deeper/self/self/up2"};
    for (int i = 0; i < 3; i++) {
        int r = open(paths[i], O_RDONLY);
        if (r < 0) { printf("open %s: %s\n", paths[i], errname(errno)); continue; }
        ssize_t k = read(r, buf, sizeof buf);
        close(r);
        printf("open %s: <%.*s>\n", paths[i], (int)(k > 0 ? k - 1 : 0), buf);
    }
    return 0;
}
