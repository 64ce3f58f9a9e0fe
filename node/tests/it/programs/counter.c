/* Counts to N (argv[1], default 300), one step every STEP ms (argv[2],
 * default 20), and keeps the count in a file of its volume (/data/count)
 * as well as in memory. Every step reads the file back and checks that it
 * holds the count the memory remembers writing: a crash that rolled the
 * memory back without the volume (or the volume without the memory) shows
 * as a MISMATCH and exit code 3. Its log is "count 1" … "count N", then
 * "done N".
 *
 * With a third argument, a file outside the vessel's state (a node-local
 * mount, which no rollback touches), each count is also appended there:
 * a count written twice is work a crash made it redo. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long read_count(void) {
    FILE *f = fopen("/data/count", "r");
    if (!f) return 0;
    long n = -1;
    if (fscanf(f, "%ld", &n) != 1) n = -1;
    fclose(f);
    return n;
}

int main(int argc, char **argv) {
    long target = argc > 1 ? atol(argv[1]) : 300;
    long step_ms = argc > 2 ? atol(argv[2]) : 20;
    const char *seen = argc > 3 ? argv[3] : NULL;
    long n = read_count();
    if (n < 0) {
        printf("MISMATCH: unreadable count at start\n");
        return 3;
    }
    struct timespec step = {step_ms / 1000, (step_ms % 1000) * 1000 * 1000};
    while (n < target) {
        long on_disk = read_count();
        if (on_disk != n) {
            printf("MISMATCH: memory says %ld, the volume %ld\n", n, on_disk);
            fflush(stdout);
            return 3;
        }
        n++;
        FILE *f = fopen("/data/count", "w");
        if (!f) {
            printf("MISMATCH: cannot write the count\n");
            return 3;
        }
        fprintf(f, "%ld\n", n);
        fclose(f);
        printf("count %ld\n", n);
        fflush(stdout);
        if (seen) {
            FILE *s = fopen(seen, "a");
            if (s) {
                fprintf(s, "%ld\n", n);
                fclose(s);
            }
        }
        nanosleep(&step, NULL);
    }
    printf("done %ld\n", n);
    return 0;
}
