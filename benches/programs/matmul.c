/* Benchmark: dense matrix multiply (doubles, 96x96), ITERATIONS times.
 *   matmul [ITERATIONS]   (default 20)   prints a checksum */
#include <stdio.h>
#include <stdlib.h>

#define N 96
static double a[N][N], b[N][N], c[N][N];

int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 20;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            a[i][j] = (double)((i * 31 + j * 17) % 97) / 97.0;
            b[i][j] = (double)((i * 13 + j * 7) % 89) / 89.0 - 0.5;
        }
    double sum = 0;
    for (int it = 0; it < iters; it++) {
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) {
                double s = 0;
                for (int k = 0; k < N; k++) s += a[i][k] * b[k][j];
                c[i][j] = s;
            }
        /* Feed the result back so that iterations depend on each other. */
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) a[i][j] = c[i][j] * 0.01 + a[i][j] * 0.99;
        sum += c[it % N][(it * 7) % N];
    }
    double tr = 0;
    for (int i = 0; i < N; i++) tr += c[i][i];
    printf("matmul iterations=%d trace=%.9e sum=%.9e\n", iters, tr, sum);
    return 0;
}
