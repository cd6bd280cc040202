/* authpilot's batch shim, compiled into model.so beside TL2cgen's generated
   predict(union Entry*, int pred_margin, T*). app.models.training.compile prepends two lines:
     #define AUTHPILOT_SHIM_ABI <app.models.artifact.SHIM_ABI>
     #define AUTHPILOT_RESULT <predict()'s result type in header.h: double, float for XGBoost>

   Why a shim:
   - one ctypes call per request instead of one per candidate route (a ctypes call with pointer
     conversion costs ~1-2 us here, the trees for one row ~2-3 us for 200 trees x 31 leaves);
   - the missing-value encoding (NaN -> Entry.missing = -1, the generated code tests
     `data[j].missing != -1`) and the guard against the tl2cgen 1.0.0 union bug are done in C;
   - the calibration map is applied in C: numpy's np.interp allocates its result on every call
     and the Platt map is 6 ufunc calls (~4 us for 4 rows), more than a third of the trees' time.

   The union bug: `union Entry { int missing; double fvalue; int qvalue; }` lets a valid double
   whose low 32 bits are 0xffffffff read as missing. The shim nudges such a value one ulp toward
   zero (bits - 1, a relative change of 2^-52). That is exact unless a split threshold equals the
   value or its nudged neighbour, i.e. a threshold whose low word is 0xffffffff or 0xfffffffe;
   compile counts those (chance ~2^-31 per threshold) and records it in the manifest's `guard`.

   XGBoost models keep Treelite's float32 types (`union Entry { int; float; int; }`, float leaves
   and result): XGBoost itself compares float32(x) with float32 thresholds, so a float64 build
   would route values between a threshold and its float32 rounding differently. A float Entry
   cannot alias `missing` (0xffffffff as a float is a NaN, which the shim encodes as missing
   anyway), so the guard only runs for double entries.

   authpilot_score_batch scores k requests whose rows are concatenated (request i owns rows
   offsets[i] .. offsets[i+1]) in one call; per row the work is authpilot_score's, so results
   are identical, and the offsets are validated in C where it costs nothing. */

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "header.h"

#if !defined(AUTHPILOT_SHIM_ABI) || !defined(AUTHPILOT_RESULT)
#error "AUTHPILOT_SHIM_ABI and AUTHPILOT_RESULT are defined by app.models.training.compile"
#endif

/* Calibration map, the same as app.models.calibration.Calibration.apply: kind 0 none,
   1 isotonic knots with np.interp semantics, 2 Platt on the clipped logit. */
struct authpilot_cal {
  int32_t kind;
  int32_t nk;
  double a;
  double b;
  const double* kx;
  const double* ky;
};

int32_t authpilot_abi(void) { return AUTHPILOT_SHIM_ABI; }
int32_t authpilot_entry_size(void) { return (int32_t)sizeof(union Entry); }

typedef AUTHPILOT_RESULT authpilot_result_t; /* predict()'s result type */

static inline double authpilot_guard(double x) {
  if (sizeof(union Entry) != 8) return x; /* a float Entry cannot alias missing == -1 */
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0xffffffffULL) == 0xffffffffULL) { /* would alias Entry.missing == -1 */
    u -= 1;                                    /* one ulp toward zero */
    memcpy(&x, &u, sizeof x);
  }
  return x;
}

static double authpilot_calibrate(double p, const struct authpilot_cal* c) {
  if (c == NULL) return p;
  if (c->kind == 2) {
    double q = p < 1e-6 ? 1e-6 : (p > 1 - 1e-6 ? 1 - 1e-6 : p);
    double z = c->a * log(q / (1 - q)) + c->b;
    return 1.0 / (1.0 + exp(-z));
  }
  if (c->kind == 1 && c->nk > 0) {
    const double* kx = c->kx;
    const double* ky = c->ky;
    int nk = c->nk;
    /* np.interp: clamp outside the knots; else lo = the last knot <= p, exact hits (the last
       of equal knots) return its value, otherwise interpolate towards lo + 1. */
    if (p < kx[0]) return ky[0];
    if (p >= kx[nk - 1]) return ky[nk - 1];
    int lo = 0, hi = nk - 1; /* kx[lo] <= p < kx[hi] */
    while (hi - lo > 1) {
      int mid = lo + (hi - lo) / 2;
      if (kx[mid] <= p) lo = mid; else hi = mid;
    }
    if (kx[lo] == p) return ky[lo];
    double slope = (ky[lo + 1] - ky[lo]) / (kx[lo + 1] - kx[lo]); /* np.interp's order */
    return slope * (p - kx[lo]) + ky[lo];
  }
  return p;
}

/* Score n rows of X (row-major, nf float64 columns, NaN = missing) into out: the probability
   (pred_margin = 0 applies the model's sigmoid), then the calibration map when cal != NULL.
   Returns 0, or -1 when nf is not the model's feature count. Reentrant: the Entry row lives
   on this call's stack (predict() may quantize it in place). */
int32_t authpilot_score(const double* X, int32_t n, int32_t nf, double* out,
                        const struct authpilot_cal* cal) {
  if (nf != get_num_feature() || n < 0) return -1;
  union Entry row[nf > 0 ? nf : 1];
  for (int32_t r = 0; r < n; ++r) {
    const double* x = X + (size_t)r * (size_t)nf;
    for (int32_t j = 0; j < nf; ++j) {
      if (isnan(x[j])) row[j].missing = -1;
      else row[j].fvalue = authpilot_guard(x[j]); /* (float) rounds as XGBoost does */
    }
    authpilot_result_t res[1] = {0}; /* predict() accumulates into result */
    predict(row, 0, res);
    out[r] = authpilot_calibrate((double)res[0], cal);
  }
  return 0;
}

/* k requests in one call: request i's rows are X[offsets[i] .. offsets[i+1]) (rows
   concatenated), its probabilities out[offsets[i] .. offsets[i+1]). Returns 0, or -1 when
   offsets[0] != 0, the offsets decrease, or nf is wrong; nothing is written then. */
int32_t authpilot_score_batch(const double* X, const int32_t* offsets, int32_t k, int32_t nf,
                              double* out, const struct authpilot_cal* cal) {
  if (k < 0 || offsets[0] != 0) return -1;
  for (int32_t i = 0; i < k; ++i) {
    if (offsets[i + 1] < offsets[i]) return -1;
  }
  return authpilot_score(X, offsets[k], nf, out, cal);
}
