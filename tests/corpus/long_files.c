//@ args: 300 40
/* A long-running program that keeps several files open at non-zero offsets
 * and lists a directory in many small fd_readdir chunks while it works. It is
 * the subject of the serialize-mid-run test: pausing it at any point, moving
 * its WASI state and resuming must not change its output.
 *
 *   long_files [ITERATIONS [WORK]]   (defaults 3000 and 30000: about 1.3G
 *                                     wasm instructions, 1-2 s in meshnode's
 *                                     wasmi; the test uses 300 40: 2.3M)
 *
 * Each iteration: some CPU work (WORK rounds of mixing), a 37-byte sequential
 * read from long/input.bin (wrapping at EOF), a record appended through a
 * descriptor opened with O_APPEND, a pwrite and pread on long/scratch.bin at
 * varying offsets, and every 4th iteration one fd_readdir chunk (96-byte
 * buffer, about 2 entries) of the directory long/dir, which holds 48 files.
 * Output never depends on directory order or on the time. */
#include "corpus.h"
#include <fcntl.h>
#include <unistd.h>

#define NFILES 48

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v;
    h *= 0x100000001b3ull;
    h ^= h >> 29;
    return h;
}

static uint64_t name_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = mix(h, (uint8_t)s[i]);
    return h;
}

int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 3000;
    long work = argc > 2 ? atol(argv[2]) : 30000;
    int sb = find_preopen("/sandbox");
    if (sb < 0) { printf("no /sandbox\n"); return 1; }

    /* Set-up: the input file and the directory to list. */
    MUST(__wasi_path_create_directory(sb, "long"));
    MUST(__wasi_path_create_directory(sb, "long/dir"));
    uint64_t expect_names = 0;
    for (int i = 0; i < NFILES; i++) {
        char p[96];
        int n = snprintf(p, sizeof p, "/sandbox/long/dir/f%03d-%.*s", i, i % 11, "abcdefghijk");
        int fd = open(p, O_WRONLY | O_CREAT, 0644);
        MUSTC(fd);
        close(fd);
        const char *base = strrchr(p, '/') + 1;
        expect_names += name_hash(base, (size_t)(p + n - base));
    }
    int in = open("/sandbox/long/input.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
    MUSTC(in);
    static uint8_t block[8192];
    uint64_t g = 12345;
    for (int b = 0; b < 4; b++) {
        for (size_t i = 0; i < sizeof block; i++) { g = g * 6364136223846793005ull + 1; block[i] = (uint8_t)(g >> 56); }
        MUSTC(write(in, block, sizeof block));
    }
    MUSTC(lseek(in, 0, SEEK_SET));

    int out = open("/sandbox/long/out.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
    MUSTC(out);
    int scratch = open("/sandbox/long/scratch.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
    MUSTC(scratch);
    MUSTC(ftruncate(scratch, 4096));
    __wasi_fd_t dir;
    MUST(__wasi_path_open(sb, 0, "long/dir", __WASI_OFLAGS_DIRECTORY, __WASI_RIGHTS_FD_READDIR, 0, 0, &dir));

    uint64_t h = 0x84222325cbf29ce4ull, listing_sum = 0;
    __wasi_dircookie_t cookie = 0;
    long listings = 0, good_listings = 0, entries_seen = 0, readdir_calls = 0, in_bytes = 0, wraps = 0;
    uint8_t dbuf[96];
    for (long it = 0; it < iters; it++) {
        for (long k = 0; k < work; k++) h = mix(h, (uint64_t)(it * work + k));

        uint8_t rb[37];
        ssize_t n = read(in, rb, sizeof rb);
        if (n < 0) { printf("read failed: %s\n", errname(errno)); return 1; }
        if (n < (ssize_t)sizeof rb) { MUSTC(lseek(in, 0, SEEK_SET)); wraps++; }
        for (ssize_t i = 0; i < n; i++) h = mix(h, rb[i]);
        in_bytes += n;

        char rec[64];
        int rl = snprintf(rec, sizeof rec, "%06ld %016llx\n", it, (unsigned long long)h);
        MUSTC(write(out, rec, (size_t)rl));

        off_t off = (off_t)((h >> 20) % 4000);
        uint8_t v[8];
        memcpy(v, &h, 8);
        MUSTC(pwrite(scratch, v, 8, off));
        uint8_t back[16];
        MUSTC(pread(scratch, back, 16, (off_t)((h >> 40) % 4080)));
        for (int i = 0; i < 16; i++) h = mix(h, back[i]);

        if (it % 4 == 0) {
            __wasi_size_t used;
            MUST(__wasi_fd_readdir(dir, dbuf, sizeof dbuf, cookie, &used));
            readdir_calls++;
            size_t p = 0;
            while (p + sizeof(__wasi_dirent_t) <= used) {
                __wasi_dirent_t d;
                memcpy(&d, dbuf + p, sizeof d);
                if (p + sizeof d + d.d_namlen > used) break;
                const char *name = (const char *)dbuf + p + sizeof d;
                if (!(d.d_namlen == 1 && name[0] == '.') && !(d.d_namlen == 2 && name[0] == '.' && name[1] == '.')) {
                    listing_sum += name_hash(name, d.d_namlen);
                    entries_seen++;
                }
                cookie = d.d_next;
                p += sizeof d + d.d_namlen;
            }
            if (used < sizeof dbuf) {
                /* Where a listing ends depends on the runtime (entry order,
                 * whether it lists . and ..), so it must not feed h. */
                listings++;
                if (listing_sum == expect_names) good_listings++;
                listing_sum = 0;
                cookie = 0;
            }
        }
        if (iters >= 4 && (it + 1) % (iters / 4) == 0) printf("progress %ld: %016llx\n", it + 1, (unsigned long long)h);
    }

    off_t in_pos = lseek(in, 0, SEEK_CUR);
    off_t out_pos = lseek(out, 0, SEEK_CUR);
    printf("iterations %ld work %ld\n", iters, work);
    printf("checksum %016llx\n", (unsigned long long)h);
    printf("input bytes %ld wraps %ld final input offset %lld\n", in_bytes, wraps, (long long)in_pos);
    printf("out.log offset %lld\n", (long long)out_pos);
    /* The number of listings depends on the runtime's entry packing: print
     * properties only. */
    printf("at least one complete listing: %s\n", listings >= 1 ? "ok" : "FAIL");
    printf("every complete listing had the %d names: %s\n", NFILES, good_listings == listings ? "ok" : "FAIL");
    printf("readdir calls: several per listing: %s\n", listings == 0 || readdir_calls >= 4 * listings ? "ok" : "FAIL");
    close(in);
    close(out);
    close(scratch);
    (void)__wasi_fd_close(dir);

    /* Re-read out.log through a fresh descriptor. */
    int chk = open("/sandbox/long/out.log", O_RDONLY);
    MUSTC(chk);
    uint64_t fh = 0;
    long total = 0;
    for (;;) {
        ssize_t n = read(chk, block, sizeof block);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++) fh = mix(fh, block[i]);
        total += n;
    }
    close(chk);
    printf("out.log %ld bytes hash %016llx\n", total, (unsigned long long)fh);
    return 0;
}
