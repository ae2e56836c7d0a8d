/* The SAD's byspi table in C (xfrmd/xfrm/sadb.py: StateDb.byspi; a dict is the reference,
 * XFRMD_PURE_PYTHON=1 or unbuilt).
 *
 * SpiTable maps a SPI (an int, 0 .. 2**32-1) to its hash chain (any object: the state, or a
 * tuple / list of states) with the dict methods sadb.py and sad.py use: get, setdefault,
 * [k], [k] = v, del [k], in, len, pop, clear, keys, values, items. The entries are inline --
 * a 16-byte slot holds the u32 SPI and the chain -- in one open-addressed array (linear
 * probing, at most half full, Fibonacci hashing of the SPI; a delete shifts the following
 * entries back, so there are no tombstones). At a million SAs a dict lookup read an index
 * slot, then an entry (more on a collision), then the stored key's int to compare it:
 * three dependent cache misses before the state. Here one slot's line, then the state
 * (docs/performance.md, "The SAD's 1M curve (session 12)"). The kernel's byspi is a hash
 * of chains too (xfrm_spi_hash, __xfrm_state_lookup's walk); this is only its container.
 *
 * A key that is not an int in range is never stored: lookups answer as for a missing SPI,
 * stores raise (TypeError / OverflowError). Iteration order is the slots', not insertion's
 * (no reader depends on byspi's order). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef struct {
    uint32_t spi;
    PyObject *v;                /* NULL: empty */
} Slot;

typedef struct {
    PyObject_HEAD
    Py_ssize_t used;
    Py_ssize_t mask;            /* slots - 1, a power of two minus one */
    int shift;                  /* 64 - log2(slots) */
    Slot *slots;
} SpiTable;

#define MIN_BITS 3

static inline Py_ssize_t home(const SpiTable *t, uint32_t spi)
{
    return (Py_ssize_t)(((uint64_t)spi * 0x9E3779B97F4A7C15ull) >> t->shift);
}

/* the SPI of an int key: 1, or 0 when it is not one (no error set) */
static int spi_of(PyObject *k, uint32_t *out)
{
    if (!PyLong_Check(k))
        return 0;
    unsigned long v = PyLong_AsUnsignedLong(k);
    if (v == (unsigned long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (v > 0xFFFFFFFFul)
        return 0;
    *out = (uint32_t)v;
    return 1;
}

/* as spi_of, with the error a store raises */
static int spi_store(PyObject *k, uint32_t *out)
{
    if (spi_of(k, out))
        return 1;
    if (PyLong_Check(k))
        PyErr_SetString(PyExc_OverflowError, "SPI out of range 0..2**32-1");
    else
        PyErr_Format(PyExc_TypeError, "SPI must be an int, not %.100s", Py_TYPE(k)->tp_name);
    return 0;
}

static Py_ssize_t find(const SpiTable *t, uint32_t spi)
{
    Py_ssize_t i = home(t, spi);
    const Slot *s = t->slots;
    while (s[i].v != NULL) {
        if (s[i].spi == spi)
            return i;
        i = (i + 1) & t->mask;
    }
    return -1 - i;              /* the empty slot that ends the probe */
}

static int alloc_slots(SpiTable *t, int bits)
{
    Slot *s = PyMem_Calloc((size_t)1 << bits, sizeof(Slot));
    if (s == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->slots = s;
    t->mask = ((Py_ssize_t)1 << bits) - 1;
    t->shift = 64 - bits;
    return 0;
}

static int grow(SpiTable *t)
{
    Slot *old = t->slots;
    Py_ssize_t n = t->mask + 1;
    int bits = 64 - t->shift + 1;
    if (alloc_slots(t, bits) < 0) {
        t->slots = old;
        return -1;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        if (old[j].v == NULL)
            continue;
        Py_ssize_t i = home(t, old[j].spi);
        while (t->slots[i].v != NULL)
            i = (i + 1) & t->mask;
        t->slots[i] = old[j];
    }
    PyMem_Free(old);
    return 0;
}

/* store v (a new reference taken) in the empty slot -1 - at, growing first when full */
static int put_new(SpiTable *t, Py_ssize_t at, uint32_t spi, PyObject *v)
{
    if ((t->used + 1) * 2 > t->mask + 1) {
        if (grow(t) < 0)
            return -1;
        at = find(t, spi);
    }
    Py_ssize_t i = -1 - at;
    t->slots[i].spi = spi;
    Py_INCREF(v);
    t->slots[i].v = v;
    t->used++;
    return 0;
}

/* remove slot i, shifting back the entries whose probe passed it; returns the value
 * (the table's reference) */
static PyObject *take(SpiTable *t, Py_ssize_t i)
{
    Slot *s = t->slots;
    PyObject *v = s[i].v;
    Py_ssize_t j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        if (s[j].v == NULL)
            break;
        Py_ssize_t k = home(t, s[j].spi);
        /* the entry at j may move to i only if its home is not cyclically in (i, j] */
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        s[i] = s[j];
        i = j;
    }
    s[i].v = NULL;
    t->used--;
    return v;
}

static PyObject *SpiTable_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    if (PyTuple_GET_SIZE(args) || (kw && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "SpiTable() takes no arguments");
        return NULL;
    }
    SpiTable *t = (SpiTable *)type->tp_alloc(type, 0);
    if (t == NULL)
        return NULL;
    if (alloc_slots(t, MIN_BITS) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

static int SpiTable_traverse(SpiTable *t, visitproc visit, void *arg)
{
    if (t->slots == NULL)
        return 0;
    for (Py_ssize_t i = 0; i <= t->mask; i++)
        Py_VISIT(t->slots[i].v);
    return 0;
}

static void clear_slots(SpiTable *t)
{
    /* detach first: a value's finalizer may come back to this table */
    Slot *s = t->slots;
    Py_ssize_t n = t->mask + 1;
    if (s == NULL)
        return;
    if (alloc_slots(t, MIN_BITS) < 0) {     /* no memory: leave the table without slots */
        PyErr_Clear();
        t->slots = NULL;
        t->mask = -1;
    }
    t->used = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        Py_XDECREF(s[i].v);
    PyMem_Free(s);
}

static int SpiTable_clear_gc(SpiTable *t)
{
    clear_slots(t);
    return 0;
}

static void SpiTable_dealloc(SpiTable *t)
{
    PyObject_GC_UnTrack(t);
    Slot *s = t->slots;
    Py_ssize_t n = t->mask + 1;
    t->slots = NULL;
    for (Py_ssize_t i = 0; s != NULL && i < n; i++)
        Py_XDECREF(s[i].v);
    PyMem_Free(s);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

#define NEED_SLOTS(t, fail) \
    if ((t)->slots == NULL && alloc_slots((t), MIN_BITS) < 0) return fail

static PyObject *get(SpiTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    uint32_t spi;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(spi, default=None)");
        return NULL;
    }
    PyObject *dflt = nargs == 2 ? args[1] : Py_None;
    if (t->slots != NULL && spi_of(args[0], &spi)) {
        Py_ssize_t i = find(t, spi);
        if (i >= 0)
            dflt = t->slots[i].v;
    }
    Py_INCREF(dflt);
    return dflt;
}

static PyObject *setdefault(SpiTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    uint32_t spi;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "setdefault(spi, value)");
        return NULL;
    }
    NEED_SLOTS(t, NULL);
    if (!spi_store(args[0], &spi))
        return NULL;
    Py_ssize_t i = find(t, spi);
    if (i >= 0) {
        Py_INCREF(t->slots[i].v);
        return t->slots[i].v;
    }
    if (put_new(t, i, spi, args[1]) < 0)
        return NULL;
    Py_INCREF(args[1]);
    return args[1];
}

static PyObject *pop(SpiTable *t, PyObject *const *args, Py_ssize_t nargs)
{
    uint32_t spi;
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "pop(spi[, default])");
        return NULL;
    }
    if (t->slots != NULL && spi_of(args[0], &spi)) {
        Py_ssize_t i = find(t, spi);
        if (i >= 0)
            return take(t, i);
    }
    if (nargs == 2) {
        Py_INCREF(args[1]);
        return args[1];
    }
    PyErr_SetObject(PyExc_KeyError, args[0]);
    return NULL;
}

static PyObject *clear(SpiTable *t, PyObject *unused)
{
    clear_slots(t);
    Py_RETURN_NONE;
}

/* keys (0), values (1) or items (2), as a list in slot order */
static PyObject *listing(SpiTable *t, int what)
{
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && t->slots != NULL && i <= t->mask; i++) {
        Slot s = t->slots[i];
        if (s.v == NULL)
            continue;
        PyObject *e, *k = what == 1 ? NULL : PyLong_FromUnsignedLong(s.spi);
        if (what == 0)
            e = k;
        else if (what == 1)
            e = Py_NewRef(s.v);
        else
            e = k == NULL ? NULL : PyTuple_Pack(2, k, s.v);
        if (what == 2)
            Py_XDECREF(k);
        if (e == NULL || PyList_Append(out, e) < 0) {
            Py_XDECREF(e);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(e);
    }
    return out;
}

static PyObject *keys(SpiTable *t, PyObject *unused) { return listing(t, 0); }
static PyObject *values(SpiTable *t, PyObject *unused) { return listing(t, 1); }
static PyObject *items(SpiTable *t, PyObject *unused) { return listing(t, 2); }

static PyObject *SpiTable_iter(SpiTable *t)
{
    PyObject *k = listing(t, 0);
    if (k == NULL)
        return NULL;
    PyObject *it = PyObject_GetIter(k);
    Py_DECREF(k);
    return it;
}

static Py_ssize_t SpiTable_len(SpiTable *t) { return t->used; }

static PyObject *SpiTable_getitem(SpiTable *t, PyObject *k)
{
    uint32_t spi;
    if (t->slots != NULL && spi_of(k, &spi)) {
        Py_ssize_t i = find(t, spi);
        if (i >= 0)
            return Py_NewRef(t->slots[i].v);
    }
    PyErr_SetObject(PyExc_KeyError, k);
    return NULL;
}

static int SpiTable_ass(SpiTable *t, PyObject *k, PyObject *v)
{
    uint32_t spi;
    if (v == NULL) {            /* del t[k] */
        if (t->slots != NULL && spi_of(k, &spi)) {
            Py_ssize_t i = find(t, spi);
            if (i >= 0) {
                Py_DECREF(take(t, i));
                return 0;
            }
        }
        PyErr_SetObject(PyExc_KeyError, k);
        return -1;
    }
    NEED_SLOTS(t, -1);
    if (!spi_store(k, &spi))
        return -1;
    Py_ssize_t i = find(t, spi);
    if (i >= 0) {
        PyObject *old = t->slots[i].v;
        t->slots[i].v = Py_NewRef(v);
        Py_DECREF(old);
        return 0;
    }
    return put_new(t, i, spi, v);
}

static int SpiTable_contains(SpiTable *t, PyObject *k)
{
    uint32_t spi;
    return t->slots != NULL && spi_of(k, &spi) && find(t, spi) >= 0;
}

static PyMethodDef methods[] = {
    {"get", (PyCFunction)(void (*)(void))get, METH_FASTCALL, "get(spi, default=None)"},
    {"setdefault", (PyCFunction)(void (*)(void))setdefault, METH_FASTCALL,
     "setdefault(spi, value): the chain stored for spi, storing value when there is none"},
    {"pop", (PyCFunction)(void (*)(void))pop, METH_FASTCALL, "pop(spi[, default])"},
    {"clear", (PyCFunction)clear, METH_NOARGS, "remove every entry"},
    {"keys", (PyCFunction)keys, METH_NOARGS, "the SPIs, a list in slot order"},
    {"values", (PyCFunction)values, METH_NOARGS, "the chains, a list in slot order"},
    {"items", (PyCFunction)items, METH_NOARGS, "(spi, chain) pairs, a list in slot order"},
    {NULL}
};

static PyMappingMethods as_mapping = {
    (lenfunc)SpiTable_len, (binaryfunc)SpiTable_getitem, (objobjargproc)SpiTable_ass,
};

static PySequenceMethods as_sequence = {
    .sq_contains = (objobjproc)SpiTable_contains,
};

static PyTypeObject SpiTable_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "xfrmd.xfrm._spitab.SpiTable",
    .tp_basicsize = sizeof(SpiTable),
    .tp_dealloc = (destructor)SpiTable_dealloc,
    .tp_as_sequence = &as_sequence,
    .tp_as_mapping = &as_mapping,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "SPI -> hash chain, entries inline (the SAD's byspi)",
    .tp_traverse = (traverseproc)SpiTable_traverse,
    .tp_clear = (inquiry)SpiTable_clear_gc,
    .tp_iter = (getiterfunc)SpiTable_iter,
    .tp_methods = methods,
    .tp_new = SpiTable_new,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_spitab", "The SAD's byspi table (sadb.StateDb.byspi) in C.", -1,
};

PyMODINIT_FUNC PyInit__spitab(void)
{
    if (PyType_Ready(&SpiTable_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&SpiTable_Type);
    if (PyModule_AddObject(m, "SpiTable", (PyObject *)&SpiTable_Type) < 0) {
        Py_DECREF(&SpiTable_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
