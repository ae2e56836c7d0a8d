/*
 * _rcvfast: the framework of one NETLINK_XFRM request in C, for its common case
 * (docs/performance.md, "The XFRM request framework in C"). The Python stays the reference:
 *
 *   Kernel.deliver          xfrmd/kernel.py      (autobind, the count, the "tx" tracers)
 *   netlink_rcv_skb         xfrmd/netlink/core.py (af_netlink.c netlink_rcv_skb)
 *   netlink_rcv_msg         xfrmd/netlink/core.py (the request, the handler, the ACK)
 *   XfrmUser.rcv_msg        xfrmd/xfrm/user.py   (xfrm_user.c xfrm_user_rcv_msg)
 *   encode_ack              netlink_codec/netlink.py encode_ack_py (netlink_ack, no extack)
 *   Kernel.unicast + NetlinkSocket.queue (netlink_unicast of the ACK, when it fits)
 *
 * Deliver(kernel, slow) is what Kernel.deliver becomes on a kernel with the XFRM family
 * (xfrmd/xfrm/user.py installs it as the instance's ``deliver``): ``deliver(sock,
 * datagram)``. A datagram is taken here only when, checked before anything changes,
 *   the socket is a bound NetlinkSocket of NETLINK_XFRM with CAP_NET_ADMIN, the family is
 *   the XfrmUser whose rcv_msg is the one set up, no fault rule is set, the tracers are a
 *   list; the datagram (bytes) holds exactly one message (what follows it is shorter than
 *   a header), with NLM_F_REQUEST, of an XFRM type up to XFRM_MSG_MAX that has a doit and
 *   is not a dump request, not NEWSPDINFO (its own attribute policy), long enough for its
 *   fixed part; its attributes pass the family's Parser (the one attr_parser built: the
 *   same C walk and checks) without an error; SA_DIR / SA_PCPU only where they are allowed.
 * Anything else is ``slow(kernel, sock, datagram)``: the Python Kernel.deliver, unchanged.
 *
 * Then, as the Python does, in its order: stats.datagrams += 1, the tracers' "tx",
 * sock.reply_dropped = False, the XfrmRequest (its six slots set), the handler. Its outcome:
 *   an exception (Exception)  handler_failed(kernel, sock, hdr, exc) makes the Reply
 *                             (core.py: KernelError -> error_reply, else internal_error);
 *                             a BaseException that is not an Exception goes up, as there;
 *   DUMP_STARTED              nothing more;
 *   a Reply (exactly) without ext and echo, its error an int, no reply dropped:
 *                             the ACK (if asked or an error) is built here and queued here
 *                             when it fits (rx, rx_truesize, rx_bytes, the dirty set, the
 *                             tracers' "rx"); when it does not, Kernel.unicast is called;
 *   anything else             netlink_rcv_done(kernel, sock, buf, hdr, outcome) (core.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include "../_slots.h"      /* learn_offsets */
#include <stdint.h>
#include <string.h>

#define NLMSG_HDRLEN 16
#define NLMSG_MIN_TYPE 0x10
#define NLMSG_ERROR 2
#define NLM_F_REQUEST 0x1
#define NLM_F_ACK 0x4
#define NLM_F_DUMP 0x300
#define NLM_F_CAPPED 0x100
#define NETLINK_XFRM 6
#define MAX_TYPES 256
#define ALIGN4(n) (((n) + 3) & ~(Py_ssize_t)3)

/* NetlinkSocket, XfrmRequest and Reply slots, read and written at their offsets (objects of
 * exactly those classes only) */
enum { S_PROTOCOL, S_BOUND, S_CAP_NET_ADMIN, S_PORTID, S_CAP_ACK, S_CLOSED, S_REPLY_DROPPED,
       S_RX, S_RX_TRUESIZE, S_RX_BYTES, S_OUTQ, S_CONGESTED, S_RCVBUF, S_N };
static const char *sock_slots[S_N] = {
    "protocol", "bound", "cap_net_admin", "portid", "cap_ack", "closed", "reply_dropped",
    "rx", "rx_truesize", "rx_bytes", "outq", "congested", "rcvbuf"};
enum { R_KERNEL, R_SOCK, R_BUF, R_HDR, R_ATTRS, R_WARNING, R_N };
static const char *req_slots[R_N] = {"kernel", "sock", "buf", "hdr", "attrs", "warning"};
enum { P_ERROR, P_EXT, P_ECHO, P_N };
static const char *reply_slots[P_N] = {"error", "ext", "echo"};

static Py_ssize_t soff[S_N], roff[R_N], poff[P_N];

/* set by setup() */
static PyObject *sock_t, *req_t, *header_t, *reply_t, *family_t, *family_rcv_msg,
    *dump_started, *handler_failed, *rcv_done, *parser, *one, *deque_t, *deque_append;
static PyObject *key_sa_dir, *key_sa_pcpu;
static long msg_max, newspdinfo, acquire;
static int32_t msg_min[MAX_TYPES];          /* -1: no entry (the Python raises KeyError) */
static unsigned char dumpable[MAX_TYPES], sa_pcpu_ok[MAX_TYPES];
static int ready;

static PyObject *s_families, *s_faults, *s_rules, *s_tracers, *s_stats, *s_datagrams,
    *s_dirty, *s_doit, *s_rcv_msg, *s_append, *s_unicast, *s_tx, *s_rx;

static inline PyObject *slot(PyObject *o, Py_ssize_t off)        /* borrowed, maybe NULL */
{
    return *(PyObject **)((char *)o + off);
}

static inline void set_slot(PyObject *o, Py_ssize_t off, PyObject *v)   /* steals v */
{
    PyObject **p = (PyObject **)((char *)o + off);
    PyObject *old = *p;
    *p = v;
    Py_XDECREF(old);
}

static uint16_t get_u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static void put_u16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }

/* An instance's __dict__ (borrowed), or NULL. The attributes read here are plain instance
 * attributes (no class of theirs has a descriptor of the name): looking them up in the
 * instance's dict is what getattr finds, without the generic getattr's type walk. */
static PyObject *dict_of(PyObject *o)
{
    PyObject **dp = _PyObject_GetDictPtr(o);
    return dp != NULL && *dp != NULL && PyDict_CheckExact(*dp) ? *dp : NULL;
}

/* ``o.name`` when it is an instance attribute of the exact type ``want`` (any if NULL): a
 * new reference, else NULL with no exception */
static PyObject *iattr(PyObject *dict, PyObject *name, PyTypeObject *want)
{
    PyObject *v = dict != NULL ? PyDict_GetItemWithError(dict, name) : NULL;
    if (v == NULL || (want != NULL && !Py_IS_TYPE(v, want))) {
        PyErr_Clear();
        return NULL;
    }
    return Py_NewRef(v);
}

/* skb_truesize (xfrmd/netlink/socket.py) of an skb of ``size`` bytes */
static Py_ssize_t skb_truesize(Py_ssize_t size)
{
    Py_ssize_t need = ((size + 63) & ~(Py_ssize_t)63) + 320;
    if (need <= 576)
        return 576 + 256;
    Py_ssize_t p = 1;
    while (p < need)
        p <<= 1;
    return p + 256;
}

/* the "tx"/"rx" tracers: ``for t in kernel.tracers: t(what, sock, datagram)`` (the list as
 * the loop finds it at each step) */
static int run_tracers(PyObject *tracers, PyObject *what, PyObject *sock, PyObject *dg)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tracers); i++) {
        PyObject *t = PyList_GET_ITEM(tracers, i);
        PyObject *argv[3] = {what, sock, dg};
        Py_INCREF(t);
        PyObject *r = PyObject_Vectorcall(t, argv, 3, NULL);
        Py_DECREF(t);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* A long slot as a Py_ssize_t; -1 when it is not an exact int that fits (then: Python) */
static Py_ssize_t int_slot(PyObject *o, Py_ssize_t off)
{
    PyObject *v = slot(o, off);
    if (v == NULL || !PyLong_CheckExact(v))
        return -1;
    Py_ssize_t n = PyLong_AsSsize_t(v);
    if (n == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return n;
}

typedef struct {
    PyObject_HEAD
    PyObject *kernel, *slow;
    vectorcallfunc vectorcall;
} Deliver;

/* Kernel.unicast(sock, ack) with NetlinkSocket.queue inline: 0 done, -1 an exception */
static int unicast(Deliver *d, PyObject *sock, PyObject *ack, PyObject *tracers, PyObject *dirty)
{
    int closed = PyObject_IsTrue(slot(sock, soff[S_CLOSED]));
    if (closed)
        return closed < 0 ? -1 : 0;
    Py_ssize_t ts = PyBytes_GET_SIZE(ack) <= 256 ? 576 + 256 : skb_truesize(PyBytes_GET_SIZE(ack));
    Py_ssize_t rx_bytes = int_slot(sock, soff[S_RX_BYTES]), outq = int_slot(sock, soff[S_OUTQ]);
    Py_ssize_t rcvbuf = int_slot(sock, soff[S_RCVBUF]);
    PyObject *congested = slot(sock, soff[S_CONGESTED]);
    PyObject *rx = slot(sock, soff[S_RX]), *rxt = slot(sock, soff[S_RX_TRUESIZE]);
    if (rx_bytes >= 0 && outq >= 0 && rcvbuf >= 0 && congested == Py_False
            && rx != NULL && Py_IS_TYPE(rx, (PyTypeObject *)deque_t)
            && rxt != NULL && Py_IS_TYPE(rxt, (PyTypeObject *)deque_t)) {
        Py_ssize_t rmem = rx_bytes + outq + ts;
        if (rmem == ts || rmem <= rcvbuf) {     /* fits: queue() appends */
            PyObject *tso = PyLong_FromSsize_t(ts), *nb = PyLong_FromSsize_t(rx_bytes + ts);
            if (tso == NULL || nb == NULL) {
                Py_XDECREF(tso);
                Py_XDECREF(nb);
                return -1;
            }
            PyObject *a1[2] = {slot(sock, soff[S_RX]), ack};
            PyObject *r = PyObject_Vectorcall(deque_append, a1, 2, NULL);
            if (r == NULL) {
                Py_DECREF(tso);
                Py_DECREF(nb);
                return -1;
            }
            Py_DECREF(r);
            PyObject *a2[2] = {slot(sock, soff[S_RX_TRUESIZE]), tso};
            r = PyObject_Vectorcall(deque_append, a2, 2, NULL);
            Py_DECREF(tso);
            if (r == NULL) {
                Py_DECREF(nb);
                return -1;
            }
            Py_DECREF(r);
            set_slot(sock, soff[S_RX_BYTES], nb);
            if (PySet_Add(dirty, sock) < 0)
                return -1;
            return run_tracers(tracers, s_rx, sock, ack);
        }
    }
    /* no room at first sight (or an unusual socket): the Python decides (_room, overrun) */
    PyObject *argv[3] = {d->kernel, sock, ack};
    PyObject *r = PyObject_VectorcallMethod(s_unicast, argv, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* encode_ack(buf, hdr, error, portid, cap_ack=cap_ack) without extended ACK: the header
 * echoed (NLM_F_CAPPED) on success or with NETLINK_CAP_ACK, else the whole message */
static PyObject *encode_ack(const unsigned char *msg, uint32_t len, int32_t error,
                            uint32_t portid, int cap_ack)
{
    uint16_t flags = 0;
    Py_ssize_t echoed = len;
    if (error == 0 || cap_ack) {
        flags |= NLM_F_CAPPED;
        echoed = NLMSG_HDRLEN;
    }
    Py_ssize_t n = NLMSG_HDRLEN + ALIGN4(4 + echoed);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    memset(o, 0, n);
    put_u32(o, (uint32_t)n);
    put_u16(o + 4, NLMSG_ERROR);
    put_u16(o + 6, flags);
    memcpy(o + 8, msg + 8, 4);                  /* the request's seq */
    put_u32(o + 12, portid);
    memcpy(o + 16, &error, 4);
    memcpy(o + 20, msg, echoed);
    return out;
}

/* A Header tuple (len, type, flags, seq, pid, offset 0) */
static PyObject *make_header(const unsigned char *h)
{
    PyObject *items[6] = {
        PyLong_FromUnsignedLong(get_u32(h)), PyLong_FromLong(get_u16(h + 4)),
        PyLong_FromLong(get_u16(h + 6)), PyLong_FromUnsignedLong(get_u32(h + 8)),
        PyLong_FromUnsignedLong(get_u32(h + 12)), PyLong_FromLong(0)};
    PyObject *t = ((PyTypeObject *)header_t)->tp_alloc((PyTypeObject *)header_t, 6);
    for (int i = 0; i < 6; i++) {
        if (t == NULL || items[i] == NULL) {
            for (int j = i; j < 6; j++)
                Py_XDECREF(items[j]);
            Py_XDECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, items[i]);
    }
    return t;
}

/* The request's outcome, after the handler: 0 or -1 (an exception) */
static int finish(Deliver *d, PyObject *sock, PyObject *dg, PyObject *hdr, PyObject *outcome,
                  PyObject *tracers, PyObject *dirty)
{
    const unsigned char *msg = (const unsigned char *)PyBytes_AS_STRING(dg);
    if (outcome == dump_started)
        return 0;
    if (Py_IS_TYPE(outcome, (PyTypeObject *)reply_t)
            && slot(outcome, poff[P_EXT]) == Py_None && slot(outcome, poff[P_ECHO]) == Py_None
            && slot(sock, soff[S_REPLY_DROPPED]) == Py_False) {
        PyObject *e = slot(outcome, poff[P_ERROR]);
        int overflow = 0;
        long error = e != NULL && PyLong_CheckExact(e) ? PyLong_AsLongAndOverflow(e, &overflow) : 1;
        PyObject *port = slot(sock, soff[S_PORTID]);
        unsigned long portid = port != NULL && PyLong_CheckExact(port) ? PyLong_AsUnsignedLong(port)
                                                                        : (unsigned long)-1;
        PyErr_Clear();
        if (e != NULL && PyLong_CheckExact(e) && !overflow && error <= 0 && error >= INT32_MIN
                && portid <= UINT32_MAX) {
            if (error == 0 && !(get_u16(msg + 6) & NLM_F_ACK))
                return 0;                       /* no ACK asked, none owed */
            int cap_ack = PyObject_IsTrue(slot(sock, soff[S_CAP_ACK]));
            if (cap_ack < 0)
                return -1;
            PyObject *ack = encode_ack(msg, get_u32(msg), (int32_t)error, (uint32_t)portid,
                                       cap_ack);
            if (ack == NULL)
                return -1;
            int r = unicast(d, sock, ack, tracers, dirty);
            Py_DECREF(ack);
            return r;
        }
    }
    PyObject *argv[5] = {d->kernel, sock, dg, hdr, outcome};
    PyObject *r = PyObject_Vectorcall(rcv_done, argv, 5, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *call_slow(Deliver *d, PyObject *const *args)
{
    PyObject *argv[3] = {d->kernel, args[0], args[1]};
    return PyObject_Vectorcall(d->slow, argv, 3, NULL);
}

/* The checks before anything changes: the handler (a new reference) and the parse's
 * tb and warning (new references), or NULL for the Python path (no exception set). */
static PyObject *
take(Deliver *d, PyObject *sock, PyObject *dg, PyObject *fd, PyObject **tb, PyObject **warn)
{
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(dg);
    Py_ssize_t total = PyBytes_GET_SIZE(dg);
    if (total < NLMSG_HDRLEN)
        return NULL;
    uint32_t len = get_u32(b);
    uint16_t type = get_u16(b + 4), flags = get_u16(b + 6);
    if (len < NLMSG_HDRLEN || len > total || total - ALIGN4((Py_ssize_t)len) >= NLMSG_HDRLEN)
        return NULL;                            /* none, or more than one message */
    if (!(flags & NLM_F_REQUEST) || type < NLMSG_MIN_TYPE || type > msg_max
            || type == newspdinfo || (dumpable[type] && (flags & NLM_F_DUMP)))
        return NULL;
    int32_t min_len = msg_min[type];
    if (min_len < 0 || (Py_ssize_t)len - NLMSG_HDRLEN < min_len)
        return NULL;
    if (slot(sock, soff[S_CAP_NET_ADMIN]) != Py_True)
        return NULL;
    /* the family's Parser, as XfrmUser.rcv_msg calls it */
    PyObject *args[4] = {
        dg, PyLong_FromSsize_t(NLMSG_HDRLEN + ALIGN4((Py_ssize_t)min_len)),
        PyLong_FromSsize_t(len), PyLong_FromLong(0)};
    PyObject *res = NULL;
    if (args[1] != NULL && args[2] != NULL && args[3] != NULL)
        res = PyObject_Vectorcall(parser, args, 4, NULL);
    Py_XDECREF(args[1]);
    Py_XDECREF(args[2]);
    Py_XDECREF(args[3]);
    if (res == NULL || !PyTuple_CheckExact(res) || PyTuple_GET_SIZE(res) != 3
            || !PyDict_CheckExact(PyTuple_GET_ITEM(res, 0))
            || PyTuple_GET_ITEM(res, 1) != Py_None) {
        PyErr_Clear();                          /* the Python path parses it again */
        Py_XDECREF(res);
        return NULL;
    }
    PyObject *t = PyTuple_GET_ITEM(res, 0);
    int has_dir = PyDict_Contains(t, key_sa_dir), has_pcpu = PyDict_Contains(t, key_sa_pcpu);
    if (has_dir < 0 || has_pcpu < 0 || ((has_dir || has_pcpu) &&
            (!sa_pcpu_ok[type] || (type == acquire && has_dir)))) {
        PyErr_Clear();
        Py_DECREF(res);
        return NULL;                            /* _reject_unused_attr raises */
    }
    PyObject *doits = iattr(fd, s_doit, &PyDict_Type), *doit = NULL;
    if (doits != NULL) {
        PyObject *k = PyLong_FromLong(type);
        doit = k ? PyDict_GetItemWithError(doits, k) : NULL;
        Py_XDECREF(k);
        Py_XINCREF(doit);
    }
    Py_XDECREF(doits);
    PyErr_Clear();
    if (doit == NULL || doit == Py_None) {
        Py_XDECREF(doit);
        Py_DECREF(res);
        return NULL;
    }
    *tb = Py_NewRef(t);
    *warn = Py_NewRef(PyTuple_GET_ITEM(res, 2));
    Py_DECREF(res);
    return doit;
}

static PyObject *
deliver_vectorcall(PyObject *self_, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Deliver *d = (Deliver *)self_;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "deliver(sock, datagram)");
        return NULL;
    }
    PyObject *sock = args[0], *dg = args[1], *kernel = d->kernel;
    if (!ready || !Py_IS_TYPE(sock, (PyTypeObject *)sock_t) || !PyBytes_CheckExact(dg)
            || slot(sock, soff[S_BOUND]) != Py_True || slot(sock, soff[S_CLOSED]) == NULL
            || slot(sock, soff[S_CAP_ACK]) == NULL)
        return call_slow(d, args);
    PyObject *proto = slot(sock, soff[S_PROTOCOL]);
    if (proto == NULL || !PyLong_CheckExact(proto) || PyLong_AsLong(proto) != NETLINK_XFRM) {
        PyErr_Clear();
        return call_slow(d, args);
    }
    PyObject *kd = dict_of(kernel), *fd;
    PyObject *families = iattr(kd, s_families, &PyDict_Type), *family = NULL;
    PyObject *faults = iattr(kd, s_faults, NULL), *rules = NULL;
    PyObject *tracers = iattr(kd, s_tracers, &PyList_Type);
    PyObject *dirty = iattr(kd, s_dirty, &PySet_Type);
    PyObject *stats = iattr(kd, s_stats, NULL), *sd;
    PyObject *doit = NULL, *tb = NULL, *warn = NULL, *hdr = NULL, *req = NULL, *out = NULL;
    PyObject *ret = NULL;
    if (families == NULL || faults == NULL || tracers == NULL || dirty == NULL || stats == NULL)
        goto slow;
    family = PyDict_GetItemWithError(families, proto);
    Py_XINCREF(family);
    if (family == NULL || !Py_IS_TYPE(family, (PyTypeObject *)family_t))
        goto slow;
    /* XfrmUser.rcv_msg, not a replacement (a test's, on the class or the instance) */
    fd = dict_of(family);
    if (fd == NULL || _PyType_Lookup(Py_TYPE(family), s_rcv_msg) != family_rcv_msg
            || PyDict_GetItemWithError(fd, s_rcv_msg) != NULL)
        goto slow;
    rules = iattr(dict_of(faults), s_rules, NULL);
    if (rules == NULL)
        goto slow;
    int any = PyObject_IsTrue(rules);
    if (any != 0)
        goto slow;
    sd = dict_of(stats);
    if (sd == NULL)
        goto slow;
    doit = take(d, sock, dg, fd, &tb, &warn);
    if (doit == NULL)
        goto slow;

    /* -- committed: what Kernel.deliver and netlink_rcv_msg do, in their order -- */
    {
        PyObject *n = PyDict_GetItemWithError(sd, s_datagrams), *n1 = NULL;
        if (n != NULL)
            n1 = PyNumber_InPlaceAdd(n, one);
        else if (!PyErr_Occurred())
            PyErr_SetObject(PyExc_AttributeError, s_datagrams);
        if (n1 == NULL)
            goto done;
        int r = PyDict_SetItem(sd, s_datagrams, n1);
        Py_DECREF(n1);
        if (r < 0)
            goto done;
    }
    if (run_tracers(tracers, s_tx, sock, dg) < 0)
        goto done;
    set_slot(sock, soff[S_REPLY_DROPPED], Py_NewRef(Py_False));
    hdr = make_header((const unsigned char *)PyBytes_AS_STRING(dg));
    if (hdr == NULL)
        goto done;
    req = ((PyTypeObject *)req_t)->tp_alloc((PyTypeObject *)req_t, 0);
    if (req == NULL)
        goto done;
    set_slot(req, roff[R_KERNEL], Py_NewRef(kernel));
    set_slot(req, roff[R_SOCK], Py_NewRef(sock));
    set_slot(req, roff[R_BUF], Py_NewRef(dg));
    set_slot(req, roff[R_HDR], Py_NewRef(hdr));
    set_slot(req, roff[R_ATTRS], Py_NewRef(tb));
    set_slot(req, roff[R_WARNING], Py_NewRef(warn));
    out = PyObject_Vectorcall(doit, &req, 1, NULL);
    Py_CLEAR(req);
    if (out == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            goto done;                          /* not netlink_rcv_msg's to catch */
        PyObject *type, *value, *trace;
        PyErr_Fetch(&type, &value, &trace);
        PyErr_NormalizeException(&type, &value, &trace);
        if (trace != NULL && value != NULL)
            PyException_SetTraceback(value, trace);
        PyObject *argv[4] = {kernel, sock, hdr, value ? value : Py_None};
        out = PyObject_Vectorcall(handler_failed, argv, 4, NULL);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(trace);
        if (out == NULL)
            goto done;
    }
    if (finish(d, sock, dg, hdr, out, tracers, dirty) == 0)
        ret = Py_NewRef(Py_None);
    goto done;

slow:
    PyErr_Clear();
    ret = call_slow(d, args);
done:
    Py_XDECREF(families);
    Py_XDECREF(family);
    Py_XDECREF(faults);
    Py_XDECREF(rules);
    Py_XDECREF(tracers);
    Py_XDECREF(dirty);
    Py_XDECREF(stats);
    Py_XDECREF(doit);
    Py_XDECREF(tb);
    Py_XDECREF(warn);
    Py_XDECREF(hdr);
    Py_XDECREF(req);
    Py_XDECREF(out);
    return ret;
}

static PyObject *
deliver_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *kernel, *slow;
    if (!PyArg_ParseTuple(args, "OO:Deliver", &kernel, &slow))
        return NULL;
    Deliver *self = (Deliver *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->kernel = Py_NewRef(kernel);
    self->slow = Py_NewRef(slow);
    self->vectorcall = deliver_vectorcall;
    return (PyObject *)self;
}

/* the kernel holds its Deliver (as ``deliver``) and the Deliver its kernel: a cycle */
static int
deliver_traverse(PyObject *self_, visitproc visit, void *arg)
{
    Py_VISIT(((Deliver *)self_)->kernel);
    Py_VISIT(((Deliver *)self_)->slow);
    return 0;
}

static int
deliver_clear(PyObject *self_)
{
    Py_CLEAR(((Deliver *)self_)->kernel);
    Py_CLEAR(((Deliver *)self_)->slow);
    return 0;
}

static void
deliver_dealloc(PyObject *self_)
{
    PyObject_GC_UnTrack(self_);
    deliver_clear(self_);
    Py_TYPE(self_)->tp_free(self_);
}

static PyObject *
deliver_call_check(PyObject *self_, PyObject *args, PyObject *kw)
{
    return PyVectorcall_Call(self_, args, kw);
}

static PyTypeObject Deliver_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "xfrmd.netlink._rcvfast.Deliver",
    .tp_doc = "Deliver(kernel, slow): deliver(sock, datagram), Kernel.deliver's common"
              " NETLINK_XFRM request in C, anything else slow(kernel, sock, datagram)",
    .tp_basicsize = sizeof(Deliver),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = deliver_new,
    .tp_dealloc = deliver_dealloc,
    .tp_traverse = deliver_traverse,
    .tp_clear = deliver_clear,
    .tp_call = deliver_call_check,
    .tp_vectorcall_offset = offsetof(Deliver, vectorcall),
};

/* setup(**config): the classes, functions and tables (xfrmd/xfrm/user.py) */
static PyObject *
rcv_setup(PyObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"NetlinkSocket", "XfrmRequest", "Header", "Reply", "XfrmUser",
                             "rcv_msg", "DUMP_STARTED", "handler_failed", "netlink_rcv_done",
                             "msg_min", "msg_max", "dumpable", "newspdinfo", "sa_dir",
                             "sa_pcpu", "sa_pcpu_ok", "acquire", "parser", "deque", NULL};
    PyObject *st, *rt, *ht, *pt, *ft, *rm, *ds, *hf, *rd, *mm, *dump, *spok, *ps, *dq;
    long mmax, nspd, dir, pcpu, acq;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOOO!lOlllOlOO!:setup", kwlist, &st, &rt,
                                     &ht, &pt, &ft, &rm, &ds, &hf, &rd, &PyDict_Type, &mm,
                                     &mmax, &dump, &nspd, &dir, &pcpu, &spok, &acq, &ps, &PyType_Type, &dq))
        return NULL;
    if (mmax < NLMSG_MIN_TYPE || mmax >= MAX_TYPES) {
        PyErr_SetString(PyExc_ValueError, "setup: msg_max out of range");
        return NULL;
    }
    if (learn_offsets(st, sock_slots, S_N, soff) < 0 || learn_offsets(rt, req_slots, R_N, roff) < 0
            || learn_offsets(pt, reply_slots, P_N, poff) < 0)
        return NULL;
    if (!PyType_Check(ht) || !PyType_IsSubtype((PyTypeObject *)ht, &PyTuple_Type)
            || !PyType_Check(ft)) {
        PyErr_SetString(PyExc_TypeError, "setup: Header is a tuple class, XfrmUser a class");
        return NULL;
    }
    int32_t mins[MAX_TYPES];
    unsigned char dmp[MAX_TYPES] = {0}, ok[MAX_TYPES] = {0};
    for (int i = 0; i < MAX_TYPES; i++)
        mins[i] = -1;
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(mm, &pos, &k, &v)) {
        long t = PyLong_AsLong(k), m = PyLong_AsLong(v);
        if (PyErr_Occurred())
            return NULL;
        if (t >= 0 && t < MAX_TYPES && m >= 0 && m < INT32_MAX)
            mins[t] = (int32_t)m;
    }
    PyObject *lists[2] = {dump, spok};
    unsigned char *flags[2] = {dmp, ok};
    for (int j = 0; j < 2; j++) {
        PyObject *it = PyObject_GetIter(lists[j]), *x;
        if (it == NULL)
            return NULL;
        while ((x = PyIter_Next(it)) != NULL) {
            long t = PyLong_AsLong(x);
            Py_DECREF(x);
            if (t >= 0 && t < MAX_TYPES)
                flags[j][t] = 1;
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            return NULL;
    }
    PyObject *kd = PyLong_FromLong(dir), *kp = PyLong_FromLong(pcpu);
    PyObject *app = PyObject_GetAttr(dq, s_append);     /* deque.append, a method descriptor */
    if (kd == NULL || kp == NULL || app == NULL) {
        Py_XDECREF(kd);
        Py_XDECREF(kp);
        Py_XDECREF(app);
        return NULL;
    }
    Py_XSETREF(deque_t, Py_NewRef(dq));
    Py_XSETREF(deque_append, app);
    memcpy(msg_min, mins, sizeof mins);
    memcpy(dumpable, dmp, sizeof dmp);
    memcpy(sa_pcpu_ok, ok, sizeof ok);
    msg_max = mmax;
    newspdinfo = nspd;
    acquire = acq;
    Py_XSETREF(key_sa_dir, kd);
    Py_XSETREF(key_sa_pcpu, kp);
    Py_XSETREF(sock_t, Py_NewRef(st));
    Py_XSETREF(req_t, Py_NewRef(rt));
    Py_XSETREF(header_t, Py_NewRef(ht));
    Py_XSETREF(reply_t, Py_NewRef(pt));
    Py_XSETREF(family_t, Py_NewRef(ft));
    Py_XSETREF(family_rcv_msg, Py_NewRef(rm));
    Py_XSETREF(dump_started, Py_NewRef(ds));
    Py_XSETREF(handler_failed, Py_NewRef(hf));
    Py_XSETREF(rcv_done, Py_NewRef(rd));
    Py_XSETREF(parser, Py_NewRef(ps));
    ready = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", (PyCFunction)(void (*)(void))rcv_setup, METH_VARARGS | METH_KEYWORDS,
     "setup(**config): the classes, functions and tables the receive uses"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rcvfast",
    "A NETLINK_XFRM request's framework in C, for the common case (the Python in"
    " xfrmd/kernel.py, xfrmd/netlink/core.py and xfrmd/xfrm/user.py is the reference).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__rcvfast(void)
{
    struct { PyObject **p; const char *s; } names[] = {
        {&s_families, "families"}, {&s_faults, "faults"}, {&s_rules, "rules"},
        {&s_tracers, "tracers"}, {&s_stats, "stats"}, {&s_datagrams, "datagrams"},
        {&s_dirty, "dirty"}, {&s_doit, "doit"}, {&s_rcv_msg, "rcv_msg"},
        {&s_append, "append"}, {&s_unicast, "unicast"}, {&s_tx, "tx"}, {&s_rx, "rx"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].p = PyUnicode_InternFromString(names[i].s)) == NULL)
            return NULL;
    if ((one = PyLong_FromLong(1)) == NULL || PyType_Ready(&Deliver_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddObjectRef(m, "Deliver", (PyObject *)&Deliver_Type) < 0)
        Py_CLEAR(m);
    return m;
}
