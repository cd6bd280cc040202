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
     updates(((geom, key), ...)) -> capsule    the rings one record updates in one store
     apply(updates, get, store, rec, route, t_ms, incr)   per ring, in order:
                                            store[key] = update(geom, get(key), t_ms, incr)
     plan(spec: bytes, keys) -> capsule     validated row plan (int64 spec, see below)
     fill(plan, values, at_ms, out, k, shared, per_row) -> None   k feature rows in one call
     fill_keyed(plan, getters, rec, routes, at_ms, out, shared, per_row)   fill() with each
                                            ring's value got here: getters[ring](its key)

   A key is (prefix: bytes, fields: tuple of str | None): the bytes of
   prefix + "|".join(str(rec[f]) ...) encoded UTF-8, the route (a str) where a field is None;
   Entity.key's bytes (app.features.online.entity_key), errors included (KeyError for a
   missing field, UnicodeEncodeError for a str that cannot encode). Making the keys here saves
   the ~0.3-0.7 us a Python closure took per key, ~30 keys per event.

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

/* A table key made from a record: prefix + "|".join(str(rec[f]) for f in fields), UTF-8, a NULL
   field standing for the route (app.state.windows.time.Key) */
typedef struct {
  PyObject *prefix;  /* bytes */
  Py_ssize_t n;
  PyObject **fields; /* str, or NULL for the route */
} tablekey_t;

typedef struct {
  geom_t g;
  tablekey_t key; /* prefix NULL: the plan was given no key for this ring */
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
static const char UPDATES_NAME[] = "authpilot.ring.updates";

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

static void free_key(tablekey_t *k) {
  Py_CLEAR(k->prefix);
  if (k->fields != NULL)
    for (Py_ssize_t i = 0; i < k->n; i++) Py_XDECREF(k->fields[i]);
  free(k->fields);
  k->fields = NULL;
}

/* A key from Python: (prefix: bytes, fields: tuple of str or None) */
static int parse_key(PyObject *o, tablekey_t *k) {
  if (!PyTuple_Check(o) || PyTuple_GET_SIZE(o) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(o, 0)) ||
      !PyTuple_Check(PyTuple_GET_ITEM(o, 1))) {
    PyErr_SetString(PyExc_TypeError, "a key is (prefix: bytes, fields: tuple of str | None)");
    return -1;
  }
  PyObject *fields = PyTuple_GET_ITEM(o, 1);
  k->n = PyTuple_GET_SIZE(fields);
  k->fields = calloc((size_t)(k->n > 0 ? k->n : 1), sizeof(PyObject *));
  if (k->fields == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  k->prefix = Py_NewRef(PyTuple_GET_ITEM(o, 0));
  for (Py_ssize_t i = 0; i < k->n; i++) {
    PyObject *f = PyTuple_GET_ITEM(fields, i);
    if (f == Py_None) continue;
    if (!PyUnicode_Check(f)) {
      PyErr_SetString(PyExc_TypeError, "a key's fields are str or None (the route)");
      return -1;
    }
    k->fields[i] = Py_NewRef(f);
  }
  return 0;
}

typedef struct {
  char *buf;
  size_t len, cap;
  char stack[256];
} strbuf_t;

static int append(strbuf_t *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = (b->len + n) * 2;
    char *nb = malloc(cap);
    if (nb == NULL) {
      PyErr_NoMemory();
      return -1;
    }
    memcpy(nb, b->buf, b->len);
    if (b->buf != b->stack) free(b->buf);
    b->buf = nb;
    b->cap = cap;
  }
  memcpy(b->buf + b->len, s, n);
  b->len += n;
  return 0;
}

static int append_str(strbuf_t *b, PyObject *s) {
  Py_ssize_t n;
  const char *u = PyUnicode_AsUTF8AndSize(s, &n); /* str.encode()'s bytes, or its error */
  return u == NULL ? -1 : append(b, u, (size_t)n);
}

/* Entity.key(rec, route).encode(): route (a str) fills the NULL fields; NULL route there is an
   error, like Entity.key's */
static PyObject *build_key(const tablekey_t *k, PyObject *rec, PyObject *route) {
  strbuf_t b = {.len = 0, .cap = sizeof b.stack};
  b.buf = b.stack;
  PyObject *key = NULL;
  if (append(&b, PyBytes_AS_STRING(k->prefix), (size_t)PyBytes_GET_SIZE(k->prefix))) goto done;
  for (Py_ssize_t i = 0; i < k->n; i++) {
    if (i > 0 && append(&b, "|", 1)) goto done;
    if (k->fields[i] == NULL) {
      if (route == NULL) {
        PyErr_SetString(PyExc_ValueError, "this key holds the route: pass the route");
        goto done;
      }
      if (!PyUnicode_Check(route)) {
        PyErr_SetString(PyExc_TypeError, "a route id is a str");
        goto done;
      }
      if (append_str(&b, route)) goto done;
      continue;
    }
    PyObject *item = PyObject_GetItem(rec, k->fields[i]);
    if (item == NULL) goto done;
    PyObject *s = PyObject_Str(item);
    Py_DECREF(item);
    if (s == NULL) goto done;
    int bad = append_str(&b, s);
    Py_DECREF(s);
    if (bad) goto done;
  }
  key = PyBytes_FromStringAndSize(b.buf, (Py_ssize_t)b.len);
done:
  if (b.buf != b.stack) free(b.buf);
  return key;
}

static void free_plan(PyObject *cap) {
  plan_t *p = PyCapsule_GetPointer(cap, PLAN_NAME);
  if (p == NULL) return;
  if (p->rings != NULL)
    for (int64_t i = 0; i < p->n_shared + p->n_row; i++) {
      free(p->rings[i].counts);
      free_key(&p->rings[i].key);
    }
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
  if (nargs != 2) return PyErr_Format(PyExc_TypeError, "plan(spec, keys)");
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
  /* keys: one per ring (shared first), each None or a key */
  PyObject *keys = args[1];
  if (!bad && (!PyTuple_Check(keys) || PyTuple_GET_SIZE(keys) != p->n_shared + p->n_row)) {
    PyErr_SetString(PyExc_ValueError, "plan: keys must be a tuple, one per ring (or None)");
    bad = 1;
  }
  for (int64_t i = 0; !bad && i < p->n_shared + p->n_row; i++) {
    PyObject *key = PyTuple_GET_ITEM(keys, i);
    if (key != Py_None) bad = parse_key(key, &p->rings[i].key);
  }
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

static PyObject *ring_update(const geom_t *g, PyObject *value, int64_t t, const int64_t *incr) {
  value_t v;
  if (get_value(value, g, &v)) return NULL;
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

static PyObject *py_update(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 4) return PyErr_Format(PyExc_TypeError, "update(geom, value, t_ms, incr)");
  const geom_t *g = get_geom(args[0]);
  if (g == NULL) return NULL;
  int64_t t, incr[MAX_METRICS];
  if (get_i64(args[2], &t) || get_incr(args[3], g, incr)) return NULL;
  return ring_update(g, args[1], t, incr);
}

/* --- keyed updates: key, get, update, set for several rings of one store in one call ------- */

typedef struct {
  Py_ssize_t n;
  geom_t *geoms;
  tablekey_t *keys;
} updates_t;

static void free_updates(PyObject *cap) {
  updates_t *u = PyCapsule_GetPointer(cap, UPDATES_NAME);
  if (u == NULL) return;
  if (u->keys != NULL)
    for (Py_ssize_t i = 0; i < u->n; i++) free_key(&u->keys[i]);
  free(u->keys);
  free(u->geoms);
  free(u);
}

/* updates(((geom, key), ...)) -> capsule; every ring has the same metric count (one incr) */
static PyObject *py_updates(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 1 || !PyTuple_Check(args[0]))
    return PyErr_Format(PyExc_TypeError, "updates(((geom, key), ...))");
  PyObject *entries = args[0];
  updates_t *u = calloc(1, sizeof *u);
  if (u == NULL) return PyErr_NoMemory();
  PyObject *cap = PyCapsule_New(u, UPDATES_NAME, free_updates);
  if (cap == NULL) {
    free(u);
    return NULL;
  }
  Py_ssize_t n = PyTuple_GET_SIZE(entries);
  u->geoms = calloc((size_t)(n > 0 ? n : 1), sizeof(geom_t));
  u->keys = calloc((size_t)(n > 0 ? n : 1), sizeof(tablekey_t));
  if (u->geoms == NULL || u->keys == NULL) {
    Py_DECREF(cap);
    return PyErr_NoMemory();
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *e = PyTuple_GET_ITEM(entries, i);
    if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 2) {
      Py_DECREF(cap);
      return PyErr_Format(PyExc_TypeError, "updates: each entry is (geom, key)");
    }
    const geom_t *g = get_geom(PyTuple_GET_ITEM(e, 0));
    if (g == NULL || parse_key(PyTuple_GET_ITEM(e, 1), &u->keys[i])) {
      u->n = i + 1; /* what to free */
      Py_DECREF(cap);
      return NULL;
    }
    u->geoms[i] = *g;
    u->n = i + 1;
    if (g->metrics != u->geoms[0].metrics) {
      Py_DECREF(cap);
      return PyErr_Format(PyExc_ValueError, "updates: rings of different metric counts");
    }
  }
  return cap;
}

/* apply(updates, get, store, rec, route, t_ms, incr): for each ring in order,
   store[key] = update(get(key)) with key made from rec and route */
static PyObject *py_apply(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 7)
    return PyErr_Format(PyExc_TypeError, "apply(updates, get, store, rec, route, t_ms, incr)");
  const updates_t *u = PyCapsule_GetPointer(args[0], UPDATES_NAME);
  if (u == NULL) return NULL;
  if (u->n == 0) Py_RETURN_NONE;
  int64_t t, incr[MAX_METRICS];
  if (get_i64(args[5], &t) || get_incr(args[6], &u->geoms[0], incr)) return NULL;
  PyObject *get = args[1], *store = args[2], *rec = args[3];
  PyObject *route = args[4] == Py_None ? NULL : args[4];
  for (Py_ssize_t i = 0; i < u->n; i++) {
    PyObject *key = build_key(&u->keys[i], rec, route);
    if (key == NULL) return NULL;
    PyObject *old = PyObject_CallOneArg(get, key);
    PyObject *value = old == NULL ? NULL : ring_update(&u->geoms[i], old, t, incr);
    Py_XDECREF(old);
    int bad = value == NULL || PyObject_SetItem(store, key, value) < 0;
    Py_XDECREF(value);
    Py_DECREF(key);
    if (bad) return NULL;
  }
  Py_RETURN_NONE;
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

/* A tuple of the items of a list or tuple, checked to hold `want` of them (-1: any): the
   caller owns it, so Python code run meanwhile (a getter, a __float__) cannot change what is
   being read */
static PyObject *tuple_of(PyObject *seq, Py_ssize_t want, const char *what) {
  if (!PyList_Check(seq) && !PyTuple_Check(seq))
    return PyErr_Format(PyExc_TypeError, "fill: %s must be a list or tuple", what);
  PyObject *t = PySequence_Tuple(seq); /* a tuple comes back as itself */
  if (t != NULL && want >= 0 && PyTuple_GET_SIZE(t) != want) {
    PyErr_Format(PyExc_ValueError, "fill: %s holds %zd items, the plan needs %zd", what,
                 PyTuple_GET_SIZE(t), want);
    Py_CLEAR(t);
  }
  return t;
}

static PyObject **items(PyObject *tuple) { return ((PyTupleObject *)tuple)->ob_item; }

static int put_floats(PyObject **items, const int64_t *cols, int64_t n, double *row) {
  for (int64_t i = 0; i < n; i++) {
    double x = PyFloat_AsDouble(items[i]);
    if (x == -1.0 && PyErr_Occurred()) return -1;
    row[cols[i]] = x;
  }
  return 0;
}

/* Where fill's ring values come from: a list given by the caller, or keys made from a record
   and looked up through one getter per ring */
typedef struct {
  const plan_t *p;
  int keyed;
  PyObject **values;                  /* not keyed: n_shared + k * n_row values, row-major */
  PyObject **getters, *rec, **routes; /* keyed: one getter per ring, one route per row */
} source_t;

/* The value of ring `ring` for row `row` (new reference) */
static PyObject *value_of(const source_t *src, int64_t ring, int64_t row) {
  const plan_t *p = src->p;
  if (!src->keyed) {
    int64_t i = ring < p->n_shared ? ring : p->n_shared + row * p->n_row + ring - p->n_shared;
    return Py_NewRef(src->values[i]);
  }
  PyObject *route = ring < p->n_shared ? NULL : src->routes[row];
  PyObject *key = build_key(&p->rings[ring].key, src->rec, route);
  if (key == NULL) return NULL;
  PyObject *v = PyObject_CallOneArg(src->getters[ring], key);
  Py_DECREF(key);
  return v;
}

static int ring_values_of(const source_t *src, int64_t ring, int64_t row, int64_t at, double *out) {
  PyObject *v = value_of(src, ring, row);
  if (v == NULL) return -1;
  int bad = ring_values(&src->p->rings[ring], v, at, out);
  Py_DECREF(v);
  return bad;
}

static PyObject *fill_rows(const source_t *src, PyObject *out, int64_t k, int64_t at,
                           PyObject *shared_seq, PyObject *per_row_seq) {
  const plan_t *p = src->p;
  PyObject *shared_t = tuple_of(shared_seq, p->n_shared_cols, "shared");
  PyObject *per_row_t = shared_t ? tuple_of(per_row_seq, k * p->n_row_cols, "per_row") : NULL;
  Py_buffer view;
  if (per_row_t == NULL || PyObject_GetBuffer(out, &view, PyBUF_RECORDS)) { /* writable */
    Py_XDECREF(shared_t);
    Py_XDECREF(per_row_t);
    return NULL;
  }
  PyObject **shared = items(shared_t), **per_row = items(per_row_t);
  const char *f = view.format ? view.format : "B";
  if (*f == '@' || *f == '=' || *f == '<') f++;
  int bad = 0;
  if (view.ndim != 2 || view.itemsize != 8 || strcmp(f, "d") != 0 ||
      view.shape[1] != p->columns || !PyBuffer_IsContiguous(&view, 'C')) {
    PyErr_Format(PyExc_ValueError, "fill: out must be C-contiguous float64 (rows, %lld)",
                 (long long)p->columns);
    bad = 1;
  } else if (view.shape[0] < k) {
    PyErr_Format(PyExc_IndexError, "fill: %lld rows asked, out holds %zd", (long long)k,
                 view.shape[0]);
    bad = 1;
  }
  double *rows = view.buf;
  const int64_t nf = p->columns;
  if (!bad && k > 0) { /* row 0 gets everything shared, the other rows copy it */
    bad = put_floats(shared, p->shared_cols, p->n_shared_cols, rows);
    for (int64_t i = 0; !bad && i < p->n_shared; i++) bad = ring_values_of(src, i, 0, at, rows);
    for (int64_t r = 1; !bad && r < k; r++)
      memcpy(rows + r * nf, rows, (size_t)nf * sizeof(double));
  }
  for (int64_t r = 0; !bad && r < k; r++) {
    double *row = rows + r * nf;
    bad = put_floats(per_row + r * p->n_row_cols, p->row_cols, p->n_row_cols, row);
    for (int64_t i = 0; !bad && i < p->n_row; i++)
      bad = ring_values_of(src, p->n_shared + i, r, at, row);
  }
  PyBuffer_Release(&view);
  Py_DECREF(shared_t);
  Py_DECREF(per_row_t);
  if (bad) return NULL;
  Py_RETURN_NONE;
}

static PyObject *py_fill(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 7)
    return PyErr_Format(PyExc_TypeError, "fill(plan, values, at_ms, out, k, shared, per_row)");
  source_t src = {.p = PyCapsule_GetPointer(args[0], PLAN_NAME)};
  if (src.p == NULL) return NULL;
  int64_t at, k;
  if (get_i64(args[2], &at) || get_i64(args[4], &k)) return NULL;
  if (k < 0) return PyErr_Format(PyExc_ValueError, "fill: k < 0");
  PyObject *values = tuple_of(args[1], src.p->n_shared + k * src.p->n_row, "values");
  if (values == NULL) return NULL;
  src.values = items(values);
  PyObject *done = fill_rows(&src, args[3], k, at, args[5], args[6]);
  Py_DECREF(values);
  return done;
}

/* fill_keyed(plan, getters, rec, routes, at_ms, out, shared, per_row): fill() with each ring's
   value looked up here: getters[ring](key made from rec, and routes[row] for per-row rings) */
static PyObject *py_fill_keyed(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  if (nargs != 8)
    return PyErr_Format(PyExc_TypeError,
                        "fill_keyed(plan, getters, rec, routes, at_ms, out, shared, per_row)");
  source_t src = {.p = PyCapsule_GetPointer(args[0], PLAN_NAME), .keyed = 1, .rec = args[2]};
  if (src.p == NULL) return NULL;
  for (int64_t i = 0; i < src.p->n_shared + src.p->n_row; i++)
    if (src.p->rings[i].key.prefix == NULL)
      return PyErr_Format(PyExc_ValueError, "fill_keyed: ring %lld has no key", (long long)i);
  int64_t at;
  if (get_i64(args[4], &at)) return NULL;
  PyObject *getters = tuple_of(args[1], src.p->n_shared + src.p->n_row, "getters");
  PyObject *routes = getters ? tuple_of(args[3], -1, "routes") : NULL;
  PyObject *done = NULL;
  if (routes != NULL) {
    src.getters = items(getters);
    src.routes = items(routes);
    done = fill_rows(&src, args[5], PyTuple_GET_SIZE(routes), at, args[6], args[7]);
  }
  Py_XDECREF(getters);
  Py_XDECREF(routes);
  return done;
}

static PyMethodDef methods[] = {
    {"geometry", (PyCFunction)(void (*)(void))py_geometry, METH_FASTCALL,
     "geometry(spec) -> a validated ring geometry"},
    {"update", (PyCFunction)(void (*)(void))py_update, METH_FASTCALL,
     "update(geom, value, t_ms, incr) -> the new value (bytes)"},
    {"read", (PyCFunction)(void (*)(void))py_read, METH_FASTCALL,
     "read(geom, value, at_ms, out): window sums into out"},
    {"updates", (PyCFunction)(void (*)(void))py_updates, METH_FASTCALL,
     "updates(((geom, key), ...)) -> the rings one record updates, with their keys"},
    {"apply", (PyCFunction)(void (*)(void))py_apply, METH_FASTCALL,
     "apply(updates, get, store, rec, route, t_ms, incr): store[key] = update(get(key))"},
    {"plan", (PyCFunction)(void (*)(void))py_plan, METH_FASTCALL,
     "plan(spec, keys) -> a validated row plan"},
    {"fill", (PyCFunction)(void (*)(void))py_fill, METH_FASTCALL,
     "fill(plan, values, at_ms, out, k, shared, per_row): k feature rows"},
    {"fill_keyed", (PyCFunction)(void (*)(void))py_fill_keyed, METH_FASTCALL,
     "fill_keyed(plan, getters, rec, routes, at_ms, out, shared, per_row): fill, looking up"},
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
