/* A vessel that fails on purpose, for `deploy --restart` (issue 16): each
 * run appends a line to /data/runs in its volume, prints "run N" (N: the
 * lines there now), and exits with code 1, until the file holds argv[1]
 * runs (default 3); that run exits 0. Its volume is kept across restarts,
 * so N counts the runs; a restart that started from a checkpoint, or with
 * its volume reset, would print the same N again. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long want = argc > 1 ? atol(argv[1]) : 3;
    FILE *f = fopen("/data/runs", "a");
    if (!f) {
        printf("cannot open /data/runs\n");
        return 2;
    }
    fputs("run\n", f);
    fclose(f);
    f = fopen("/data/runs", "r");
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        if (c == '\n') n++;
    fclose(f);
    printf("run %ld\n", n);
    fflush(stdout);
    return n >= want ? 0 : 1;
}
