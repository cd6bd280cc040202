/* authpilot's time-ring kernel: a CPython extension module, compiled once per machine and
   source version by app.state.windows.kernel (gcc, into AUTHPILOT_KERNEL_DIR). Why an
   extension and not ctypes or numba, with the measured call overheads: kernel.py's docstring.

   The byte layout is app.state.windows.reference's (the numpy reference this file must equal
   bit for bit): a value is an int64 array (slots, 1 + metrics) in native byte order; column 0
   holds the absolute bucket index of the slot (-1 = empty), the others the metric sums of that
   bucket; a ring's windows are consecutive slot ranges.

   Arithmetic is numpy's: floor division and floor modulo for bucket indices, wrapping int64
   sums (done in uint64: signed overflow is undefined in C), int64 -> double conversion rounded
   to nearest even, a rate x / n correctly rounded like Python's int / int (the IEEE division
   of the two doubles whenever both are exact, |v| <= 2^53; Python's own division otherwise),
   and Python's float('nan') for a rate of an empty window.

   Entry points (METH_FASTCALL: ~30 ns per call, bytes values read in place):
     geometry(spec: bytes) -> capsule       validated ring geometry (int64 spec, see below)
     update(geom, value, t_ms, incr) -> bytes  the value after one event (input untouched)
     read(geom, value, at_ms, out) -> None     window sums into out (int64, windows x metrics)
     plan(spec: bytes) -> capsule           validated row plan (int64 spec, see below)
     fill(plan, values, at_ms, out, k, shared, per_row) -> None   k feature rows in one call

   Geometry spec: [windows, metrics, slots, then per window (width_ms, buckets, first slot)].
   Plan spec: [columns, n shared floats, n per-row floats, n shared rings, n per-row rings,
   shared float columns..., per-row float columns..., then per ring (shared rings first):
   first column, n counts, n rates, its geometry spec, counts as (window, metric) pairs, rates
   as (window, metric) pairs]. A ring writes its counts then its rates from its first column;
   every column of a row is written by exactly one thing (checked when the plan is built). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WINDOWS 16
#define MAX_METRICS 64
#define MAX_SLOTS (1 << 20)
#define MAX_RINGS 64
#define MAX_COLUMNS 4096
#define EXACT (INT64_C(1) << 53) /* every integer of magnitude <= 2^53 is a double */

static const uint64_t PY_NAN_BITS = UINT64_C(0x7ff8000000000000); /* float('nan') */

typedef struct {
  int64_t windows, metrics, slots;
  int64_t width[MAX_WINDOWS], buckets[MAX_WINDOWS], start[MAX_WINDOWS];
} geom_t;

typedef struct {
  geom_t g;
  int64_t col, n_counts, n_rates;
  int64_t *counts; /* (window, metric) pairs, then the rates' pairs */
  /* the metrics each window's outputs read (a rate reads metric 0 too): only those are summed,
     2-3 of 8 for most entities */
  int64_t n_need[MAX_WINDOWS];
  uint8_t need[MAX_WINDOWS][MAX_METRICS];
} ring_t;

typedef struct {
  int64_t columns, n_shared_cols, n_row_cols, n_shared, n_row;
  int64_t *shared_cols, *row_cols;
  ring_t *rings; /* n_shared + n_row */
} plan_t;

static const char GEOM_NAME[] = "authpilot.ring.geometry";
static const char PLAN_NAME[] = "authpilot.ring.plan";

static inline int64_t ld(const char *p) {
  int64_t x;
  memcpy(&x, p, sizeof x);
  return x;
}
static inline void st(char *p, int64_t x) { memcpy(p, &x, sizeof x); }
static inline int64_t wadd(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static inline int64_t wsub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }
/* numpy's // and % for a divisor b >= 1 */
static inline int64_t floordiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}
static inline int64_t floormod(int64_t a, int64_t b) {
  int64_t r = a % b;
  return r < 0 ? r + b : r;
}

static int fail(const char *msg) {
  PyErr_SetString(PyExc_ValueError, msg);
  return -1;
}

/* --- spec parsing (once per geometry or plan) ---------------------------------------------- */

typedef struct {
  const int64_t *p;
  Py_ssize_t n, i;
} reader_t;

static int next(reader_t *r, int64_t *out) {
  if (r->i >= r->n) return fail("ring spec ends early");
  *out = r->p[r->i++];
  return 0;
}

static int parse_geom(reader_t *r, geom_t *g) {
  if (next(r, &g->windows) || next(r, &g->metrics) || next(r, &g->slots)) return -1;
  if (g->windows < 1 || g->windows > MAX_WINDOWS) return fail("ring spec: 1..16 windows");
  if (g->metrics < 0 || g->metrics > MAX_METRICS) return fail("ring spec: 0..64 metrics");
  int64_t total = 0;
  for (int64_t w = 0; w < g->windows; w++) {
    if (next(r, &g->width[w]) || next(r, &g->buckets[w]) || next(r, &g->start[w])) return -1;
    if (g->width[w] < 1) return fail("ring spec: a bucket width is < 1 ms");
    if (g->buckets[w] < 1 || g->buckets[w] > MAX_SLOTS) return fail("ring spec: bucket count");
    if (g->start[w] != total) return fail("ring spec: windows must be consecutive slot ranges");
    total += g->buckets[w];
    if (total > MAX_SLOTS) return fail("ring spec: too many slots");
  }
  if (g->slots != total) return fail("ring spec: slots != sum of bucket counts");
  return 0;
}

static int spec_reader(PyObject *spec, reader_t *r) {
  if (!PyBytes_Check(spec) || PyBytes_GET_SIZE(spec) % 8 != 0) {
    PyErr_SetString(PyExc_TypeError, "a ring spec is bytes of int64");
    return -1;
  }
  r->p = (const int64_t *)PyBytes_AS_STRING(spec); /* bytes data is 16-byte aligned */
  r->n = PyBytes_GET_SIZE(spec) / 8;
  r->i = 0;
  return 0;
}

static void free_geom(PyObject *cap) { free(PyCapsule_GetPointer(cap, GEOM_NAME)); }

static void free_plan(PyObject *cap) {
  plan_t *p = PyCapsule_GetPointer(cap, PLAN_NAME);
  if (p == NULL) return;
  if (p->rings != NULL)
    for (int64_t i = 0; i < p->n_shared + p->n_row; i++) free(p->rings[i].counts);
  free(p->rings);
  free(p->shared_cols);
  free(p->row_cols);
  free(p);
}

static PyObject *py_geometry(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 1) return PyErr_Format(PyExc_TypeError, "geometry(spec)");
  reader_t r;
  if (spec_reader(args[0], &r)) return NULL;
  geom_t *g = malloc(sizeof *g);
  if (g == NULL) return PyErr_NoMemory();
  if (parse_geom(&r, g) || (r.i != r.n && fail("ring spec: trailing values"))) {
    free(g);
    return NULL;
  }
  PyObject *cap = PyCapsule_New(g, GEOM_NAME, free_geom);
  if (cap == NULL) free(g);
  return cap;
}

static int mark(char *used, int64_t columns, int64_t col) {
  if (col < 0 || col >= columns) return fail("plan spec: a column is out of the row");
  if (used[col]) return fail("plan spec: a column is written twice");
  used[col] = 1;
  return 0;
}

static int parse_cols(reader_t *r, int64_t n, int64_t **out, char *used, int64_t columns) {
  *out = malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
  if (*out == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  for (int64_t i = 0; i < n; i++)
    if (next(r, &(*out)[i]) || mark(used, columns, (*out)[i])) return -1;
  return 0;
}

static void need_metric(ring_t *r, int64_t w, int64_t m) {
  for (int64_t i = 0; i < r->n_need[w]; i++)
    if (r->need[w][i] == m) return;
  r->need[w][r->n_need[w]++] = (uint8_t)m;
}

static int parse_plan(reader_t *r, plan_t *p, char **used_out) {
  if (next(r, &p->columns) || next(r, &p->n_shared_cols) || next(r, &p->n_row_cols) ||
      next(r, &p->n_shared) || next(r, &p->n_row))
    return -1;
  if (p->columns < 0 || p->columns > MAX_COLUMNS) return fail("plan spec: 0..4096 columns");
  if (p->n_shared_cols < 0 || p->n_row_cols < 0 || p->n_shared < 0 || p->n_row < 0 ||
      p->n_shared + p->n_row > MAX_RINGS || p->n_shared_cols + p->n_row_cols > p->columns)
    return fail("plan spec: counts out of range");
  char *used = calloc((size_t)(p->columns > 0 ? p->columns : 1), 1);
  *used_out = used;
  if (used == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  if (parse_cols(r, p->n_shared_cols, &p->shared_cols, used, p->columns) ||
      parse_cols(r, p->n_row_cols, &p->row_cols, used, p->columns))
    return -1;
  int64_t n = p->n_shared + p->n_row;
  p->rings = calloc((size_t)(n > 0 ? n : 1), sizeof(ring_t));
  if (p->rings == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  for (int64_t i = 0; i < n; i++) {
    ring_t *g = &p->rings[i];
    if (next(r, &g->col) || next(r, &g->n_counts) || next(r, &g->n_rates)) return -1;
    if (g->n_counts < 0 || g->n_rates < 0 || g->n_counts + g->n_rates > p->columns)
      return fail("plan spec: a ring's output count is out of range");
    if (parse_geom(r, &g->g)) return -1;
    int64_t pairs = g->n_counts + g->n_rates;
    g->counts = malloc((size_t)(pairs > 0 ? pairs : 1) * 2 * sizeof(int64_t));
    if (g->counts == NULL) {
      PyErr_NoMemory();
      return -1;
    }
    for (int64_t j = 0; j < pairs; j++) {
      int64_t w, m;
      if (next(r, &w) || next(r, &m)) return -1;
      if (w < 0 || w >= g->g.windows || m < 0 || m >= g->g.metrics)
        return fail("plan spec: a (window, metric) pair is out of the ring");
      g->counts[2 * j] = w;
      g->counts[2 * j + 1] = m;
      if (mark(used, p->columns, g->col + j)) return -1;
      need_metric(g, w, m);
      if (j >= g->n_counts) need_metric(g, w, 0);
    }
  }
  if (r->i != r->n) return fail("plan spec: trailing values");
  for (int64_t c = 0; c < p->columns; c++)
    if (!used[c]) return fail("plan spec: a column is written by nothing");
  return 0;
}

static PyObject *py_plan(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 1) return PyErr_Format(PyExc_TypeError, "plan(spec)");
  reader_t r;
  if (spec_reader(args[0], &r)) return NULL;
  plan_t *p = calloc(1, sizeof *p);
  if (p == NULL) return PyErr_NoMemory();
  char *used = NULL;
  PyObject *cap = PyCapsule_New(p, PLAN_NAME, free_plan);
  if (cap == NULL) {
    free(p);
    return NULL;
  }
  int bad = parse_plan(&r, p, &used);
  free(used);
  if (bad) {
    Py_DECREF(cap); /* frees what was parsed */
    return NULL;
  }
  return cap;
}

/* --- values --------------------------------------------------------------------------------- */

/* The bytes of a ring value: NULL data for None; anything else must hold exactly the
   geometry's slots (the reference would read garbage from a value of another size). */
typedef struct {
  const char *data;
  Py_buffer view;
  int has_view;
} value_t;

static int get_value(PyObject *v, const geom_t *g, value_t *out) {
  out->data = NULL;
  out->has_view = 0;
  if (v == Py_None) return 0;
  Py_ssize_t size;
  if (PyBytes_Check(v)) {
    out->data = PyBytes_AS_STRING(v);
    size = PyBytes_GET_SIZE(v);
  } else {
    if (PyObject_GetBuffer(v, &out->view, PyBUF_SIMPLE)) return -1;
    out->has_view = 1;
    out->data = out->view.buf;
    size = out->view.len;
  }
  if (size != g->slots * (1 + g->metrics) * 8) {
    if (out->has_view) PyBuffer_Release(&out->view);
    out->has_view = 0;
    PyErr_Format(PyExc_ValueError, "a ring value of %zd bytes, the geometry holds %lld", size,
                 (long long)(g->slots * (1 + g->metrics) * 8));
    return -1;
  }
  return 0;
}

static void release_value(value_t *v) {
  if (v->has_view) PyBuffer_Release(&v->view);
}

static const geom_t *get_geom(PyObject *cap) { return PyCapsule_GetPointer(cap, GEOM_NAME); }

static int get_i64(PyObject *o, int64_t *out) {
  long long x = PyLong_AsLongLong(o); /* ints and anything with __index__ (numpy ints) */
  if (x == -1 && PyErr_Occurred()) return -1;
  *out = (int64_t)x;
  return 0;
}

/* incr: a list or tuple of ints, or an int64 buffer (a numpy int64 array), one per metric */
static int get_incr(PyObject *o, const geom_t *g, int64_t *incr) {
  if (PyList_Check(o) || PyTuple_Check(o)) {
    if (PySequence_Fast_GET_SIZE(o) != g->metrics) return fail("incr needs one int per metric");
    PyObject **items = PySequence_Fast_ITEMS(o);
    for (int64_t m = 0; m < g->metrics; m++)
      if (get_i64(items[m], &incr[m])) return -1;
    return 0;
  }
  if (PyObject_CheckBuffer(o)) {
    Py_buffer view;
    if (PyObject_GetBuffer(o, &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS)) return -1;
    const char *f = view.format ? view.format : "B";
    if (*f == '@' || *f == '=' || *f == '<') f++;
    int ok = view.itemsize == 8 && (f[0] == 'q' || f[0] == 'l') && f[1] == '\0' &&
             view.len == g->metrics * 8;
    if (ok) memcpy(incr, view.buf, (size_t)g->metrics * 8);
    PyBuffer_Release(&view);
    if (!ok) {
      PyErr_SetString(PyExc_TypeError, "incr buffer must hold one int64 per metric");
      return -1;
    }
    return 0;
  }
  PyObject *seq = PySequence_Fast(o, "incr must be a sequence of ints");
  if (seq == NULL) return -1;
  int bad = get_incr(seq, g, incr);
  Py_DECREF(seq);
  return bad;
}

/* --- update --------------------------------------------------------------------------------- */

static PyObject *py_update(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 4) return PyErr_Format(PyExc_TypeError, "update(geom, value, t_ms, incr)");
  const geom_t *g = get_geom(args[0]);
  if (g == NULL) return NULL;
  int64_t t, incr[MAX_METRICS];
  if (get_i64(args[2], &t) || get_incr(args[3], g, incr)) return NULL;
  value_t v;
  if (get_value(args[1], g, &v)) return NULL;
  const int64_t cols = 1 + g->metrics, row = cols * 8;
  PyObject *out = PyBytes_FromStringAndSize(NULL, g->slots * row);
  if (out == NULL) {
    release_value(&v);
    return NULL;
  }
  char *a = PyBytes_AS_STRING(out);
  if (v.data != NULL) {
    memcpy(a, v.data, (size_t)(g->slots * row));
  } else {
    memset(a, 0, (size_t)(g->slots * row));
    for (int64_t s = 0; s < g->slots; s++) st(a + s * row, -1);
  }
  release_value(&v);
  for (int64_t w = 0; w < g->windows; w++) {
    int64_t b = floordiv(t, g->width[w]);
    char *slot = a + (g->start[w] + floormod(b, g->buckets[w])) * row;
    int64_t held = ld(slot);
    if (held == b) { /* the slot holds this bucket: add */
      for (int64_t m = 0; m < g->metrics; m++)
        st(slot + 8 * (1 + m), wadd(ld(slot + 8 * (1 + m)), incr[m]));
    } else if (held < b) { /* it held an older bucket: it becomes this one */
      st(slot, b);
      for (int64_t m = 0; m < g->metrics; m++) st(slot + 8 * (1 + m), incr[m]);
    } /* it holds a newer bucket: the event is older than the window, dropped */
  }
  return out;
}

/* --- read ----------------------------------------------------------------------------------- */

/* sums[w * metrics + m]: metric m over the live buckets of window w at time at (value != NULL) */
static void window_sums(const geom_t *g, const char *a, int64_t at, int64_t *sums) {
  const int64_t row = (1 + g->metrics) * 8;
  memset(sums, 0, (size_t)(g->windows * g->metrics) * sizeof(int64_t));
  for (int64_t w = 0; w < g->windows; w++) {
    int64_t b = floordiv(at, g->width[w]), oldest = wsub(b, g->buckets[w]);
    int64_t *out = sums + w * g->metrics;
    const char *slot = a + g->start[w] * row;
    for (int64_t s = 0; s < g->buckets[w]; s++, slot += row) {
      int64_t held = ld(slot);
      if (held > oldest && held <= b)
        for (int64_t m = 0; m < g->metrics; m++) out[m] = wadd(out[m], ld(slot + 8 * (1 + m)));
    }
  }
}

static PyObject *py_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 4) return PyErr_Format(PyExc_TypeError, "read(geom, value, at_ms, out)");
  const geom_t *g = get_geom(args[0]);
  if (g == NULL) return NULL;
  int64_t at;
  if (get_i64(args[2], &at)) return NULL;
  Py_buffer view;
  if (PyObject_GetBuffer(args[3], &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)) return NULL;
  if (view.len != g->windows * g->metrics * 8) {
    PyBuffer_Release(&view);
    return PyErr_Format(PyExc_ValueError, "read: out must hold windows x metrics int64");
  }
  value_t v;
  if (get_value(args[1], g, &v)) {
    PyBuffer_Release(&view);
    return NULL;
  }
  int64_t sums[MAX_WINDOWS * MAX_METRICS];
  if (v.data != NULL)
    window_sums(g, v.data, at, sums);
  else
    memset(sums, 0, sizeof sums);
  memcpy(view.buf, sums, (size_t)view.len);
  release_value(&v);
  PyBuffer_Release(&view);
  Py_RETURN_NONE;
}

/* --- fill ----------------------------------------------------------------------------------- */

static int rate(int64_t x, int64_t n, double *out) {
  if (n == 0) {
    memcpy(out, &PY_NAN_BITS, sizeof *out);
    return 0;
  }
  if (x >= -EXACT && x <= EXACT && n >= -EXACT && n <= EXACT) {
    *out = (double)x / (double)n; /* both exact: IEEE division is correctly rounded */
    return 0;
  }
  PyObject *a = PyLong_FromLongLong(x), *b = PyLong_FromLongLong(n), *q = NULL;
  if (a != NULL && b != NULL) q = PyNumber_TrueDivide(a, b); /* Python's exact rounding */
  Py_XDECREF(a);
  Py_XDECREF(b);
  if (q == NULL) return -1;
  *out = PyFloat_AsDouble(q);
  Py_DECREF(q);
  return 0;
}

/* window_sums restricted to the metrics a ring's outputs read (the others stay 0) */
static void needed_sums(const ring_t *r, const char *a, int64_t at, int64_t *sums) {
  const geom_t *g = &r->g;
  const int64_t row = (1 + g->metrics) * 8;
  memset(sums, 0, (size_t)(g->windows * g->metrics) * sizeof(int64_t));
  for (int64_t w = 0; w < g->windows; w++) {
    const int64_t nn = r->n_need[w];
    if (nn == 0) continue;
    const uint8_t *need = r->need[w];
    int64_t b = floordiv(at, g->width[w]), oldest = wsub(b, g->buckets[w]);
    int64_t *out = sums + w * g->metrics;
    const char *slot = a + g->start[w] * row;
    for (int64_t s = 0; s < g->buckets[w]; s++, slot += row) {
      int64_t held = ld(slot);
      if (held > oldest && held <= b)
        for (int64_t i = 0; i < nn; i++)
          out[need[i]] = wadd(out[need[i]], ld(slot + 8 * (1 + need[i])));
    }
  }
}

/* One ring's feature values into row[col ...]: counts, then rates of metric 0 */
static int ring_values(const ring_t *r, PyObject *value, int64_t at, double *row) {
  value_t v;
  if (get_value(value, &r->g, &v)) return -1;
  int64_t sums[MAX_WINDOWS * MAX_METRICS];
  if (v.data != NULL)
    needed_sums(r, v.data, at, sums);
  else
    memset(sums, 0, (size_t)(r->g.windows * r->g.metrics) * sizeof(int64_t));
  release_value(&v);
  const int64_t M = r->g.metrics;
  double *out = row + r->col;
  for (int64_t j = 0; j < r->n_counts; j++)
    out[j] = (double)sums[r->counts[2 * j] * M + r->counts[2 * j + 1]];
  const int64_t *pairs = r->counts + 2 * r->n_counts;
  for (int64_t j = 0; j < r->n_rates; j++) {
    int64_t w = pairs[2 * j], m = pairs[2 * j + 1];
    if (rate(sums[w * M + m], sums[w * M], &out[r->n_counts + j])) return -1;
  }
  return 0;
}

/* The items of a list or tuple of `want` items (an empty list's items pointer is NULL) */
static int items_of(PyObject *seq, Py_ssize_t want, const char *what, PyObject ***items) {
  if (!PyList_Check(seq) && !PyTuple_Check(seq)) {
    PyErr_Format(PyExc_TypeError, "fill: %s must be a list or tuple", what);
    return -1;
  }
  if (PySequence_Fast_GET_SIZE(seq) != want) {
    PyErr_Format(PyExc_ValueError, "fill: %s holds %zd items, the plan needs %zd", what,
                 PySequence_Fast_GET_SIZE(seq), want);
    return -1;
  }
  *items = PySequence_Fast_ITEMS(seq);
  return 0;
}

static int put_floats(PyObject **items, const int64_t *cols, int64_t n, double *row) {
  for (int64_t i = 0; i < n; i++) {
    double x = PyFloat_AsDouble(items[i]);
    if (x == -1.0 && PyErr_Occurred()) return -1;
    row[cols[i]] = x;
  }
  return 0;
}

static PyObject *py_fill(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 7)
    return PyErr_Format(PyExc_TypeError, "fill(plan, values, at_ms, out, k, shared, per_row)");
  const plan_t *p = PyCapsule_GetPointer(args[0], PLAN_NAME);
  if (p == NULL) return NULL;
  int64_t at, k;
  if (get_i64(args[2], &at) || get_i64(args[4], &k)) return NULL;
  if (k < 0) return PyErr_Format(PyExc_ValueError, "fill: k < 0");
  PyObject **values, **shared, **per_row;
  if (items_of(args[1], p->n_shared + k * p->n_row, "values", &values) ||
      items_of(args[5], p->n_shared_cols, "shared", &shared) ||
      items_of(args[6], k * p->n_row_cols, "per_row", &per_row))
    return NULL;
  Py_buffer view;
  if (PyObject_GetBuffer(args[3], &view, PyBUF_RECORDS)) return NULL; /* writable, strided */
  const char *f = view.format ? view.format : "B";
  if (*f == '@' || *f == '=' || *f == '<') f++;
  if (view.ndim != 2 || view.itemsize != 8 || strcmp(f, "d") != 0 ||
      view.shape[1] != p->columns || !PyBuffer_IsContiguous(&view, 'C')) {
    PyBuffer_Release(&view);
    return PyErr_Format(PyExc_ValueError, "fill: out must be C-contiguous float64 (rows, %lld)",
                        (long long)p->columns);
  }
  if (view.shape[0] < k) {
    PyBuffer_Release(&view);
    return PyErr_Format(PyExc_IndexError, "fill: %lld rows asked, out holds %zd",
                        (long long)k, view.shape[0]);
  }
  double *rows = view.buf;
  const int64_t nf = p->columns;
  int bad = 0;
  if (k > 0) { /* row 0 gets everything shared, the other rows copy it */
    bad = put_floats(shared, p->shared_cols, p->n_shared_cols, rows);
    for (int64_t i = 0; !bad && i < p->n_shared; i++)
      bad = ring_values(&p->rings[i], values[i], at, rows);
    for (int64_t r = 1; !bad && r < k; r++)
      memcpy(rows + r * nf, rows, (size_t)nf * sizeof(double));
  }
  for (int64_t r = 0; !bad && r < k; r++) {
    double *row = rows + r * nf;
    bad = put_floats(per_row + r * p->n_row_cols, p->row_cols, p->n_row_cols, row);
    for (int64_t i = 0; !bad && i < p->n_row; i++)
      bad = ring_values(&p->rings[p->n_shared + i], values[p->n_shared + r * p->n_row + i], at,
                        row);
  }
  PyBuffer_Release(&view);
  if (bad) return NULL;
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"geometry", (PyCFunction)(void (*)(void))py_geometry, METH_FASTCALL,
     "geometry(spec) -> a validated ring geometry"},
    {"update", (PyCFunction)(void (*)(void))py_update, METH_FASTCALL,
     "update(geom, value, t_ms, incr) -> the new value (bytes)"},
    {"read", (PyCFunction)(void (*)(void))py_read, METH_FASTCALL,
     "read(geom, value, at_ms, out): window sums into out"},
    {"plan", (PyCFunction)(void (*)(void))py_plan, METH_FASTCALL,
     "plan(spec) -> a validated row plan"},
    {"fill", (PyCFunction)(void (*)(void))py_fill, METH_FASTCALL,
     "fill(plan, values, at_ms, out, k, shared, per_row): k feature rows"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ring",
                                    "authpilot's time-ring kernel (app.state.windows.kernel)",
                                    -1, methods};

PyMODINIT_FUNC PyInit__ring(void) {
  PyObject *m = PyModule_Create(&module);
  if (m != NULL && PyModule_AddIntConstant(m, "MAX_METRICS", MAX_METRICS)) {
    Py_DECREF(m);
    return NULL;
  }
  return m;
}
