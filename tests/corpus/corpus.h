/* Shared helpers for the meshnode WASI test corpus (header-only).
 *
 * Programs print properties, never raw clock values, random bytes, inode
 * numbers or timestamps, so that their output is identical on every runtime.
 * Errno values are printed by name (wasi-libc's errno values are WASI's).
 */
#ifndef MESHNODE_CORPUS_H
#define MESHNODE_CORPUS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h>

static const char *errname(int e) {
    switch (e) {
    case 0: return "OK";
    case __WASI_ERRNO_2BIG: return "E2BIG";
    case __WASI_ERRNO_ACCES: return "EACCES";
    case __WASI_ERRNO_AGAIN: return "EAGAIN";
    case __WASI_ERRNO_BADF: return "EBADF";
    case __WASI_ERRNO_BUSY: return "EBUSY";
    case __WASI_ERRNO_EXIST: return "EEXIST";
    case __WASI_ERRNO_FAULT: return "EFAULT";
    case __WASI_ERRNO_FBIG: return "EFBIG";
    case __WASI_ERRNO_INVAL: return "EINVAL";
    case __WASI_ERRNO_IO: return "EIO";
    case __WASI_ERRNO_ISDIR: return "EISDIR";
    case __WASI_ERRNO_LOOP: return "ELOOP";
    case __WASI_ERRNO_MLINK: return "EMLINK";
    case __WASI_ERRNO_NAMETOOLONG: return "ENAMETOOLONG";
    case __WASI_ERRNO_NOBUFS: return "ENOBUFS";
    case __WASI_ERRNO_NOENT: return "ENOENT";
    case __WASI_ERRNO_NOSPC: return "ENOSPC";
    case __WASI_ERRNO_NOSYS: return "ENOSYS";
    case __WASI_ERRNO_NOTCONN: return "ENOTCONN";
    case __WASI_ERRNO_NOTDIR: return "ENOTDIR";
    case __WASI_ERRNO_NOTEMPTY: return "ENOTEMPTY";
    case __WASI_ERRNO_NOTSOCK: return "ENOTSOCK";
    case __WASI_ERRNO_NOTSUP: return "ENOTSUP";
    case __WASI_ERRNO_NOTTY: return "ENOTTY";
    case __WASI_ERRNO_NXIO: return "ENXIO";
    case __WASI_ERRNO_OVERFLOW: return "EOVERFLOW";
    case __WASI_ERRNO_PERM: return "EPERM";
    case __WASI_ERRNO_PIPE: return "EPIPE";
    case __WASI_ERRNO_RANGE: return "ERANGE";
    case __WASI_ERRNO_ROFS: return "EROFS";
    case __WASI_ERRNO_SPIPE: return "ESPIPE";
    case __WASI_ERRNO_XDEV: return "EXDEV";
    case __WASI_ERRNO_NOTCAPABLE: return "ENOTCAPABLE";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "errno%d", e);
        return buf;
    }
    }
}

static const char *ftname(int t) {
    switch (t) {
    case __WASI_FILETYPE_UNKNOWN: return "unknown";
    case __WASI_FILETYPE_BLOCK_DEVICE: return "block_device";
    case __WASI_FILETYPE_CHARACTER_DEVICE: return "character_device";
    case __WASI_FILETYPE_DIRECTORY: return "directory";
    case __WASI_FILETYPE_REGULAR_FILE: return "regular_file";
    case __WASI_FILETYPE_SOCKET_DGRAM: return "socket_dgram";
    case __WASI_FILETYPE_SOCKET_STREAM: return "socket_stream";
    case __WASI_FILETYPE_SYMBOLIC_LINK: return "symbolic_link";
    default: return "?";
    }
}

/* Print "label: OK" or "label: ENAME" for a raw WASI call's result. */
#define SHOW(label, expr) do { int e_ = (int)(expr); printf("%s: %s\n", (label), errname(e_)); } while (0)
/* Print a libc call's outcome: "label: OK" when it returned >= 0, else its errno. */
#define LIBC(label, expr) do { errno = 0; long r_ = (long)(expr); printf("%s: %s\n", (label), r_ >= 0 ? "OK" : errname(errno)); } while (0)
/* Abort the program (exit 99) when a required step fails. */
#define MUST(expr) do { int e_ = (int)(expr); if (e_ != 0) { printf("FATAL line %d: %s -> %s\n", __LINE__, #expr, errname(e_)); fflush(stdout); exit(99); } } while (0)
#define MUSTC(expr) do { errno = 0; if ((long)(expr) < 0) { printf("FATAL line %d: %s -> %s\n", __LINE__, #expr, errname(errno)); fflush(stdout); exit(99); } } while (0)
#define PROP(label, cond) printf("%s: %s\n", (label), (cond) ? "ok" : "FAIL")

/* The first preopened directory whose guest name is `name`, or -1. */
static int find_preopen(const char *name) {
    for (int fd = 3; fd < 64; fd++) {
        __wasi_prestat_t ps;
        if (__wasi_fd_prestat_get(fd, &ps) != 0) break;
        if (ps.tag != __WASI_PREOPENTYPE_DIR) continue;
        char buf[256];
        size_t n = ps.u.dir.pr_name_len;
        if (n >= sizeof buf) continue;
        if (__wasi_fd_prestat_dir_name(fd, (uint8_t *)buf, n) != 0) continue;
        buf[n] = 0;
        if (strcmp(buf, name) == 0) return fd;
    }
    return -1;
}

static int cmpstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

#endif
