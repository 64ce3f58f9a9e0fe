// Keeps files open at non-zero offsets and a directory listing in progress
// while it computes, so that a test can serialize its WASI state between fuel
// slices, drop every host handle, rebuild them against another host
// directory, and check that the run ends exactly as an uninterrupted one.
//
// Expects /data/in.txt and /data/list/ (many entries) to exist.
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t mix(uint64_t x, int rounds) {
    for (int i = 0; i < rounds; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    }
    return x;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ull; }
    return h;
}

int main(int argc, char **argv) {
    int work = argc > 1 ? atoi(argv[1]) : 20000;
    FILE *in = fopen("/data/in.txt", "r");
    FILE *out = fopen("/data/out.txt", "w");
    FILE *log = fopen("/data/log.txt", "a");
    DIR *dir = opendir("/data/list");
    if (!in || !out || !log || !dir) { perror("open"); return 2; }
    setvbuf(out, NULL, _IONBF, 0);   // every write reaches the host at once
    setvbuf(log, NULL, _IONBF, 0);

    uint64_t h = 1469598103934665603ull, x = 42;
    char line[256];
    int entries = 0, lines = 0;
    struct dirent *de;
    for (int step = 0;; step++) {
        int progressed = 0;
        if (fgets(line, sizeof line, in)) {
            h = fnv(h, line, strlen(line));
            lines++;
            progressed = 1;
        }
        if ((de = readdir(dir)) != NULL) {
            h = fnv(h, de->d_name, strlen(de->d_name));
            entries++;
            progressed = 1;
        }
        x = mix(x ^ h, work);
        fprintf(out, "step %d hash %016llx mix %016llx\n", step, (unsigned long long)h, (unsigned long long)x);
        if (step % 16 == 0) {
            fprintf(log, "step %d at offset %ld\n", step, ftell(in));
        }
        if (!progressed) break;
    }
    closedir(dir);
    // Read back what we wrote, through a fresh descriptor.
    fclose(out);
    FILE *back = fopen("/data/out.txt", "r");
    uint64_t hb = 1469598103934665603ull;
    size_t n;
    char buf[512];
    while ((n = fread(buf, 1, sizeof buf, back)) > 0) hb = fnv(hb, buf, n);
    fclose(back);
    fclose(in);
    fclose(log);
    printf("lines %d entries %d hash %016llx mix %016llx out %016llx\n", lines, entries,
           (unsigned long long)h, (unsigned long long)x, (unsigned long long)hb);
    return 0;
}
