//@ setup: dir outside
//@ setup: file outside/secret.txt=secret
//@ setup: dir sandbox/sub
//@ setup: file sandbox/inside.txt=in
//@ setup: symlink sandbox/abs=/etc
//@ setup: symlink sandbox/absroot={root}/outside
//@ setup: symlink sandbox/up=..
//@ setup: symlink sandbox/upup=../../..
//@ setup: symlink sandbox/secret=../outside/secret.txt
//@ setup: symlink sandbox/sub/sneaky=../../outside
//@ setup: symlink sandbox/loop1=loop2
//@ setup: symlink sandbox/loop2=loop1
//@ setup: symlink sandbox/self=self
//@ known-diff node *: Node's WASI is not a sandbox (its documentation says so): uvwasi follows host symlinks that lead out of the preopen (abs, absroot, up, upup, sub/sneaky) and writes outside it; it also refuses guest symlinks with '..' targets that wasmtime allows
/* Sandbox escape attempts. Every one must be refused and nothing may appear
 * outside the preopened directory: the harness compares the whole host
 * directory that holds the sandbox, including the `outside` directory beside
 * it. Links that point out are created by the harness (host side), so every
 * runtime faces the same links.
 *
 * wasmtime answers an escape with EPERM and Node with ENOTCAPABLE; both are
 * printed as "refused". Other errno values are printed by name. */
#include "corpus.h"
#include <fcntl.h>
#include <unistd.h>

static int sb;

static const char *res(int e) {
    if (e == 0) return "ALLOWED (escape!)";
    if (e == __WASI_ERRNO_PERM || e == __WASI_ERRNO_NOTCAPABLE) return "refused";
    return errname(e);
}

static void try_open(const char *label, int dir, const char *rel, int follow, int creat) {
    __wasi_fd_t fd;
    int e = __wasi_path_open(dir, follow ? __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW : 0, rel,
                             creat ? __WASI_OFLAGS_CREAT : 0,
                             __WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_WRITE, 0, 0, &fd);
    printf("%s: %s\n", label, res(e));
    if (!e) (void)__wasi_fd_close(fd);
}

int main(void) {
    sb = find_preopen("/sandbox");
    if (sb < 0) { printf("no /sandbox\n"); return 1; }

    /* Lexical escapes. */
    try_open("open ..", sb, "..", 1, 0);
    try_open("open ../", sb, "../", 1, 0);
    try_open("open ../outside/secret.txt", sb, "../outside/secret.txt", 1, 0);
    try_open("open ../created.txt (create)", sb, "../created.txt", 1, 1);
    try_open("open sub/../../created.txt (create)", sb, "sub/../../created.txt", 1, 1);
    try_open("open ./../created.txt (create)", sb, "./../created.txt", 1, 1);
    try_open("open /etc/passwd (absolute)", sb, "/etc/passwd", 1, 0);
    try_open("open / (absolute)", sb, "/", 1, 0);
    __wasi_fd_t in;
    int e = __wasi_path_open(sb, 0, "sub/../inside.txt", 0, __WASI_RIGHTS_FD_READ, 0, 0, &in);
    printf("open sub/../inside.txt (stays inside): %s\n", errname(e));
    if (!e) (void)__wasi_fd_close(in);

    __wasi_fd_t subfd;
    MUST(__wasi_path_open(sb, 0, "sub", __WASI_OFLAGS_DIRECTORY,
                          __WASI_RIGHTS_PATH_OPEN | __WASI_RIGHTS_PATH_CREATE_FILE | __WASI_RIGHTS_PATH_FILESTAT_GET,
                          __WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_WRITE, 0, &subfd));
    try_open("from sub fd: open ../inside.txt", subfd, "../inside.txt", 0, 0);
    try_open("from sub fd: open ../../created.txt (create)", subfd, "../../created.txt", 0, 1);

    /* Host-made links that point out. */
    try_open("follow abs/passwd", sb, "abs/passwd", 1, 0);
    try_open("follow abs", sb, "abs", 1, 0);
    try_open("follow absroot/secret.txt", sb, "absroot/secret.txt", 1, 0);
    try_open("follow absroot/created.txt (create)", sb, "absroot/created.txt", 1, 1);
    try_open("follow up/outside/secret.txt", sb, "up/outside/secret.txt", 1, 0);
    try_open("follow up/created.txt (create)", sb, "up/created.txt", 1, 1);
    try_open("follow upup/etc/passwd", sb, "upup/etc/passwd", 1, 0);
    try_open("follow secret", sb, "secret", 1, 0);
    try_open("follow secret (create)", sb, "secret", 1, 1);
    try_open("follow sub/sneaky/secret.txt", sb, "sub/sneaky/secret.txt", 1, 0);
    try_open("from sub fd: follow sneaky/created.txt (create)", subfd, "sneaky/created.txt", 1, 1);
    __wasi_filestat_t st;
    printf("path_filestat_get(abs/passwd): %s\n", res(__wasi_path_filestat_get(sb, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "abs/passwd", &st)));
    printf("path_filestat_get(up, follow): %s\n", res(__wasi_path_filestat_get(sb, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "up", &st)));
    printf("path_filestat_get(secret, follow): %s\n", res(__wasi_path_filestat_get(sb, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "secret", &st)));
    e = __wasi_path_filestat_get(sb, 0, "secret", &st);
    printf("path_filestat_get(secret, nofollow): %s type=%s\n", errname(e), e ? "-" : ftname(st.filetype));
    printf("path_filestat_get(..): %s\n", res(__wasi_path_filestat_get(sb, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "..", &st)));
    char lb[256];
    __wasi_size_t ln = 0;
    e = __wasi_path_readlink(sb, "upup", (uint8_t *)lb, sizeof lb, &ln);
    printf("path_readlink(upup): %s <%.*s>\n", errname(e), e ? 0 : (int)ln, lb);

    /* Symlink loops. */
    try_open("open loop1", sb, "loop1", 1, 0);
    try_open("open self", sb, "self", 1, 0);
    try_open("open loop1/x (create)", sb, "loop1/x", 1, 1);
    printf("path_filestat_get(loop1, follow): %s\n", res(__wasi_path_filestat_get(sb, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "loop1", &st)));
    e = __wasi_path_filestat_get(sb, 0, "loop1", &st);
    printf("path_filestat_get(loop1, nofollow): %s type=%s\n", errname(e), e ? "-" : ftname(st.filetype));

    /* Every other path call that would write or look outside. */
    printf("path_create_directory(../escdir): %s\n", res(__wasi_path_create_directory(sb, "../escdir")));
    printf("path_create_directory(up/escdir): %s\n", res(__wasi_path_create_directory(sb, "up/escdir")));
    printf("path_create_directory(absroot/escdir): %s\n", res(__wasi_path_create_directory(sb, "absroot/escdir")));
    printf("path_rename(inside.txt -> ../moved): %s\n", res(__wasi_path_rename(sb, "inside.txt", sb, "../moved")));
    printf("path_rename(inside.txt -> up/moved): %s\n", res(__wasi_path_rename(sb, "inside.txt", sb, "up/moved")));
    printf("path_rename(up/outside/secret.txt -> stolen): %s\n", res(__wasi_path_rename(sb, "up/outside/secret.txt", sb, "stolen")));
    printf("path_link(inside.txt -> ../hard): %s\n", res(__wasi_path_link(sb, 0, "inside.txt", sb, "../hard")));
    printf("path_link(secret -> stolen, follow): %s\n", res(__wasi_path_link(sb, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "secret", sb, "stolen")));
    printf("path_link(abs/passwd -> stolen, follow): %s\n", res(__wasi_path_link(sb, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "abs/passwd", sb, "stolen")));
    printf("path_symlink(x <- ../esclink): %s\n", res(__wasi_path_symlink("x", sb, "../esclink")));
    printf("path_symlink(x <- up/esclink): %s\n", res(__wasi_path_symlink("x", sb, "up/esclink")));
    printf("path_unlink_file(../outside/secret.txt): %s\n", res(__wasi_path_unlink_file(sb, "../outside/secret.txt")));
    printf("path_unlink_file(up/outside/secret.txt): %s\n", res(__wasi_path_unlink_file(sb, "up/outside/secret.txt")));
    printf("path_remove_directory(..): %s\n", res(__wasi_path_remove_directory(sb, "..")));
    printf("path_remove_directory(up/outside): %s\n", res(__wasi_path_remove_directory(sb, "up/outside")));
    printf("path_filestat_set_times(..): %s\n", res(__wasi_path_filestat_set_times(sb, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "..", 0, 0, __WASI_FSTFLAGS_MTIM_NOW)));
    printf("path_filestat_set_times(secret, follow): %s\n", res(__wasi_path_filestat_set_times(sb, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, "secret", 0, 0, __WASI_FSTFLAGS_MTIM_NOW)));
    printf("path_readlink(../x): %s\n", res(__wasi_path_readlink(sb, "../x", (uint8_t *)lb, sizeof lb, &ln)));

    /* Guest-made links that point out: creating them may be allowed, but
     * they must not lead anywhere. */
    const char *targets[] = {"/etc", "..", "../../..", "sub/../.."};
    const char *names[] = {"g_abs", "g_up", "g_upup", "g_sneaky"};
    for (int i = 0; i < 4; i++) {
        e = __wasi_path_symlink(targets[i], sb, names[i]);
        printf("guest symlink %s -> %s: %s\n", names[i], targets[i], e == 0 ? "created" : res(e));
    }
    try_open("follow g_up/created.txt (create)", sb, "g_up/created.txt", 1, 1);
    try_open("follow g_abs/passwd", sb, "g_abs/passwd", 1, 0);
    for (int i = 0; i < 4; i++) (void)__wasi_path_unlink_file(sb, names[i]);

    /* Very long paths. */
    static char longp[8192];
    memset(longp, 'a', 5000);
    longp[5000] = 0;
    __wasi_fd_t t;
    e = __wasi_path_open(sb, 0, longp, __WASI_OFLAGS_CREAT, __WASI_RIGHTS_FD_WRITE, 0, 0, &t);
    printf("open 5000-byte name (create): %s\n", e ? errname(e) : "OPENED");
    char *q = longp;
    for (int i = 0; i < 1500; i++) { memcpy(q, "s/", 2); q += 2; }
    *q = 0;
    e = __wasi_path_open(sb, 0, longp, 0, __WASI_RIGHTS_FD_READ, 0, 0, &t);
    printf("open 3000-byte path through missing dirs: %s\n", e ? errname(e) : "OPENED");
    q = longp;
    for (int i = 0; i < 1200; i++) { memcpy(q, "../", 3); q += 3; }
    strcpy(q, "etc/passwd");
    e = __wasi_path_open(sb, 0, longp, 0, __WASI_RIGHTS_FD_READ, 0, 0, &t);
    printf("open ../ x1200 + etc/passwd: %s\n", res(e));

    /* libc resolves absolute paths against the preopens. */
    errno = 0;
    printf("libc open /sandbox/../outside/secret.txt: %s\n", open("/sandbox/../outside/secret.txt", O_RDONLY) >= 0 ? "ALLOWED (escape!)" : res(errno));
    printf("libc open /etc/passwd: %s\n", open("/etc/passwd", O_RDONLY) >= 0 ? "ALLOWED (escape!)" : res(errno));
    printf("done\n");
    return 0;
}
