/* The trace tap's record step in C (xfrmd/trace_tap.py: _record is the reference, and
 * XFRMD_PURE_PYTHON=1 runs it).
 *
 * Tap is the base class of trace_tap.TraceTap: it holds what a record reads (_pending,
 * socks, kernel, _now; _clock when the clock is a SystemClock) in C slots, and its record()
 * does what _record does, in the same order: the datagram made bytes, the socket's
 * (netns, protocol) noted the first time it is seen, then
 *
 *     (clock now, direction, sock.id, sock.portid, sock.ext_ack, datagram, kernel.trace_note)
 *
 * appended to _pending, and TraceTap.spill() called once _pending holds _spill_at records
 * (trace_tap.SPILL_AT when the tap was made).
 * The clock is read without a call when it is a SystemClock: CLOCK_MONOTONIC, made seconds
 * as time.monotonic() makes them (_PyTime_AsSecondsDouble), plus its offset; any other
 * clock's now() is called. Anything else than a plain list in _pending (a closed tap's
 * _Stopped) gets its append() called.
 *
 * The kernel's trace_note and the clock's offset are read with PyObject_GetAttr: reading
 * them from the instance dict (_PyObject_GetDictPtr) was cheaper here but made the dict of
 * the Kernel and the clock, and every other read of their attributes dearer (ALLOCSPI in
 * situ +1.7k instructions).
 *
 * Like the Python record it runs under the GIL: the append is one step that a spill's or a
 * reader's slice-and-del of the list cannot split.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include "_slots.h"         /* slot_offset */
#include <stdint.h>
#include <time.h>

/* A type's version tag that says "unchanged since": valid, and the same number. */
#ifdef Py_TPFLAGS_VALID_VERSION_TAG
#define TAG_VALID(tp) ((tp)->tp_version_tag != 0 && PyType_HasFeature(tp, Py_TPFLAGS_VALID_VERSION_TAG))
#else
#define TAG_VALID(tp) ((tp)->tp_version_tag != 0)
#endif
typedef struct {
    PyObject_HEAD
    PyObject *pending;      /* _pending: the list the records go to */
    PyObject *socks;        /* socks: socket id -> (netns name, protocol) */
    PyObject *kernel;       /* kernel: its trace_note goes in each record */
    PyObject *now;          /* _now: the clock's now (called unless _clock is set) */
    PyObject *clock;        /* _clock: the SystemClock read without a call, or NULL/None */
    Py_ssize_t spill_at;    /* _spill_at: records held before spill() (SPILL_AT) */
    /* the last socket id found in socks, and the dict and its size then: while socks is
     * that dict at that size the id is still in it (nothing removes an entry) */
    PyObject *known_sid, *known_in;
    Py_ssize_t known_n;
} Tap;

static PyObject *s_id, *s_portid, *s_ext_ack, *s_netns, *s_name, *s_protocol, *s_trace_note,
                *s_offset, *s_spill, *s_append;

/* Where the socket's id, portid and ext_ack are in an object of sock_type (the __slots__ of
 * NetlinkSocket: member descriptors), read without the attribute lookup while the type is
 * unchanged (its version tag is the one they were found under). Any other type, or a slot
 * left empty, goes through PyObject_GetAttr. */
static PyTypeObject *sock_type;
static unsigned int sock_tag;
static Py_ssize_t off_id, off_portid, off_ext_ack;

/* 1 when the three slots of `tp` can be read at their offsets */
static int sock_slots(PyTypeObject *tp)
{
    if (tp == sock_type && tp->tp_version_tag == sock_tag && TAG_VALID(tp))
        return 1;
    if (tp->tp_getattro != PyObject_GenericGetAttr)
        return 0;
    Py_ssize_t a = slot_offset(tp, s_id), b = slot_offset(tp, s_portid),
        c = slot_offset(tp, s_ext_ack);
    if (a < 0 || b < 0 || c < 0 || !TAG_VALID(tp))
        return 0;
    Py_INCREF(tp);
    Py_XSETREF(sock_type, tp);
    sock_tag = tp->tp_version_tag;
    off_id = a, off_portid = b, off_ext_ack = c;
    return 1;
}

/* sock.<name>: the slot at `off` (a new reference) when `fast`, else the attribute */
static inline PyObject *sock_attr(PyObject *sock, int fast, Py_ssize_t off, PyObject *name)
{
    if (fast) {
        PyObject *v = *(PyObject **)((char *)sock + off);
        if (v != NULL) {
            Py_INCREF(v);
            return v;
        }
    }
    return PyObject_GetAttr(sock, name);
}

/* time.monotonic() + clock.offset, as SystemClock.now computes it */
static PyObject *system_now(PyObject *clock)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    volatile double d;      /* _PyTime_AsSecondsDouble's rounding */
    if (ns % 1000000000 == 0)
        d = (double)(ns / 1000000000);
    else {
        d = (double)ns;
        d /= 1e9;
    }
    PyObject *off = PyObject_GetAttr(clock, s_offset);
    if (off == NULL)
        return NULL;
    PyObject *r;
    if (PyFloat_CheckExact(off))
        r = PyFloat_FromDouble(d + PyFloat_AS_DOUBLE(off));
    else {
        PyObject *m = PyFloat_FromDouble(d);
        r = m == NULL ? NULL : PyNumber_Add(m, off);
        Py_XDECREF(m);
    }
    Py_DECREF(off);
    return r;
}

static PyObject *need(PyObject *v, const char *name)
{
    if (v == NULL)
        PyErr_Format(PyExc_AttributeError, "'TraceTap' object has no attribute '%s'", name);
    return v;
}

/* record(direction, sock, datagram) */
static PyObject *Tap_record(Tap *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "record() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *direction = args[0], *sock = args[1], *datagram = args[2];
    PyObject *sid = NULL, *rec = NULL;
    if (PyBytes_CheckExact(datagram))
        Py_INCREF(datagram);
    else if ((datagram = PyObject_CallOneArg((PyObject *)&PyBytes_Type, datagram)) == NULL)
        return NULL;
    int fast = sock_slots(Py_TYPE(sock));
    if ((sid = sock_attr(sock, fast, off_id, s_id)) == NULL)
        goto fail;
    if (need(self->socks, "socks") == NULL)
        goto fail;
    PyObject *socks = self->socks;
    int known = sid == self->known_sid && socks == self->known_in
                && PyDict_CheckExact(socks) && PyDict_GET_SIZE(socks) == self->known_n;
    if (!known && (known = PySequence_Contains(socks, sid)) < 0)
        goto fail;
    if (!known) {
        PyObject *ns = PyObject_GetAttr(sock, s_netns), *name = NULL, *proto = NULL, *v = NULL;
        int err = -1;
        if (ns != NULL && (name = PyObject_GetAttr(ns, s_name)) != NULL
                && (proto = PyObject_GetAttr(sock, s_protocol)) != NULL
                && (v = PyTuple_Pack(2, name, proto)) != NULL)
            err = PyObject_SetItem(self->socks, sid, v);
        Py_XDECREF(ns);
        Py_XDECREF(name);
        Py_XDECREF(proto);
        Py_XDECREF(v);
        if (err < 0)
            goto fail;
    }
    if (sid != self->known_sid || socks != self->known_in) {
        Py_INCREF(sid);
        Py_XSETREF(self->known_sid, sid);
        Py_INCREF(socks);
        Py_XSETREF(self->known_in, socks);
    }
    if (PyDict_CheckExact(socks))
        self->known_n = PyDict_GET_SIZE(socks);
    PyObject *pending = need(self->pending, "_pending");
    if (pending == NULL)
        goto fail;
    Py_INCREF(pending);
    if ((rec = PyTuple_New(7)) == NULL)
        goto fail_p;
    PyObject *t;
    if (self->clock != NULL && self->clock != Py_None)
        t = system_now(self->clock);
    else
        t = need(self->now, "_now") ? PyObject_CallNoArgs(self->now) : NULL;
    if (t == NULL)
        goto fail_p;
    PyTuple_SET_ITEM(rec, 0, t);
    Py_INCREF(direction);
    PyTuple_SET_ITEM(rec, 1, direction);
    PyTuple_SET_ITEM(rec, 2, sid);
    sid = NULL;
    PyObject *v;
    if ((v = sock_attr(sock, fast, off_portid, s_portid)) == NULL)
        goto fail_p;
    PyTuple_SET_ITEM(rec, 3, v);
    if ((v = sock_attr(sock, fast, off_ext_ack, s_ext_ack)) == NULL)
        goto fail_p;
    PyTuple_SET_ITEM(rec, 4, v);
    PyTuple_SET_ITEM(rec, 5, datagram);
    datagram = NULL;
    if (need(self->kernel, "kernel") == NULL
            || (v = PyObject_GetAttr(self->kernel, s_trace_note)) == NULL)
        goto fail_p;
    PyTuple_SET_ITEM(rec, 6, v);
    Py_ssize_t n;
    if (PyList_CheckExact(pending)) {
        if (PyList_Append(pending, rec) < 0)
            goto fail_p;
        n = PyList_GET_SIZE(pending);
    } else {
        PyObject *r = PyObject_CallMethodOneArg(pending, s_append, rec);
        if (r == NULL)
            goto fail_p;
        Py_DECREF(r);
        if ((n = PyObject_Size(pending)) < 0)
            goto fail_p;
    }
    Py_DECREF(pending);
    Py_DECREF(rec);
    if (n >= self->spill_at)
        return PyObject_CallMethodNoArgs((PyObject *)self, s_spill);
    Py_RETURN_NONE;
fail_p:
    Py_DECREF(pending);
fail:
    Py_XDECREF(rec);
    Py_XDECREF(sid);
    Py_XDECREF(datagram);
    return NULL;
}

static int Tap_traverse(Tap *self, visitproc visit, void *arg)
{
    Py_VISIT(self->pending);
    Py_VISIT(self->socks);
    Py_VISIT(self->kernel);
    Py_VISIT(self->now);
    Py_VISIT(self->clock);
    Py_VISIT(self->known_sid);
    Py_VISIT(self->known_in);
    return 0;
}

static int Tap_clear(Tap *self)
{
    Py_CLEAR(self->pending);
    Py_CLEAR(self->socks);
    Py_CLEAR(self->kernel);
    Py_CLEAR(self->now);
    Py_CLEAR(self->clock);
    Py_CLEAR(self->known_sid);
    Py_CLEAR(self->known_in);
    return 0;
}

static void Tap_dealloc(Tap *self)
{
    PyObject_GC_UnTrack(self);
    Tap_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Tap_methods[] = {
    {"record", (PyCFunction)(void (*)(void))Tap_record, METH_FASTCALL,
     "record(direction, sock, datagram): one record appended (trace_tap._record in C)"},
    {NULL}
};

static PyMemberDef Tap_members[] = {
    {"_pending", T_OBJECT_EX, offsetof(Tap, pending), 0, NULL},
    {"socks", T_OBJECT_EX, offsetof(Tap, socks), 0, NULL},
    {"kernel", T_OBJECT_EX, offsetof(Tap, kernel), 0, NULL},
    {"_now", T_OBJECT_EX, offsetof(Tap, now), 0, NULL},
    {"_clock", T_OBJECT, offsetof(Tap, clock), 0, NULL},
    {"_spill_at", T_PYSSIZET, offsetof(Tap, spill_at), 0, NULL},
    {NULL}
};

static PyTypeObject TapType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "xfrmd._taprec.Tap",
    .tp_basicsize = sizeof(Tap),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The C half of trace_tap.TraceTap: what a record reads, and record().",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Tap_dealloc,
    .tp_traverse = (traverseproc)Tap_traverse,
    .tp_clear = (inquiry)Tap_clear,
    .tp_methods = Tap_methods,
    .tp_members = Tap_members,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_taprec", "The trace tap's record step (xfrmd/trace_tap.py).",
    -1, NULL,
};

#define INTERN(var, s) if ((var = PyUnicode_InternFromString(s)) == NULL) return NULL

PyMODINIT_FUNC PyInit__taprec(void)
{
    INTERN(s_id, "id");
    INTERN(s_portid, "portid");
    INTERN(s_ext_ack, "ext_ack");
    INTERN(s_netns, "netns");
    INTERN(s_name, "name");
    INTERN(s_protocol, "protocol");
    INTERN(s_trace_note, "trace_note");
    INTERN(s_offset, "offset");
    INTERN(s_spill, "spill");
    INTERN(s_append, "append");
    if (PyType_Ready(&TapType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&TapType);
    if (PyModule_AddObject(m, "Tap", (PyObject *)&TapType) < 0) {
        Py_DECREF(&TapType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
