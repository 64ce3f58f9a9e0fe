/* Reads /media/where.txt, prints it, sleeps 2 s, reads and prints it again.
 * A mount is node-local: moved in between, it prints each node's file. */
#include <stdio.h>
#include <time.h>

static void show(void) {
    char buf[64] = {0};
    FILE *f = fopen("/media/where.txt", "r");
    if (!f) {
        printf("no file\n");
        return;
    }
    fgets(buf, sizeof buf, f);
    fclose(f);
    printf("%s\n", buf);
    fflush(stdout);
}

int main(void) {
    show();
    struct timespec t = {2, 0};
    nanosleep(&t, NULL);
    show();
    return 0;
}
