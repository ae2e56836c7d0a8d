/* The C half of Kernel.reopen (xfrmd/kernel.py keeps the reference Python): an `ip -batch`
 * line's RELEASE + HELLO + BIND_AUTO on a kept connection, when the old socket object may
 * become the new socket in place.
 *
 * setup(NetlinkSocket) once at import; then reopen(sock, protocol, netns, pid, uid,
 * sock_type, cred, portid, and the kernel's namespaces, families, former_names, dirty,
 * _sock_ids, admin_uids) per line: True when it reset ``sock`` in place as the Python
 * in-place branch does (netlink_release, then __netlink_create's defaults under a new id,
 * the port id kept when it is ``portid``), False when anything is not the usual case --
 * a subclass, a field of an unexpected type, a socket that is closed or in a group, a
 * refcounted or replaced namespace, another protocol, type or owner, a family that refuses
 * sockets or is missing, a former namespace name, a queue or dump to drop, credentials
 * without their two flags -- and then it has changed nothing: the Python decides. A bind
 * to ``portid`` that is not kept is left to the caller (Kernel.bind, which may fail).
 *
 * The defaults are learned, not written here: setup() calls NetlinkSocket.fresh on a probe
 * whose slots all hold sentinels and keeps what fresh stored in each (only None, bools and
 * ints); fresh stays the one place they are written (tests/test_netlink_reopen.py compares
 * the whole kernel after reopen with close + socket + bind, on this path and without it). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "../_slots.h"      /* slot_offset */

#define MAX_SLOTS 48

static PyTypeObject *Sock_t;
static Py_ssize_t n_fresh = -1;                 /* -1: setup failed, never in place */
static Py_ssize_t fresh_off[MAX_SLOTS];
static PyObject *fresh_val[MAX_SLOTS];

/* the slots read or written here, by name */
enum { S_CLOSED, S_GROUPS, S_NETNS, S_PROTOCOL, S_TYPE, S_PID, S_UID, S_BOUND, S_PORTID,
       S_RX, S_DUMP, S_ID, S_ADMIN, S_ADMIN_INIT, S_N };
static const char *slot_names[S_N] = {
    "closed", "_groups", "netns", "protocol", "sock_type", "pid", "uid", "bound", "portid",
    "rx", "dump", "id", "cap_net_admin", "cap_net_admin_init" };
static Py_ssize_t off[S_N];

static PyObject *s_refcounted, *s_ports, *s_refuse, *s_net_admin, *s_net_admin_init,
    *s_fresh;

#define SLOT(o, i) (*(PyObject **)((char *)(o) + off[i]))

/* an attribute or NULL without an exception when it is missing (getattr(o, name, None)) */
static PyObject *lookup(PyObject *o, PyObject *name)
{
    PyObject *v = NULL;
#if PY_VERSION_HEX >= 0x030D0000
    if (PyObject_GetOptionalAttr(o, name, &v) < 0)
        PyErr_Clear();
#else
    if (_PyObject_LookupAttr(o, name, &v) < 0)
        PyErr_Clear();
#endif
    return v;
}

static PyObject *setup(PyObject *self, PyObject *cls)
{
    PyObject *names = NULL, *probe = NULL, *r = NULL, *sentinel[MAX_SLOTS] = {NULL};
    Py_ssize_t n = 0;
    n_fresh = -1;
    if (!PyType_Check(cls))
        return PyErr_Format(PyExc_TypeError, "a class");
    PyTypeObject *tp = (PyTypeObject *)cls;
    /* its own slots only: the probe below sees cls.__slots__, and a base's slots that
     * fresh() set would go unseen */
    if (tp->tp_dictoffset != 0 || tp->tp_base != &PyBaseObject_Type)
        Py_RETURN_FALSE;
    for (int i = 0; i < S_N; i++)
        if ((off[i] = slot_offset_s(tp, slot_names[i])) < 0)
            Py_RETURN_FALSE;
    names = PyObject_GetAttrString(cls, "__slots__");
    if (names == NULL || !PyTuple_Check(names) || PyTuple_GET_SIZE(names) > MAX_SLOTS)
        goto out;
    n = PyTuple_GET_SIZE(names);
    probe = tp->tp_alloc(tp, 0);
    if (probe == NULL)
        goto out;
    Py_ssize_t offs[MAX_SLOTS];
    for (Py_ssize_t i = 0; i < n; i++) {
        offs[i] = slot_offset(tp, PyTuple_GET_ITEM(names, i));
        if (offs[i] < 0 || (sentinel[i] = PyBaseObject_Type.tp_alloc(&PyBaseObject_Type, 0)) == NULL)
            goto out;
        Py_INCREF(sentinel[i]);
        *(PyObject **)((char *)probe + offs[i]) = sentinel[i];
    }
    r = PyObject_CallMethodNoArgs(probe, s_fresh);
    if (r == NULL)
        goto out;
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = *(PyObject **)((char *)probe + offs[i]);
        if (v == sentinel[i])
            continue;                           /* not fresh's */
        if (v == NULL || !(v == Py_None || PyBool_Check(v) || PyLong_CheckExact(v)))
            goto out;                           /* deleted, or a value one could change */
        fresh_off[k] = offs[i];
        Py_INCREF(v);
        Py_XSETREF(fresh_val[k], v);
        k++;
    }
    Py_INCREF(cls);
    Py_XSETREF(Sock_t, tp);
    n_fresh = k;
out:
    PyErr_Clear();
    for (Py_ssize_t i = 0; i < n; i++)
        Py_XDECREF(sentinel[i]);
    Py_XDECREF(probe);                          /* its slots (the sentinels) go with it */
    Py_XDECREF(names);
    Py_XDECREF(r);
    return PyBool_FromLong(n_fresh >= 0);
}

static int is_zero(PyObject *v)
{
    int over = 0;
    return PyLong_CheckExact(v) && PyLong_AsLongAndOverflow(v, &over) == 0 && !over;
}

static int same_int(PyObject *a, PyObject *b)
{
    if (a == b)
        return 1;
    if (!PyLong_CheckExact(a) || !PyLong_CheckExact(b))
        return -1;
    return PyObject_RichCompareBool(a, b, Py_EQ);
}

/* what the caller checks once the socket may be reopened in place (``keep``: its port id
 * stays), and does once it was: for Server._replay's REOPEN, the connection's part */
typedef int (*extra_fn)(void *ctx, int keep);

/* a[]: reopen's 14 arguments. 1: reopened in place (then ``apply`` ran), 0: nothing changed */
static int reopen_core(PyObject *const *a, extra_fn check, extra_fn apply, void *ctx)
{
    PyObject *sock = a[0], *protocol = a[1], *netns = a[2], *pid = a[3], *uid = a[4],
             *sock_type = a[5], *cred = a[6], *portid = a[7], *namespaces = a[8],
             *families = a[9], *former = a[10], *dirty = a[11], *ids = a[12];
    PyObject *ns, *ports = NULL, *admin = NULL, *admin_init = NULL, *fam, *v, *newid = NULL;
    int ok = 0, keep = 0;
    if (n_fresh < 0 || Py_TYPE(sock) != Sock_t)
        return 0;
    for (int i = 0; i < S_N; i++)
        if (SLOT(sock, i) == NULL)
            return 0;
    /* the Python branch's tests, each on the types it sees in practice */
    if (SLOT(sock, S_CLOSED) != Py_False || !is_zero(SLOT(sock, S_GROUPS))
            || (SLOT(sock, S_BOUND) != Py_True && SLOT(sock, S_BOUND) != Py_False)
            || SLOT(sock, S_DUMP) != Py_None || !PyUnicode_CheckExact(netns)
            || !PyDict_CheckExact(namespaces) || !PyDict_CheckExact(families)
            || !PyDict_CheckExact(former) || !PySet_CheckExact(dirty) || !PyIter_Check(ids))
        return 0;
    ns = SLOT(sock, S_NETNS);
    v = lookup(ns, s_refcounted);
    if (v != Py_False) {
        Py_XDECREF(v);
        return 0;
    }
    Py_DECREF(v);
    if (same_int(SLOT(sock, S_PROTOCOL), protocol) != 1 || same_int(SLOT(sock, S_TYPE), sock_type) != 1
            || same_int(SLOT(sock, S_PID), pid) != 1 || same_int(SLOT(sock, S_UID), uid) != 1)
        goto out;
    if (PyDict_GetItemWithError(namespaces, netns) != ns || PyErr_Occurred())
        goto out;
    fam = PyDict_GetItemWithError(families, protocol);
    if (fam == NULL || fam == Py_None)
        goto out;
    v = lookup(fam, s_refuse);
    if (v != NULL && v != Py_False) {
        Py_DECREF(v);
        goto out;
    }
    Py_XDECREF(v);
    if (!is_zero(pid) && (PyDict_GetItemWithError(former, netns) != NULL || PyErr_Occurred()))
        goto out;
    /* the capabilities, computed before anything changes */
    if (cred != Py_None) {
        admin = lookup(cred, s_net_admin);
        admin_init = lookup(cred, s_net_admin_init);
        if (admin == NULL || admin_init == NULL)
            goto out;
    } else {
        PyObject *uids = a[13];
        int in = 1;
        if (uids != Py_None)
            in = (PySet_Check(uids) || PyFrozenSet_Check(uids)) ? PySet_Contains(uids, uid) : -1;
        if (in < 0)
            goto out;
        admin = PyBool_FromLong(in);
        Py_INCREF(admin);
        admin_init = admin;
    }
    /* netlink_release → netlink_remove: the port table, looked at before anything changes */
    PyObject *own = SLOT(sock, S_PORTID);
    if (SLOT(sock, S_BOUND) == Py_True) {
        PyObject *tables = lookup(ns, s_ports);
        if (tables == NULL || !PyDict_CheckExact(tables)) {
            Py_XDECREF(tables);
            goto out;
        }
        ports = PyDict_GetItemWithError(tables, protocol);
        Py_XINCREF(ports);
        Py_DECREF(tables);
        if (ports != NULL) {
            if (!PyDict_CheckExact(ports))
                goto out;
            if (PyDict_GetItemWithError(ports, own) != sock)
                Py_CLEAR(ports);                /* not in the table: nothing to remove */
            else if ((keep = same_int(own, portid)) < 0)
                goto out;
        }
        if (PyErr_Occurred())
            goto out;
    }
    if (PyObject_IsTrue(SLOT(sock, S_RX)) != 0)
        goto out;                               /* skb_queue_purge: the Python's */
    if (check != NULL && !check(ctx, keep))
        goto out;
    newid = PyIter_Next(ids);
    if (newid == NULL)
        goto out;
    /* from here on, what the Python in-place branch does */
    Py_INCREF(own);
    if (ports != NULL && !keep && PyDict_DelItem(ports, own) < 0) {
        Py_DECREF(own);
        goto out;                               /* cannot happen: it was just there */
    }
    if (PySet_Discard(dirty, sock) < 0) {
        PyErr_Clear();
    }
    for (Py_ssize_t i = 0; i < n_fresh; i++) {
        PyObject **p = (PyObject **)((char *)sock + fresh_off[i]);
        Py_INCREF(fresh_val[i]);
        Py_XSETREF(*p, fresh_val[i]);
    }
    Py_XSETREF(SLOT(sock, S_ID), newid);
    newid = NULL;
    Py_INCREF(admin);
    Py_XSETREF(SLOT(sock, S_ADMIN), admin);
    Py_INCREF(admin_init);
    Py_XSETREF(SLOT(sock, S_ADMIN_INIT), admin_init);
    if (keep) {
        Py_XSETREF(SLOT(sock, S_PORTID), own);    /* the reference taken above */
        Py_INCREF(Py_True);
        Py_XSETREF(SLOT(sock, S_BOUND), Py_True);
    } else {
        Py_DECREF(own);
    }
    if (apply != NULL)
        apply(ctx, keep);
    ok = 1;
out:
    PyErr_Clear();
    Py_XDECREF(ports);
    Py_XDECREF(admin);
    Py_XDECREF(admin_init);
    Py_XDECREF(newid);
    return ok;
}

static PyObject *reopen(PyObject *self, PyObject *const *a, Py_ssize_t na)
{
    /* the kernel's tables come from the caller: a specialised attribute load there costs
     * a tenth of a generic one here */
    if (na != 14)
        return PyErr_Format(PyExc_TypeError, "reopen takes 14 arguments");
    return PyBool_FromLong(reopen_core(a, NULL, NULL, NULL));
}

/* ---- Server._replay's REOPEN op (xfrmd/server.py keeps the reference Python) ------------
 * setup_conn(Connection, NETLINK, deque) once; then replay_reopen(conn, args, namespaces,
 * families, former_names, dirty, sock_ids, admin_uids) per line: True when it did all the
 * op does -- the old socket's pending records and read counts dropped, the connection's
 * kind and namespace, the socket reopened in place with the port id BIND_AUTO asks kept,
 * then the inode, outq probe, SO_RCVBUF and NETLINK_EXT_ACK the op carries -- and False,
 * having changed nothing, for everything else: records still pending, a socket that is
 * not reopened in place, a BIND_AUTO that would need a bind (Server._replay_bind). */
enum { C_PENDING, C_PENDING_TS, C_PENDING_FRAMES, C_NETNS, C_KIND, C_SENT_TS, C_SENT_UNREAD,
       C_READ_N, C_PID, C_UID, C_CRED, C_SOCK, C_OPEN_ERROR, C_PROBE, C_N };
static const char *conn_names[C_N] = {
    "pending", "pending_ts", "pending_frames", "netns", "kind", "sent_ts", "sent_unread",
    "read_n", "pid", "uid", "cred", "sock", "open_error", "probe" };
static Py_ssize_t coff[C_N];
enum { X_INO, X_PROBE, X_RCVBUF, X_EXT_ACK, X_N };
static const char *xsock_names[X_N] = { "client_ino", "outq_probe", "rcvbuf", "ext_ack" };
static Py_ssize_t xoff[X_N];
static PyTypeObject *Conn_t, *Deque_t;
static PyObject *netlink_kind, *zero;
static PyObject *s_clear;

#define CSLOT(o, i) (*(PyObject **)((char *)(o) + coff[i]))
#define XSLOT(o, i) (*(PyObject **)((char *)(o) + xoff[i]))

static PyObject *setup_conn(PyObject *self, PyObject *const *a, Py_ssize_t na)
{
    if (na != 3 || !PyType_Check(a[0]) || !PyType_Check(a[2]))
        return PyErr_Format(PyExc_TypeError, "setup_conn(Connection, NETLINK, deque)");
    Py_CLEAR(Conn_t);
    if (Sock_t == NULL)
        Py_RETURN_FALSE;
    for (int i = 0; i < C_N; i++)
        if ((coff[i] = slot_offset_s((PyTypeObject *)a[0], conn_names[i])) < 0)
            Py_RETURN_FALSE;
    for (int i = 0; i < X_N; i++)
        if ((xoff[i] = slot_offset_s(Sock_t, xsock_names[i])) < 0)
            Py_RETURN_FALSE;
    Py_INCREF(a[1]);
    Py_XSETREF(netlink_kind, a[1]);
    Py_INCREF(a[2]);
    Py_XSETREF(Deque_t, (PyTypeObject *)a[2]);
    Py_INCREF(a[0]);
    Conn_t = (PyTypeObject *)a[0];
    Py_RETURN_TRUE;
}

struct op { PyObject *conn, *sock, *netns, *ino, *bind, *rcvbuf, *ext_ack; };

static int op_check(void *ctx, int keep)
{
    struct op *o = ctx;
    return o->bind == Py_None || keep;          /* else a bind is left: _replay_bind's */
}

static void set_slot(PyObject *obj, Py_ssize_t offset, PyObject *v)
{
    PyObject **p = (PyObject **)((char *)obj + offset);
    Py_INCREF(v);
    Py_XSETREF(*p, v);
}

static int op_apply(void *ctx, int keep)
{
    struct op *o = ctx;
    PyObject *conn = o->conn, *sock = o->sock, *q = CSLOT(conn, C_SENT_TS);
    set_slot(conn, coff[C_PENDING_TS], zero);
    set_slot(conn, coff[C_PENDING_FRAMES], zero);
    set_slot(conn, coff[C_NETNS], o->netns);
    set_slot(conn, coff[C_KIND], netlink_kind);
    if (PyObject_IsTrue(q) > 0) {               /* reads_reset */
        PyObject *r = PyObject_CallMethodNoArgs(q, s_clear);
        if (r == NULL)
            PyErr_Clear();
        Py_XDECREF(r);
    }
    set_slot(conn, coff[C_SENT_UNREAD], zero);
    set_slot(conn, coff[C_READ_N], zero);
    set_slot(conn, coff[C_OPEN_ERROR], zero);
    set_slot(sock, xoff[X_INO], o->ino);
    set_slot(sock, xoff[X_PROBE], CSLOT(conn, C_PROBE));
    if (!is_zero(o->rcvbuf))
        set_slot(sock, xoff[X_RCVBUF], o->rcvbuf);
    if (o->ext_ack != Py_None)
        set_slot(sock, xoff[X_EXT_ACK], o->ext_ack);
    return 1;
}

static PyObject *replay_reopen(PyObject *self, PyObject *const *a, Py_ssize_t na)
{
    if (na != 8)
        return PyErr_Format(PyExc_TypeError, "replay_reopen takes 8 arguments");
    PyObject *conn = a[0], *args = a[1];
    if (Conn_t == NULL || Py_TYPE(conn) != Conn_t || !PyTuple_CheckExact(args)
            || PyTuple_GET_SIZE(args) != 7)
        Py_RETURN_FALSE;
    for (int i = 0; i < C_N; i++)
        if (CSLOT(conn, i) == NULL)
            Py_RETURN_FALSE;
    PyObject *pending = CSLOT(conn, C_PENDING), *q = CSLOT(conn, C_SENT_TS);
    if (Py_TYPE(pending) != Deque_t || PyObject_IsTrue(pending) != 0 || Py_TYPE(q) != Deque_t)
        Py_RETURN_FALSE;                        /* records to drop, or no read counts: Python */
    struct op o = { conn, CSLOT(conn, C_SOCK), PyTuple_GET_ITEM(args, 2),
                    PyTuple_GET_ITEM(args, 3), PyTuple_GET_ITEM(args, 4),
                    PyTuple_GET_ITEM(args, 5), PyTuple_GET_ITEM(args, 6) };
    PyObject *pid = CSLOT(conn, C_PID), *portid = zero;
    if (!PyLong_CheckExact(pid) || !PyLong_CheckExact(o.rcvbuf)
            || (o.ext_ack != Py_None && !PyBool_Check(o.ext_ack)))
        Py_RETURN_FALSE;
    if (o.bind != Py_None) {
        /* BIND_AUTO's usual case: the process's id */
        if (!PyTuple_CheckExact(o.bind) || PyTuple_GET_SIZE(o.bind) != 2
                || !PyLong_CheckExact(PyTuple_GET_ITEM(o.bind, 0)))
            Py_RETURN_FALSE;
        unsigned long long want = PyLong_AsUnsignedLongLongMask(pid) & 0xFFFFFFFFull;
        int over = 0;
        long long got = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(o.bind, 0), &over);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            Py_RETURN_FALSE;
        }
        if (over || got < 0 || (unsigned long long)got != want)
            Py_RETURN_FALSE;                    /* another id: _replay_bind's autobind */
        portid = PyTuple_GET_ITEM(o.bind, 0);
    }
    PyObject *ra[14] = { o.sock, PyTuple_GET_ITEM(args, 0), o.netns, pid, CSLOT(conn, C_UID),
                         PyTuple_GET_ITEM(args, 1), CSLOT(conn, C_CRED), portid,
                         a[2], a[3], a[4], a[5], a[6], a[7] };
    return PyBool_FromLong(reopen_core(ra, op_check, op_apply, &o));
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_O, "setup(NetlinkSocket): learn the slots and fresh()'s defaults"},
    {"setup_conn", (PyCFunction)(void (*)(void))setup_conn, METH_FASTCALL,
     "setup_conn(Connection, NETLINK, deque): learn the connection's slots"},
    {"replay_reopen", (PyCFunction)(void (*)(void))replay_reopen, METH_FASTCALL,
     "replay_reopen(conn, args, namespaces, families, former_names, dirty, sock_ids, "
     "admin_uids) -> bool"},
    {"reopen", (PyCFunction)(void (*)(void))reopen, METH_FASTCALL,
     "reopen(sock, protocol, netns, pid, uid, sock_type, cred, portid, namespaces, families, "
     "former_names, dirty, sock_ids, admin_uids) -> bool"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_reopen", NULL, -1, methods};

PyMODINIT_FUNC PyInit__reopen(void)
{
#define INTERN(var, s) if ((var = PyUnicode_InternFromString(s)) == NULL) return NULL
    INTERN(s_refcounted, "refcounted");
    INTERN(s_ports, "ports");
    INTERN(s_refuse, "refuse_sockets");
    INTERN(s_net_admin, "net_admin");
    INTERN(s_net_admin_init, "net_admin_init");
    INTERN(s_fresh, "fresh");
    INTERN(s_clear, "clear");
    if ((zero = PyLong_FromLong(0)) == NULL)
        return NULL;
    return PyModule_Create(&module);
}
