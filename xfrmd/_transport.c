/* The C half of the server's reactor round (xfrmd/server.py keeps the reference Python:
 * Server._reactor_py, _event, _readable, _record, _dispatch, _batch, _flush).
 *
 * Pump(server, kernel, epoll_fd, listener_fd, wake_fd, NETLINK, KernelError, Connection,
 *      NetlinkSocket, max_record, sent_track_max, max_poll[, replay_reopen])
 *   .round(timeout)  epoll_wait, then each event in epoll's order: the listener is
 *                    server._accept(), the wake pipe ends the round (-1), a connection's
 *                    EPOLLIN is read here when it is a bound netlink connection (else
 *                    server._event), any other fd is server._other_event(fd). Returns the
 *                    number of events.
 *   .flush()         Server._after_kernel_work: what the kernel queued on each dirty socket
 *                    goes out; a connection with records held back (pending) is
 *                    server._flush's.
 *   .end()           Server._round_end(self.flush) when no process exited, no timer is due,
 *                    no connection is silent or closed and the listener listens (else the
 *                    Python's): the flush, and the next round's epoll timeout.
 *
 * A connection's turn reads up to 16 records as _readable does (the next one is asked for
 * with a recv that may fail with EAGAIN: in C that costs what the poll(0) cost, without
 * Python), and ends, as _readable does, after a record answered in step (server._in_step:
 * its READ left nothing unread and its answers dropped nothing; charon's every request),
 * without that recv. A record is taken here only in the shapes the shim sends for a request:
 *   a bare netlink datagram (its first 4 bytes are not zero), or
 *   a BATCH of READ and SETSOCKOPT frames with at least one READ, then one datagram that
 *   ends the record, or
 *   a kept connection's noted opening frames (``conn.prefix``, byte for byte) when they are
 *   one REOPEN op, then one datagram that ends the record (an `ip -batch` line): the op is
 *   ``replay_reopen`` (xfrmd/netlink/_reopen.c, as Server._replay calls it), and when it
 *   declines (having changed nothing) the record goes to server._slow_record as any other.
 * The whole record is checked before anything is applied; every other record (any other
 * frame, a truncated BATCH, other noted opening frames) goes whole to
 * server._slow_record, which is _dispatch with _event's error handling. Errors: an
 * exception of kernel.deliver is server._deliver_failed's (as _deliver); any other
 * exception while a record is applied is server._event_error's (as _event's except
 * clauses: the connection is closed), after which the turn ends. A BaseException that is
 * not an Exception leaves the round, as it leaves the Python reactor.
 *
 * The Connection and NetlinkSocket slots are read and written at their offsets (both are
 * __slots__ classes; setup checks that each name is a plain object slot), and only for
 * objects of exactly those types: anything else takes the Python path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include "_slots.h"         /* learn_offsets */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define F_SETSOCKOPT 4
#define F_BATCH 8
#define F_READ 11
#define MAX_EVENTS 256
#define TURN_RECORDS 16

/* the slots used, by name */
enum { C_FD, C_KIND, C_SOCK, C_PENDING, C_OUT, C_PREFIX, C_SENT_TS, C_SENT_UNREAD, C_READ_N,
       C_PREFIX_OPS, C_N };
static const char *conn_slots[C_N] = {"fd", "kind", "sock", "pending", "out", "prefix",
                                      "sent_ts", "sent_unread", "read_n", "prefix_ops"};
enum { S_RX, S_RX_TRUESIZE, S_RX_BYTES, S_OUTQ, S_DROPS, S_N };
static const char *sock_slots[S_N] = {"rx", "rx_truesize", "rx_bytes", "outq", "drops"};

typedef struct {
    PyObject_HEAD
    PyObject *server, *kernel, *netlink, *kernel_error, *conn_t, *sock_t;
    PyObject *by_fd, *conns, *dirty;
    /* Server._exited, _unhello, _closing and Kernel._timers, clock: made once, then only
     * changed in place */
    PyObject *exited, *unhello, *closing, *timers, *clock;
    PyObject *replay;           /* server.replay_reopen, or NULL: no noted line in C */
    int epfd, lfd, wakefd;
    Py_ssize_t max_record, sent_track_max;
    double max_poll;
    Py_ssize_t coff[C_N], soff[S_N];
    char *buf;
} Pump;

static PyObject *s_accept_resume, *s_cancelled, *s_now, *s_round_end, *s_round_after, *s_accept, *s_event, *s_other_event, *s_close, *s_slow_record, *s_event_error,
    *s_deliver_failed, *s_deliver, *s_setsockopt, *s_flush, *s_hold, *s_want_out, *s_dirty,
    *s_popleft, *s_append, *s_namespaces, *s_families, *s_former_names, *s_sock_ids,
    *s_admin_uids, *s_sends;

static inline PyObject *slot(PyObject *o, Py_ssize_t off)        /* borrowed, maybe NULL */
{
    return *(PyObject **)((char *)o + off);
}

static inline void slot_set(PyObject *o, Py_ssize_t off, PyObject *v)   /* steals v */
{
    PyObject **p = (PyObject **)((char *)o + off);
    PyObject *old = *p;
    *p = v;
    Py_XDECREF(old);
}

/* the server holds its Pump (Server._pump) and the Pump its server: a cycle the collector
 * must see */
static int Pump_traverse(Pump *p, visitproc visit, void *arg)
{
    Py_VISIT(p->server);
    Py_VISIT(p->kernel);
    Py_VISIT(p->netlink);
    Py_VISIT(p->kernel_error);
    Py_VISIT(p->conn_t);
    Py_VISIT(p->sock_t);
    Py_VISIT(p->by_fd);
    Py_VISIT(p->conns);
    Py_VISIT(p->dirty);
    Py_VISIT(p->exited);
    Py_VISIT(p->unhello);
    Py_VISIT(p->closing);
    Py_VISIT(p->timers);
    Py_VISIT(p->clock);
    Py_VISIT(p->replay);
    return 0;
}

static int Pump_clear(Pump *p)
{
    Py_CLEAR(p->server);
    Py_CLEAR(p->kernel);
    Py_CLEAR(p->netlink);
    Py_CLEAR(p->kernel_error);
    Py_CLEAR(p->conn_t);
    Py_CLEAR(p->sock_t);
    Py_CLEAR(p->by_fd);
    Py_CLEAR(p->conns);
    Py_CLEAR(p->dirty);
    Py_CLEAR(p->exited);
    Py_CLEAR(p->unhello);
    Py_CLEAR(p->closing);
    Py_CLEAR(p->timers);
    Py_CLEAR(p->clock);
    Py_CLEAR(p->replay);
    return 0;
}

static void Pump_dealloc(Pump *p)
{
    PyObject_GC_UnTrack(p);
    Pump_clear(p);
    PyMem_RawFree(p->buf);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static int Pump_init(Pump *p, PyObject *args, PyObject *kw)
{
    PyObject *server, *kernel, *netlink, *kerr, *conn_t, *sock_t, *replay = Py_None;
    int epfd, lfd, wakefd;
    Py_ssize_t max_record, track;
    double max_poll;
    if (!PyArg_ParseTuple(args, "OOiiiOOOOnnd|O", &server, &kernel, &epfd, &lfd, &wakefd,
                          &netlink, &kerr, &conn_t, &sock_t, &max_record, &track, &max_poll,
                          &replay))
        return -1;
    if (replay != Py_None && !PyCallable_Check(replay)) {
        PyErr_SetString(PyExc_TypeError, "replay_reopen is callable or None");
        return -1;
    }
    PyObject *parts[5] = {NULL};
    const char *part_names[5] = {"_exited", "_unhello", "_closing", "_timers", "clock"};
    for (int i = 0; i < 5; i++) {
        parts[i] = PyObject_GetAttrString(i < 3 ? server : kernel, part_names[i]);
        if (parts[i] == NULL || (i != 1 && i != 4 && !PyList_CheckExact(parts[i]))) {
            for (int j = 0; j <= i; j++)
                Py_XDECREF(parts[j]);
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "%s is a list", part_names[i]);
            return -1;
        }
    }
    Py_XSETREF(p->exited, parts[0]);
    Py_XSETREF(p->unhello, parts[1]);
    Py_XSETREF(p->closing, parts[2]);
    Py_XSETREF(p->timers, parts[3]);
    Py_XSETREF(p->clock, parts[4]);
    p->max_poll = max_poll;
    if (max_record <= 0 || max_record > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "max_record");
        return -1;
    }
    if (learn_offsets(conn_t, conn_slots, C_N, p->coff) < 0
            || learn_offsets(sock_t, sock_slots, S_N, p->soff) < 0)
        return -1;
    PyObject *by_fd = PyObject_GetAttrString(server, "by_fd");
    if (by_fd == NULL)
        return -1;
    PyObject *conns = PyObject_GetAttrString(server, "conns");
    if (conns == NULL) {
        Py_DECREF(by_fd);
        return -1;
    }
    if (!PyDict_CheckExact(by_fd) || !PyDict_CheckExact(conns)) {
        Py_DECREF(by_fd);
        Py_DECREF(conns);
        PyErr_SetString(PyExc_TypeError, "server.by_fd and server.conns are dicts");
        return -1;
    }
    /* kernel.dirty: made once by Kernel.__init__, only added to and cleared since */
    PyObject *dirty = PyObject_GetAttr(kernel, s_dirty);
    if (dirty == NULL || !PySet_CheckExact(dirty)) {
        Py_XDECREF(dirty);
        Py_DECREF(by_fd);
        Py_DECREF(conns);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "kernel.dirty is a set");
        return -1;
    }
    char *buf = PyMem_RawMalloc((size_t)max_record);
    if (buf == NULL) {
        Py_DECREF(dirty);
        Py_DECREF(by_fd);
        Py_DECREF(conns);
        PyErr_NoMemory();
        return -1;
    }
    PyMem_RawFree(p->buf);
    p->buf = buf;
    Py_INCREF(server); Py_XSETREF(p->server, server);
    Py_INCREF(kernel); Py_XSETREF(p->kernel, kernel);
    Py_INCREF(netlink); Py_XSETREF(p->netlink, netlink);
    Py_INCREF(kerr); Py_XSETREF(p->kernel_error, kerr);
    Py_INCREF(conn_t); Py_XSETREF(p->conn_t, conn_t);
    Py_INCREF(sock_t); Py_XSETREF(p->sock_t, sock_t);
    Py_XSETREF(p->by_fd, by_fd);
    Py_XSETREF(p->conns, conns);
    Py_XSETREF(p->dirty, dirty);
    Py_XSETREF(p->replay, replay == Py_None ? NULL : Py_NewRef(replay));
    p->epfd = epfd;
    p->lfd = lfd;
    p->wakefd = wakefd;
    p->max_record = max_record;
    p->sent_track_max = track;
    return 0;
}

/* Whether __init__ ran to its end (and nothing cleared the Pump since) */
static int ready(Pump *p)
{
    if (p->server && p->kernel && p->by_fd && p->conns && p->dirty && p->exited && p->unhello
            && p->closing && p->timers && p->clock && p->buf)
        return 1;
    PyErr_SetString(PyExc_RuntimeError, "Pump.__init__ was not called");
    return 0;
}

/* server.NAME(args...): 0, or -1 with the exception set */
static int call_server(Pump *p, PyObject *name, PyObject *a, PyObject *b)
{
    PyObject *argv[3] = {p->server, a, b};
    size_t n = 1 + (a != NULL) + (b != NULL);
    PyObject *r = PyObject_VectorcallMethod(name, argv, n | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The exception set while a record of ``conn`` was applied: an Exception is
 * server._event_error's (1: the turn ends); anything else stays set (-1). */
static int event_error(Pump *p, PyObject *conn)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    int r = call_server(p, s_event_error, conn, value ? value : Py_None);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return r < 0 ? -1 : 1;
}

static inline uint32_t rd32(const char *b) { uint32_t v; memcpy(&v, b, 4); return v; }
static inline uint16_t rd16(const char *b) { uint16_t v; memcpy(&v, b, 2); return v; }
static inline int zero4(const char *b) { return rd32(b) == 0; }

/* Connection.read(n), inline: READ says the peer has read n datagrams (mod 2**32) */
static int conn_read(Pump *p, PyObject *conn, uint32_t n)
{
    PyObject *q = slot(conn, p->coff[C_SENT_TS]);
    if (q == NULL || q == Py_None)
        return 0;
    PyObject *rn = slot(conn, p->coff[C_READ_N]), *su = slot(conn, p->coff[C_SENT_UNREAD]);
    if (rn == NULL || su == NULL || !PyLong_CheckExact(rn) || !PyLong_CheckExact(su)) {
        PyErr_SetString(PyExc_TypeError, "Connection.read_n/sent_unread");
        return -1;
    }
    unsigned long long prev = PyLong_AsUnsignedLongLongMask(rn);
    if (prev == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    uint32_t k = (n - (uint32_t)prev) & 0xFFFFFFFFu;
    PyObject *nv = PyLong_FromUnsignedLong(n);
    if (nv == NULL)
        return -1;
    slot_set(conn, p->coff[C_READ_N], nv);
    Py_ssize_t len = PyObject_Size(q);
    if (len < 0)
        return -1;
    if ((Py_ssize_t)k > len) {
        Py_INCREF(Py_None);
        slot_set(conn, p->coff[C_SENT_TS], Py_None);
        return 0;
    }
    if (k == 0)
        return 0;
    long long unread = PyLong_AsLongLong(su);
    if (unread == -1 && PyErr_Occurred())
        return -1;
    for (uint32_t i = 0; i < k; i++) {
        PyObject *ts = PyObject_CallMethodNoArgs(q, s_popleft);
        if (ts == NULL)
            return -1;
        long long v = PyLong_AsLongLong(ts);
        Py_DECREF(ts);
        if (v == -1 && PyErr_Occurred())
            return -1;
        unread -= v;
    }
    PyObject *uv = PyLong_FromLongLong(unread);
    if (uv == NULL)
        return -1;
    slot_set(conn, p->coff[C_SENT_UNREAD], uv);
    return 0;
}

/* Connection.sent(ts), inline */
static int conn_sent(Pump *p, PyObject *conn, PyObject *ts)
{
    PyObject *q = slot(conn, p->coff[C_SENT_TS]);
    if (q == NULL || q == Py_None)
        return 0;
    PyObject *r = PyObject_CallMethodOneArg(q, s_append, ts);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    PyObject *su = slot(conn, p->coff[C_SENT_UNREAD]);
    if (su == NULL) {
        PyErr_SetString(PyExc_AttributeError, "sent_unread");
        return -1;
    }
    PyObject *nv = PyNumber_Add(su, ts);
    if (nv == NULL)
        return -1;
    slot_set(conn, p->coff[C_SENT_UNREAD], nv);
    Py_ssize_t len = PyObject_Size(q);
    if (len < 0)
        return -1;
    if (len > p->sent_track_max) {
        Py_INCREF(Py_None);
        slot_set(conn, p->coff[C_SENT_TS], Py_None);
    }
    return 0;
}

/* Where a record of the common shape carries its datagram: its offset, or -1 when the
 * record is not of that shape (server._slow_record takes it). */
static Py_ssize_t common_shape(const char *b, Py_ssize_t n)
{
    if (n >= 4 && !zero4(b))
        return 0;                               /* a bare datagram */
    if (n < 8 || rd16(b + 6) != F_BATCH)
        return -1;
    Py_ssize_t o = 8;
    int reads = 0;
    while (o + 4 <= n) {
        Py_ssize_t len = rd32(b + o);
        Py_ssize_t start = o + 4, end = start + len;
        if (end > n)
            return -1;                          /* truncated: _batch says so */
        if (len >= 4 && !zero4(b + start))
            return end == n && reads ? start : -1;   /* the datagram, last */
        if (len < 8)
            return -1;
        uint16_t kind = rd16(b + start + 6);
        if (kind == F_READ && len >= 12)
            reads++;
        else if (!(kind == F_SETSOCKOPT && len >= 20))
            return -1;
        o = end;
    }
    return -1;                                  /* no datagram, or a truncated length */
}

static int deliver(Pump *p, PyObject *conn, PyObject *sock, const char *d, Py_ssize_t len);

/* Apply a record of the common shape (datagram at ``dg``). 0: go on; 1: the turn ends;
 * -1: an exception to leave the round with. */
static int apply_common(Pump *p, PyObject *conn, PyObject *sock, const char *b, Py_ssize_t n,
                        Py_ssize_t dg)
{
    Py_ssize_t o = 8;
    while (o + 4 < dg) {                        /* the frames before the datagram */
        Py_ssize_t len = rd32(b + o), start = o + 4;
        if (rd16(b + start + 6) == F_READ) {
            if (conn_read(p, conn, rd32(b + start + 8)) < 0)
                return event_error(p, conn);
        } else {                                /* SETSOCKOPT: =IIi */
            PyObject *level = PyLong_FromUnsignedLong(rd32(b + start + 8));
            PyObject *opt = PyLong_FromUnsignedLong(rd32(b + start + 12));
            PyObject *val = PyLong_FromLong((int32_t)rd32(b + start + 16));
            PyObject *r = NULL;
            if (level && opt && val) {
                PyObject *argv[5] = {p->kernel, sock, level, opt, val};
                r = PyObject_VectorcallMethod(s_setsockopt, argv,
                                              5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            }
            Py_XDECREF(level);
            Py_XDECREF(opt);
            Py_XDECREF(val);
            if (r == NULL) {
                if (!PyErr_ExceptionMatches(p->kernel_error))
                    return event_error(p, conn);
                PyErr_Clear();      /* the shim checked what it could (Server._control) */
            }
            Py_XDECREF(r);
        }
        o = start + len;
    }
    return deliver(p, conn, sock, b + dg, n - dg);
}

/* kernel.deliver(sock, datagram) as Server._deliver: 0, 1 (the turn ends), or -1 with an
 * exception to leave the round with */
static int deliver(Pump *p, PyObject *conn, PyObject *sock, const char *d, Py_ssize_t len)
{
    PyObject *rec = PyBytes_FromStringAndSize(d, len);
    if (rec == NULL)
        return event_error(p, conn);
    PyObject *argv[3] = {p->kernel, sock, rec};
    PyObject *r = PyObject_VectorcallMethod(s_deliver, argv, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                            NULL);
    int ret = 0;
    if (r != NULL) {
        Py_DECREF(r);
    } else if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        ret = -1;
    } else {                                    /* Server._deliver's except clause */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL && value != NULL)
            PyException_SetTraceback(value, tb);
        PyObject *a[5] = {p->server, conn, sock, rec, value ? value : Py_None};
        PyObject *r2 = PyObject_VectorcallMethod(s_deliver_failed, a,
                                                 5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        if (r2 == NULL)
            ret = event_error(p, conn);
        else
            Py_DECREF(r2);
    }
    Py_DECREF(rec);
    return ret;
}

/* server._in_step, after a record of the common shape: 1 when the turn ends without asking
 * for another record (the record's READ moved read_n from rn0 and left nothing unread,
 * nothing is held back, and its answers dropped nothing: sock.drops is still drops0),
 * 0 to go on, -1 with an exception. */
static int answered_in_step(Pump *p, PyObject *conn, PyObject *sock, PyObject *rn0,
                            PyObject *drops0)
{
    PyObject *ts = slot(conn, p->coff[C_SENT_TS]), *su = slot(conn, p->coff[C_SENT_UNREAD]);
    PyObject *pending = slot(conn, p->coff[C_PENDING]), *rn = slot(conn, p->coff[C_READ_N]);
    PyObject *drops = slot(sock, p->soff[S_DROPS]);
    if (ts == NULL || ts == Py_None || su == NULL || pending == NULL || rn == NULL
            || rn0 == NULL || drops == NULL || drops0 == NULL
            || slot(conn, p->coff[C_SOCK]) != sock)
        return 0;
    int t = PyObject_IsTrue(su);
    if (t)
        return t < 0 ? -1 : 0;
    t = PyObject_IsTrue(pending);
    if (t)
        return t < 0 ? -1 : 0;
    t = PyObject_RichCompareBool(rn, rn0, Py_NE);
    if (t <= 0)
        return t;
    return PyObject_RichCompareBool(drops, drops0, Py_EQ);
}

/* A record that starts with the connection's noted opening frames (``plen`` bytes, checked
 * by the caller) when they are one REOPEN op and one datagram ends the record: Server._batch's
 * replay and _deliver, and _slow_record's answer whether the turn goes on. 2: not this shape,
 * or replay_reopen declined having changed nothing (server._slow_record takes the record);
 * 0: go on; 1: the turn ends; -1: an exception to leave the round with. */
static int noted_line(Pump *p, PyObject *conn, PyObject *sock, const char *b, Py_ssize_t n,
                      Py_ssize_t plen)
{
    if (plen < 8 || plen + 8 > n || rd32(b + plen) != (uint32_t)(n - plen - 4)
            || zero4(b + plen + 4))
        return 2;
    PyObject *ops = slot(conn, p->coff[C_PREFIX_OPS]);
    if (ops == NULL || !PyList_CheckExact(ops) || PyList_GET_SIZE(ops) != 1)
        return 2;
    PyObject *op = PyList_GET_ITEM(ops, 0);
    int overflow = 1;
    if (!PyTuple_CheckExact(op) || PyTuple_GET_SIZE(op) != 3
            || !PyLong_CheckExact(PyTuple_GET_ITEM(op, 0))
            || PyLong_AsLongAndOverflow(PyTuple_GET_ITEM(op, 0), &overflow) != -1 || overflow)
        return 2;                                                   /* not server._REOPEN */
    /* what _slow_record notes before _dispatch: its answer after it */
    PyObject *sends0 = PyObject_GetAttr(p->server, s_sends);
    if (sends0 == NULL)
        return -1;
    PyObject *rn0 = Py_XNewRef(slot(conn, p->coff[C_READ_N]));
    PyObject *drops0 = Py_XNewRef(slot(sock, p->soff[S_DROPS]));
    PyObject *argv[9] = {NULL, conn, PyTuple_GET_ITEM(op, 1), NULL, NULL, NULL, p->dirty,
                         NULL, NULL};
    PyObject *names[4] = {s_namespaces, s_families, s_former_names, s_sock_ids};
    int ret = 0;
    int got = 1;
    for (int i = 0; i < 4 && got; i++)
        got = (argv[i < 3 ? 3 + i : 7] = PyObject_GetAttr(p->kernel, names[i])) != NULL;
    if (got)
        got = (argv[8] = PyObject_GetAttr(p->kernel, s_admin_uids)) != NULL;
    PyObject *done = NULL;
    if (got)
        done = PyObject_Vectorcall(p->replay, argv + 1, 8 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    for (int i = 3; i < 9; i++)
        if (i != 6)
            Py_XDECREF(argv[i]);
    if (done == NULL)
        ret = event_error(p, conn);             /* _slow_record's except clause */
    else if (done == Py_False)
        ret = 2;
    else if (done != NULL && done != Py_True) {
        PyErr_SetString(PyExc_TypeError, "replay_reopen returns a bool");
        ret = event_error(p, conn);
    }
    Py_XDECREF(done);
    if (ret == 0) {
        /* the socket was reopened in place: conn.sock is still sock */
        ret = deliver(p, conn, sock, b + plen + 4, n - plen - 4);
        if (ret == 0) {
            PyObject *sends = PyObject_GetAttr(p->server, s_sends);
            if (sends == NULL)
                ret = -1;
            else {
                int same = PyObject_RichCompareBool(sends, sends0, Py_EQ);
                Py_DECREF(sends);
                ret = same < 0 ? -1 : !same ? 1 : answered_in_step(p, conn, sock, rn0, drops0);
                if (ret < 0)
                    ret = event_error(p, conn);
            }
        }
    }
    Py_DECREF(sends0);
    Py_XDECREF(rn0);
    Py_XDECREF(drops0);
    return ret;
}

/* Whether conn is still the connection served on fd (Python: conn.fd in by_fd) */
static int still_open(Pump *p, PyObject *conn, PyObject *fdobj)
{
    PyObject *c = PyDict_GetItemWithError(p->by_fd, fdobj);
    if (c == NULL && PyErr_Occurred())
        return -1;
    return c != NULL;
}

/* Server._readable(conn) for a bound netlink connection. 0, or -1 with an exception. */
static int turn(Pump *p, PyObject *conn, PyObject *fdobj, int fd)
{
    char *b = p->buf;
    for (int i = 0; i < TURN_RECORDS; i++) {
        if (i) {
            int open = still_open(p, conn, fdobj);
            if (open <= 0)
                return open;
        }
        ssize_t n;
        do {
            n = recv(fd, b, (size_t)p->max_record, MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            /* _event: an OSError closes the connection */
            return call_server(p, s_close, conn, NULL);
        }
        if (n == 0)
            return call_server(p, s_close, conn, NULL);
        PyObject *sock = slot(conn, p->coff[C_SOCK]);
        PyObject *prefix = slot(conn, p->coff[C_PREFIX]);
        Py_ssize_t dg = -1;
        if (sock != NULL && Py_TYPE(sock) == (PyTypeObject *)p->sock_t
                && slot(conn, p->coff[C_KIND]) == p->netlink) {
            int noted = prefix != NULL && prefix != Py_None && PyBytes_CheckExact(prefix)
                && PyBytes_GET_SIZE(prefix) <= n
                && memcmp(PyBytes_AS_STRING(prefix), b, PyBytes_GET_SIZE(prefix)) == 0;
            if (noted && p->replay != NULL) {
                Py_INCREF(sock);
                int r = noted_line(p, conn, sock, b, n, PyBytes_GET_SIZE(prefix));
                Py_DECREF(sock);
                if (r < 2) {
                    if (r)
                        return r < 0 ? -1 : 0;
                    continue;
                }
            } else if (prefix == Py_None
                       || (prefix != NULL && PyBytes_CheckExact(prefix) && !noted))
                dg = common_shape(b, n);
        }
        if (dg >= 0) {
            Py_INCREF(sock);
            PyObject *rn0 = Py_XNewRef(slot(conn, p->coff[C_READ_N]));
            PyObject *drops0 = Py_XNewRef(slot(sock, p->soff[S_DROPS]));
            int r = apply_common(p, conn, sock, b, n, dg);
            if (r == 0) {
                r = answered_in_step(p, conn, sock, rn0, drops0);
                if (r < 0)
                    r = event_error(p, conn);      /* as _readable's raise in _event */
            }
            Py_XDECREF(rn0);
            Py_XDECREF(drops0);
            Py_DECREF(sock);
            if (r)
                return r < 0 ? -1 : 0;
            continue;
        }
        PyObject *rec = PyBytes_FromStringAndSize(b, n);
        if (rec == NULL)
            return -1;
        PyObject *argv[3] = {p->server, conn, rec};
        PyObject *r = PyObject_VectorcallMethod(s_slow_record, argv,
                                                3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_DECREF(rec);
        if (r == NULL)
            return -1;
        int go_on = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (go_on <= 0)
            return go_on;
    }
    return 0;
}

static PyObject *Pump_round(Pump *p, PyObject *arg)
{
    if (!ready(p))
        return NULL;
    double timeout = PyFloat_AsDouble(arg);
    if (timeout == -1.0 && PyErr_Occurred())
        return NULL;
    int ms;
    if (timeout < 0)
        ms = -1;
    else {
        double t = ceil(timeout * 1e3);
        ms = t > (double)INT_MAX ? INT_MAX : (int)t;
    }
    struct epoll_event evs[MAX_EVENTS];
    int n;
    if (ms == 0) {
        n = epoll_wait(p->epfd, evs, MAX_EVENTS, 0);
    } else {
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(p->epfd, evs, MAX_EVENTS, ms);
        Py_END_ALLOW_THREADS
    }
    if (n < 0) {
        if (errno == EINTR)
            return PyLong_FromLong(0);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        uint32_t ev = evs[i].events;
        if (fd == p->lfd) {
            if (call_server(p, s_accept, NULL, NULL) < 0)
                return NULL;
            continue;
        }
        if (fd == p->wakefd)
            return PyLong_FromLong(-1);
        PyObject *fdobj = PyLong_FromLong(fd);
        if (fdobj == NULL)
            return NULL;
        PyObject *conn = PyDict_GetItemWithError(p->by_fd, fdobj);
        int r;
        if (conn == NULL) {
            r = PyErr_Occurred() ? -1 : call_server(p, s_other_event, fdobj, NULL);
        } else {
            Py_INCREF(conn);
            if (ev == EPOLLIN && Py_TYPE(conn) == (PyTypeObject *)p->conn_t
                    && slot(conn, p->coff[C_KIND]) == p->netlink) {
                r = turn(p, conn, fdobj, fd);
            } else {
                PyObject *evobj = PyLong_FromUnsignedLong(ev);
                r = evobj ? call_server(p, s_event, conn, evobj) : -1;
                Py_XDECREF(evobj);
            }
            Py_DECREF(conn);
        }
        Py_DECREF(fdobj);
        if (r < 0)
            return NULL;
    }
    return PyLong_FromLong(n);
}

/* Server._flush(conn) when nothing is held back: the socket's queue goes out. 0 or -1. */
static int flush_conn(Pump *p, PyObject *conn, PyObject *sock, int fd)
{
    for (;;) {
        PyObject *rx = slot(sock, p->soff[S_RX]), *rxt = slot(sock, p->soff[S_RX_TRUESIZE]);
        if (rx == NULL || rxt == NULL) {
            PyErr_SetString(PyExc_AttributeError, "NetlinkSocket.rx");
            return -1;
        }
        int any = PyObject_IsTrue(rx);
        if (any <= 0)
            return any;
        /* pop_skb, inline */
        PyObject *d = PyObject_CallMethodNoArgs(rx, s_popleft);
        if (d == NULL)
            return -1;
        PyObject *ts = PyObject_CallMethodNoArgs(rxt, s_popleft);
        if (ts == NULL) {
            Py_DECREF(d);
            return -1;
        }
        PyObject *rb = slot(sock, p->soff[S_RX_BYTES]), *oq = slot(sock, p->soff[S_OUTQ]);
        PyObject *nrb = rb ? PyNumber_Subtract(rb, ts) : NULL;
        PyObject *noq = nrb && oq ? PyNumber_Add(oq, ts) : NULL;
        if (noq == NULL || !PyBytes_Check(d)) {
            if (noq != NULL && !PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "a queued datagram is bytes");
            Py_XDECREF(nrb);
            Py_XDECREF(noq);
            Py_DECREF(d);
            Py_DECREF(ts);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_AttributeError, "NetlinkSocket.rx_bytes/outq");
            return -1;
        }
        slot_set(sock, p->soff[S_RX_BYTES], nrb);
        slot_set(sock, p->soff[S_OUTQ], noq);
        ssize_t w;
        do {
            w = send(fd, PyBytes_AS_STRING(d), PyBytes_GET_SIZE(d), MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (w < 0 && errno == EINTR);
        int r = 0;
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* _hold, then _want_out(conn, True) */
                PyObject *argv[4] = {p->server, conn, d, ts};
                PyObject *h = PyObject_VectorcallMethod(s_hold, argv,
                                                        4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
                r = h == NULL ? -1 : call_server(p, s_want_out, conn, Py_True);
                Py_XDECREF(h);
                r = r < 0 ? -1 : 1;
            } else {
                r = 1;                  /* the peer went away; the read side will notice */
            }
        } else {
            int t = PyObject_IsTrue(ts);
            r = t < 0 ? -1 : t ? conn_sent(p, conn, ts) : 0;
        }
        Py_DECREF(d);
        Py_DECREF(ts);
        if (r)
            return r < 0 ? -1 : 0;
    }
}

static PyObject *Pump_flush(Pump *p, PyObject *noargs)
{
    if (!ready(p))
        return NULL;
    PyObject *dirty = p->dirty, *list;
    Py_ssize_t size = PySet_GET_SIZE(dirty);
    if (size == 0)
        Py_RETURN_NONE;
    if (size == 1) {            /* list(dirty) and dirty.clear() of the usual one socket */
        PyObject *only = PySet_Pop(dirty);
        if (only == NULL)
            return NULL;
        list = PyList_New(1);
        if (list == NULL) {
            Py_DECREF(only);
            return NULL;
        }
        PyList_SET_ITEM(list, 0, only);
    } else {
        list = PySequence_List(dirty);
        if (list == NULL || PySet_Clear(dirty) < 0) {
            Py_XDECREF(list);
            return NULL;
        }
    }
    Py_ssize_t n = PyList_GET_SIZE(list);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = PyDict_GetItemWithError(p->conns, PyList_GET_ITEM(list, i));
        if (c == NULL) {
            if (PyErr_Occurred())
                goto fail;
            continue;
        }
        Py_INCREF(c);
        int r = 0;
        if (Py_TYPE(c) != (PyTypeObject *)p->conn_t) {
            r = -2;
        } else {
            PyObject *out = slot(c, p->coff[C_OUT]), *pending = slot(c, p->coff[C_PENDING]);
            PyObject *sock = slot(c, p->coff[C_SOCK]), *fdobj = slot(c, p->coff[C_FD]);
            if (out == Py_True) {
                r = 0;                   /* EPOLLOUT sends it */
            } else if (out != Py_False || pending == NULL || fdobj == NULL
                       || !PyLong_CheckExact(fdobj)) {
                r = -2;
            } else {
                Py_ssize_t held = PyObject_Size(pending);
                if (held != 0) {
                    r = held < 0 ? -1 : -2;
                } else if (sock == NULL || sock == Py_None) {
                    r = 0;               /* nothing to send */
                } else if (Py_TYPE(sock) != (PyTypeObject *)p->sock_t) {
                    r = -2;
                } else {
                    long fd = PyLong_AsLong(fdobj);
                    Py_INCREF(sock);
                    r = fd < 0 ? -1 : flush_conn(p, c, sock, (int)fd);
                    Py_DECREF(sock);
                }
            }
        }
        if (r == -2) {                   /* Server._flush takes it */
            int t = PyObject_IsTrue(slot(c, p->coff[C_OUT]) ? slot(c, p->coff[C_OUT]) : Py_False);
            r = t < 0 ? -1 : t ? 0 : call_server(p, s_flush, c, NULL);
        }
        Py_DECREF(c);
        if (r < 0)
            goto fail;
    }
    Py_DECREF(list);
    Py_RETURN_NONE;
fail:
    Py_DECREF(list);
    return NULL;
}

/* Whether a rare part of a round's end has work: a process exited, a connection is
 * silent or closed, the listener rests. -1 with an exception. */
static int round_end_busy(Pump *p, int exited)
{
    if ((exited && PyList_GET_SIZE(p->exited)) || PyList_GET_SIZE(p->closing))
        return 1;
    int q = PyObject_IsTrue(p->unhello);
    if (q)
        return q;
    PyObject *ar = PyObject_GetAttr(p->server, s_accept_resume);
    if (ar == NULL)
        return -1;
    int t = PyObject_IsTrue(ar);
    Py_DECREF(ar);
    return t;
}

/* Server._round_end(self.flush) for the usual round: nothing exited, no timer due, no
 * silent or closed connection, the listener listening; anything else is the Python's. */
static PyObject *Pump_end(Pump *p, PyObject *noargs)
{
    if (!ready(p))
        return NULL;
    int busy = round_end_busy(p, 1);
    if (busy < 0)
        return NULL;
    double deadline = 0.0, now = 0.0;
    int have = 0;
    if (!busy && PyList_GET_SIZE(p->timers)) {
        /* k.next_deadline() when the first timer is live; a cancelled one is popped by it */
        PyObject *top = PyList_GET_ITEM(p->timers, 0);
        if (!PyTuple_CheckExact(top) || PyTuple_GET_SIZE(top) < 3
                || !PyFloat_CheckExact(PyTuple_GET_ITEM(top, 0))) {
            busy = 1;
        } else {
            PyObject *c = PyObject_GetAttr(PyTuple_GET_ITEM(top, 2), s_cancelled);
            if (c == NULL)
                return NULL;
            busy = PyObject_IsTrue(c);
            Py_DECREF(c);
            if (busy < 0)
                return NULL;
            if (!busy) {
                deadline = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(top, 0));
                have = 1;
                PyObject *argv[1] = {p->clock};
                PyObject *t = PyObject_VectorcallMethod(s_now, argv,
                                                        1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
                if (t == NULL)
                    return NULL;
                now = PyFloat_AsDouble(t);
                Py_DECREF(t);
                if (now == -1.0 && PyErr_Occurred())
                    return NULL;
                busy = deadline <= now;          /* due: run_timers */
            }
        }
    }
    if (busy) {
        PyObject *flush = PyObject_GetAttrString((PyObject *)p, "flush");
        if (flush == NULL)
            return NULL;
        PyObject *argv[2] = {p->server, flush};
        PyObject *r = PyObject_VectorcallMethod(s_round_end, argv,
                                                2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_DECREF(flush);
        return r;
    }
    PyObject *r = Pump_flush(p, NULL);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    busy = round_end_busy(p, 0);          /* the flush may have closed a connection */
    if (busy < 0)
        return NULL;
    if (busy) {
        PyObject *d = have ? PyFloat_FromDouble(deadline) : Py_NewRef(Py_None);
        PyObject *n = d ? PyFloat_FromDouble(now) : NULL;
        PyObject *argv[3] = {p->server, d, n};
        PyObject *t = n ? PyObject_VectorcallMethod(s_round_after, argv,
                                                    3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL)
                        : NULL;
        Py_XDECREF(d);
        Py_XDECREF(n);
        return t;
    }
    if (!have)
        return PyFloat_FromDouble(-1.0);
    double t = deadline - now;
    return PyFloat_FromDouble(t < 0.0 ? 0.0 : t > p->max_poll ? p->max_poll : t);
}

static PyMethodDef Pump_methods[] = {
    {"round", (PyCFunction)Pump_round, METH_O,
     "round(timeout) -> events: epoll_wait (seconds, < 0: no timeout) and serve them; -1: the "
     "wake pipe"},
    {"flush", (PyCFunction)Pump_flush, METH_NOARGS,
     "flush(): Server._after_kernel_work"},
    {"end", (PyCFunction)Pump_end, METH_NOARGS,
     "end() -> timeout: Server._round_end(self.flush), the next round's epoll timeout"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PumpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "xfrmd._transport.Pump",
    .tp_basicsize = sizeof(Pump),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The C half of Server's reactor round (xfrmd/_transport.c)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Pump_init,
    .tp_dealloc = (destructor)Pump_dealloc,
    .tp_traverse = (traverseproc)Pump_traverse,
    .tp_clear = (inquiry)Pump_clear,
    .tp_methods = Pump_methods,
};

static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_transport",
                                 "The C half of the server's reactor round", -1, NULL};

PyMODINIT_FUNC PyInit__transport(void)
{
    struct { PyObject **p; const char *s; } names[] = {
        {&s_accept, "_accept"}, {&s_event, "_event"}, {&s_other_event, "_other_event"},
        {&s_close, "_close"}, {&s_slow_record, "_slow_record"},
        {&s_event_error, "_event_error"}, {&s_deliver_failed, "_deliver_failed"},
        {&s_deliver, "deliver"}, {&s_namespaces, "namespaces"}, {&s_families, "families"},
        {&s_former_names, "former_names"}, {&s_sock_ids, "_sock_ids"},
        {&s_admin_uids, "admin_uids"}, {&s_sends, "_sends"}, {&s_setsockopt, "setsockopt"},
        {&s_flush, "_flush"},
        {&s_hold, "_hold"}, {&s_want_out, "_want_out"}, {&s_dirty, "dirty"},
        {&s_popleft, "popleft"}, {&s_append, "append"}, {&s_now, "now"},
        {&s_round_end, "_round_end"}, {&s_round_after, "_round_after"},
        {&s_accept_resume, "_accept_resume"}, {&s_cancelled, "cancelled"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].p = PyUnicode_InternFromString(names[i].s)) == NULL)
            return NULL;
    if (PyType_Ready(&PumpType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&mod);
    if (m == NULL)
        return NULL;
    Py_INCREF(&PumpType);
    if (PyModule_AddObject(m, "Pump", (PyObject *)&PumpType) < 0) {
        Py_DECREF(&PumpType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
