//@ args: one two=2 --flag ünïcødé
//@ env: ALPHA=1 BETA=two=2 EMPTY= GAMMA=γ
/* args_get / args_sizes_get / environ_get / environ_sizes_get, both through
 * libc (main's argv, environ) and through the raw calls. */
#include "corpus.h"

extern char **environ;

int main(int argc, char **argv) {
    printf("argc=%d\n", argc);
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    size_t bl = strlen(base);
    /* argv[0] is the module's path; print only a property of it. */
    PROP("argv[0] names a .wasm file", bl > 5 && strcmp(base + bl - 5, ".wasm") == 0);
    for (int i = 1; i < argc; i++) printf("argv[%d]=<%s>\n", i, argv[i]);

    __wasi_size_t n = 0, sz = 0;
    MUST(__wasi_args_sizes_get(&n, &sz));
    size_t expect = 0;
    for (int i = 0; i < argc; i++) expect += strlen(argv[i]) + 1;
    PROP("args_sizes_get count", n == (__wasi_size_t)argc);
    PROP("args_sizes_get bytes", sz == expect);
    char **av = calloc(n + 1, sizeof *av);
    char *buf = malloc(sz);
    MUST(__wasi_args_get((uint8_t **)av, (uint8_t *)buf));
    int same = 1;
    for (int i = 0; i < argc; i++) same &= strcmp(av[i], argv[i]) == 0;
    PROP("args_get matches argv", same);
    PROP("args_get strings packed in buffer", av[0] == buf);

    MUST(__wasi_environ_sizes_get(&n, &sz));
    char **ev = calloc(n + 1, sizeof *ev);
    char *ebuf = malloc(sz ? sz : 1);
    MUST(__wasi_environ_get((uint8_t **)ev, (uint8_t *)ebuf));
    printf("environ count=%u\n", (unsigned)n);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += strlen(ev[i]) + 1;
    PROP("environ_sizes_get bytes", total == sz);
    qsort(ev, n, sizeof *ev, cmpstr);
    for (size_t i = 0; i < n; i++) printf("env <%s>\n", ev[i]);

    int cnt = 0;
    for (char **e = environ; *e; e++) cnt++;
    PROP("libc environ count", cnt == (int)n);
    const char *beta = getenv("BETA");
    printf("getenv(BETA)=<%s>\n", beta ? beta : "(null)");
    printf("getenv(EMPTY)=<%s>\n", getenv("EMPTY") ? getenv("EMPTY") : "(null)");
    printf("getenv(MISSING)=<%s>\n", getenv("MISSING") ? "set" : "(null)");
    return 0;
}
