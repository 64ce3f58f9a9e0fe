// The example vessel that README's first command runs: it greets, shows its
// arguments and environment, does some work, and writes a file if it was
// given a directory.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern char **environ;

static unsigned long collatz_steps(unsigned long n) {
    unsigned long steps = 0;
    while (n != 1) {
        n = (n % 2) ? 3 * n + 1 : n / 2;
        steps++;
    }
    return steps;
}

int main(int argc, char **argv) {
    printf("hello from a meshnode vessel\n");
    for (int i = 1; i < argc; i++) printf("arg %d: %s\n", i, argv[i]);
    for (char **e = environ; *e; e++) printf("env: %s\n", *e);

    unsigned long best = 1, best_steps = 0;
    for (unsigned long n = 1; n < 300000; n++) {
        unsigned long s = collatz_steps(n);
        if (s > best_steps) { best = n; best_steps = s; }
    }
    printf("longest Collatz chain below 300000 starts at %lu (%lu steps)\n", best, best_steps);

    FILE *f = fopen("/data/hello.txt", "w");
    if (f) {
        fprintf(f, "written by a vessel\n");
        fclose(f);
        printf("wrote /data/hello.txt\n");
    }
    return 0;
}
