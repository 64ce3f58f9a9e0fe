/* Prints the bit patterns of NaNs produced by wasm float arithmetic.
 *
 * Native x86_64 and aarch64 differ here (x86 SSE's default NaN has the sign
 * bit set, aarch64's does not; payload propagation rules differ too), so a
 * vessel could observe which CPU it runs on. With wasmi's `deterministic`
 * feature every NaN result of an arithmetic instruction is canonical, and this
 * program must print identical lines on both CPUs.
 *
 * Build: clang --target=wasm32-wasi --sysroot=/usr -O2 nan_bits.c -o nan_bits.wasm
 * Every operand is read through a volatile so clang cannot constant-fold.
 * It also builds natively (gcc nan_bits.c -lm; aarch64-linux-gnu-gcc ...), which
 * shows the raw CPU difference that the deterministic profile hides.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static uint64_t b64(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }
static uint32_t b32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static double d64(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }
static float f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static volatile double vz = 0.0, vone = 1.0, vneg1 = -1.0, vinf = INFINITY;
static volatile float fz = 0.0f, fone = 1.0f, fneg1 = -1.0f, finf = INFINITY;
/* Quiet NaNs with payloads and both signs, and signalling NaNs. */
static volatile uint64_t qnan_pay = 0x7ff8000000000123ull, nqnan_pay = 0xfff8000000000456ull,
                         snan = 0x7ff0000000000001ull, nsnan = 0xfff4000000000789ull;
static volatile uint32_t fqnan_pay = 0x7fc00123u, fnqnan_pay = 0xffc00456u,
                         fsnan = 0x7f800001u, fnsnan = 0xffa00789u;

#define P64(name, expr) printf("f64 %-22s %016llx\n", name, (unsigned long long)b64(expr))
#define P32(name, expr) printf("f32 %-22s %08x\n", name, (unsigned)b32(expr))

int main(void) {
    double a = d64(qnan_pay), na = d64(nqnan_pay), s = d64(snan), ns = d64(nsnan);
    float fa = f32(fqnan_pay), fna = f32(fnqnan_pay), fs = f32(fsnan), fns = f32(fnsnan);

    P64("0/0", vz / vz);
    P64("sqrt(-1)", __builtin_sqrt(vneg1));
    P64("inf-inf", vinf - vinf);
    P64("inf*0", vinf * vz);
    P64("-(0/0)+1", -(vz / vz) + vone);
    P64("qnan+1", a + vone);
    P64("-qnan+1", na + vone);
    P64("1+(-qnan)", vone + na);
    P64("qnan+(-qnan)", a + na);
    P64("-qnan+qnan", na + a);
    P64("snan*1", s * vone);
    P64("-snan*1", ns * vone);
    P64("qnan*snan", a * s);
    P64("snan/-qnan", s / na);
    P64("sqrt(-qnan)", __builtin_sqrt(na));
    P64("fmin(qnan,1)", __builtin_fmin(a, vone)); /* libm fmin: returns 1 */
#ifdef __wasm__
    P64("f64.min(-qnan,1)", __builtin_wasm_min_f64(na, vone));
    P64("f64.max(1,snan)", __builtin_wasm_max_f64(vone, s));
#endif
    P64("ceil(-qnan)", __builtin_ceil(na));
    P64("nearest(snan)", __builtin_rint(s));
    P64("promote(f32 -qnan)", (double)fna);
    P64("promote(f32 snan)", (double)fs);

    P32("0/0", fz / fz);
    P32("sqrt(-1)", __builtin_sqrtf(fneg1));
    P32("inf-inf", finf - finf);
    P32("inf*0", finf * fz);
    P32("qnan+1", fa + fone);
    P32("-qnan+1", fna + fone);
    P32("qnan+(-qnan)", fa + fna);
    P32("-qnan+qnan", fna + fa);
    P32("snan*1", fs * fone);
    P32("-snan*1", fns * fone);
#ifdef __wasm__
    P32("f32.min(-qnan,1)", __builtin_wasm_min_f32(fna, fone));
#endif
    P32("floor(snan)", __builtin_floorf(fs));
    P32("demote(f64 -qnan)", (float)na);
    P32("demote(f64 snan)", (float)s);

    /* Not NaN-related: ordinary results that must match everywhere anyway. */
    volatile double x = 0.1;
    double acc = 0;
    for (int i = 0; i < 1000; i++) acc = acc * 1.000001 + x * i / 3.0;
    P64("sum", acc);
    P64("sin(1e22)", sin(x * 1e23));
    P64("exp(0.5)", exp(x * 5));
    P64("fma", __builtin_fma(x, x, -0.01));
    return 0;
}
