/*
 * _nlfast: the C half of the netlink framework's per-request work (docs/performance.md,
 * "Control plane"). Each function here has a pure-Python twin, which stays the reference:
 *
 *   kernel_messages(buf)            netlink_codec/netlink.py kernel_messages_py
 *                                   (the nlmsghdr walk of af_netlink.c netlink_rcv_skb)
 *   kernel_attrs(buf, start, end)   netlink_codec/netlink.py kernel_attrs_py
 *                                   (the liberal walk of nla_for_each_attr)
 *   encode_ack(request, req, error, portid, *, cap_ack, ext_ack, ext)
 *                                   netlink_codec/netlink.py encode_ack_py (netlink_ack)
 *   compile_policy(entries)         a policy table in the flat form parse_attrs reads
 *   parse_attrs(buf, start, end, compiled, maxtype, strict_start_type)
 *                                   the walk and the checks of xfrmd/netlink/nlattr.py
 *                                   parse_attrs_py / validate_nla (lib/nlattr.c
 *                                   __nla_validate_parse + validate_nla). It only finds the
 *                                   failing attribute; the Python code builds the Reply
 *                                   (errno, extack text, offset, policy TLV) from it, so
 *                                   those stay written once.
 *
 *   dump_fill(iterator, parts, used, size)
 *                                   netlink_codec/netlink.py dump_fill_py (the loop of
 *                                   netlink_dump filling one skb with the dump's messages)
 *
 *   Parser(compiled, maxtype, strict_start_type, slow)
 *                                   parse_attrs bound to one policy: a family's parse
 *
 * setup(Header, RawAttr, extack_tlvs) hands over the named tuple classes the results are
 * made of and the Python function that encodes extended-ACK TLVs (rare: errors, warnings).
 *
 * Everything is native byte order, as the kernel's structs are. No function here keeps a
 * pointer into a buffer past its return.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define NLMSG_HDRLEN 16
#define NLA_HDRLEN 4
#define NLMSG_ERROR 2
#define NLM_F_CAPPED 0x100
#define NLM_F_ACK_TLVS 0x200
#define NLA_F_FLAGS 0xC000          /* NLA_F_NESTED | NLA_F_NET_BYTEORDER */
#define NLA_TYPE_MASK 0x3FFF
#define ALIGN4(n) (((n) + 3) & ~(Py_ssize_t)3)   /* NLMSG_ALIGN / NLA_ALIGN */

/* Set once by setup(): the classes of the tuples made here, and extack_tlvs. */
static PyObject *Header_type;
static PyObject *RawAttr_type;
static PyObject *extack_tlvs_fn;

static uint16_t get_u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get_u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void put_u16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }

/* A named tuple of the class ``type`` holding ``n`` new references (stolen, also on
 * failure): what ``tuple.__new__(cls, values)`` makes, without the Python-level __new__. */
static PyObject *
make_tuple(PyObject *type, Py_ssize_t n, PyObject **items)
{
    PyObject *t = ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, n);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (t == NULL || items[i] == NULL) {
            for (Py_ssize_t j = i; j < n; j++)
                Py_XDECREF(items[j]);
            Py_XDECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, items[i]);
    }
    return t;
}

static int
ready(void)
{
    if (Header_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_nlfast.setup() was not called");
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * kernel_messages: the messages netlink_rcv_skb processes in one sendmsg buffer. The walk
 * stops silently at a header shorter than 16 bytes or longer than what remains; the next
 * message starts at NLMSG_ALIGN(nlmsg_len). Returns a list of Header tuples
 * (len, type, flags, seq, pid, offset).
 */
static PyObject *
nl_kernel_messages(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (!ready() || PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *b = view.buf;
    Py_ssize_t total = view.len, off = 0;
    PyObject *out = PyList_New(0);
    while (out != NULL && total - off >= NLMSG_HDRLEN) {
        const unsigned char *h = b + off;
        uint32_t len = get_u32(h);
        if (len < NLMSG_HDRLEN || (Py_ssize_t)len > total - off)
            break;
        PyObject *items[6] = {
            PyLong_FromUnsignedLong(len), PyLong_FromLong(get_u16(h + 4)),
            PyLong_FromLong(get_u16(h + 6)), PyLong_FromUnsignedLong(get_u32(h + 8)),
            PyLong_FromUnsignedLong(get_u32(h + 12)), PyLong_FromSsize_t(off)};
        PyObject *hdr = make_tuple(Header_type, 6, items);
        if (hdr == NULL || PyList_Append(out, hdr) < 0)
            Py_CLEAR(out);
        Py_XDECREF(hdr);
        off += ALIGN4((Py_ssize_t)len);
    }
    PyBuffer_Release(&view);
    return out;
}

/* ---------------------------------------------------------------------------------------
 * The attribute walk shared by kernel_attrs and parse_attrs (nla_for_each_attr / nla_ok):
 * the attribute at ``off``, or 0 when the rest is too short or malformed.
 */
static int
next_attr(const unsigned char *b, Py_ssize_t off, Py_ssize_t end, uint16_t *len, uint16_t *type)
{
    if (end - off < NLA_HDRLEN)
        return 0;
    *len = get_u16(b + off);
    *type = get_u16(b + off + 2);
    return *len >= NLA_HDRLEN && *len <= end - off;
}

/* RawAttr(type, flags, offset, start, end) */
static PyObject *
raw_attr(uint16_t len, uint16_t type, Py_ssize_t off)
{
    PyObject *items[5] = {
        PyLong_FromLong(type & NLA_TYPE_MASK), PyLong_FromLong(type & NLA_F_FLAGS),
        PyLong_FromSsize_t(off), PyLong_FromSsize_t(off + NLA_HDRLEN),
        PyLong_FromSsize_t(off + len)};
    return make_tuple(RawAttr_type, 5, items);
}

/* The buffer and the [start, end) range of an attribute walk; the range must lie in it. */
static int
walk_args(PyObject *const *args, Py_buffer *view, Py_ssize_t *start, Py_ssize_t *end)
{
    *start = PyLong_AsSsize_t(args[1]);
    if (*start == -1 && PyErr_Occurred())
        return 0;
    *end = PyLong_AsSsize_t(args[2]);
    if (*end == -1 && PyErr_Occurred())
        return 0;
    if (PyObject_GetBuffer(args[0], view, PyBUF_SIMPLE) < 0)
        return 0;
    if (*start < 0 || *end > view->len) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "attributes [%zd, %zd) outside a buffer of %zd bytes",
                     *start, *end, view->len);
        return 0;
    }
    return 1;
}

/* kernel_attrs(buf, start, end) -> ([RawAttr, ...], bytes left over) */
static PyObject *
nl_kernel_attrs(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t start, end;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "kernel_attrs(buf, start, end)");
        return NULL;
    }
    if (!ready() || !walk_args(args, &view, &start, &end))
        return NULL;
    const unsigned char *b = view.buf;
    Py_ssize_t off = start;
    uint16_t len, type;
    PyObject *out = PyList_New(0);
    while (out != NULL && next_attr(b, off, end, &len, &type)) {
        PyObject *ra = raw_attr(len, type, off);
        if (ra == NULL || PyList_Append(out, ra) < 0)
            Py_CLEAR(out);
        Py_XDECREF(ra);
        off += ALIGN4((Py_ssize_t)len);
    }
    PyBuffer_Release(&view);
    if (out == NULL)
        return NULL;
    return Py_BuildValue("(Nn)", out, end - off > 0 ? end - off : 0);
}

/* ---------------------------------------------------------------------------------------
 * Policies. A table {type: NlaPolicy} is compiled once (xfrmd/netlink/nlattr.py
 * compile_policy) into an array indexed by attribute type of the entries below, held in a
 * bytes object. Kinds are the checks validate_nla makes; nlattr.py keeps a table with
 * anything this cannot express (a range on a signed or binary type, a minimum length
 * shorter than the integer a range reads) on the Python path.
 */
enum kind {
    K_NONE = 0,     /* no policy for this type: accepted as it is */
    K_OTHER,        /* NLA_UNSPEC, NLA_BINARY, NLA_NESTED, NLA_NUL_STRING: a minimum length */
    K_U8, K_U16, K_U32, K_U64, K_S32,   /* fixed length (checked when strict), a range */
    K_FLAG,         /* no payload (checked when strict) */
    K_STRING,       /* NLA_STRING: at least a byte, at most .len without a trailing NUL */
};

struct cpolicy {
    uint8_t kind;
    uint8_t has_min, has_max;
    uint32_t len;                   /* nla_policy.len */
    uint64_t min, max;
};

static const int fixed_len[] = {
    [K_U8] = 1, [K_U16] = 2, [K_U32] = 4, [K_U64] = 8, [K_S32] = 4, [K_FLAG] = 0};

static int has_fixed(int kind) { return kind >= K_U8 && kind <= K_FLAG; }

/* compile_policy([(type, kind, len, min or None, max or None), ...]) -> bytes */
static PyObject *
nl_compile_policy(PyObject *self, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "compile_policy: a list of tuples");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), ntypes = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        long t = PyLong_AsLong(PyTuple_GetItem(PySequence_Fast_GET_ITEM(seq, i), 0));
        if (t < 0 || t > NLA_TYPE_MASK) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "compile_policy: type out of range");
            Py_DECREF(seq);
            return NULL;
        }
        if (t + 1 > ntypes)
            ntypes = t + 1;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, ntypes * sizeof(struct cpolicy));
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    struct cpolicy *pol = (struct cpolicy *)PyBytes_AS_STRING(out);
    memset(pol, 0, ntypes * sizeof(struct cpolicy));
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PySequence_Fast_GET_ITEM(seq, i), *lo, *hi;
        long t, kind;
        unsigned long len;
        if (!PyArg_ParseTuple(e, "llkOO", &t, &kind, &len, &lo, &hi))
            goto fail;
        if (kind <= K_NONE || kind > K_STRING || len > UINT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "compile_policy: bad kind or length");
            goto fail;
        }
        struct cpolicy *p = &pol[t];
        p->kind = (uint8_t)kind;
        p->len = (uint32_t)len;
        if (lo != Py_None) {
            p->has_min = 1;
            p->min = PyLong_AsUnsignedLongLong(lo);
        }
        if (hi != Py_None) {
            p->has_max = 1;
            p->max = PyLong_AsUnsignedLongLong(hi);
        }
        if (PyErr_Occurred())
            goto fail;
    }
    Py_DECREF(seq);
    return out;
fail:
    Py_DECREF(seq);
    Py_DECREF(out);
    return NULL;
}

/* validate_nla's verdict on one attribute: 1 passes, 0 fails (the Python code then says
 * how). ``p`` is the payload, ``attrlen`` its length. */
static int
attr_ok(const struct cpolicy *pt, const unsigned char *p, Py_ssize_t attrlen, int strict)
{
    int kind = pt->kind;
    if (has_fixed(kind) && attrlen != fixed_len[kind] && strict)
        return 0;                                   /* "invalid attribute length" */
    if (kind == K_FLAG)
        return !(attrlen > 0 && strict);
    if (kind == K_STRING) {
        Py_ssize_t n = attrlen && p[attrlen - 1] == 0 ? attrlen - 1 : attrlen;
        return !(attrlen < 1 || (pt->len && n > (Py_ssize_t)pt->len));
    }
    Py_ssize_t minlen = pt->len ? (Py_ssize_t)pt->len : (has_fixed(kind) ? fixed_len[kind] : 0);
    if (attrlen < minlen)
        return 0;                                   /* "Attribute failed policy validation" */
    if (pt->has_min || pt->has_max) {
        /* only unsigned kinds carry a range, and their minimum length covers the read */
        uint64_t v = kind == K_U8 ? p[0] : kind == K_U16 ? get_u16(p) :
                     kind == K_U32 ? get_u32(p) : get_u64(p);
        if ((pt->has_min && v < pt->min) || (pt->has_max && v > pt->max))
            return 0;                               /* "integer out of range" */
    }
    return 1;
}

/* The walk and the checks of parse_attrs over args[0..2] (buf, start, end) with the table
 * ``compiled``: returns tb (a new reference; NULL on an exception) and sets *bad to the
 * failing RawAttr (a new reference) or NULL, *leftover to the bytes left over. */
static PyObject *
parse_walk(PyObject *const *args, PyObject *compiled, long maxtype, long strict_start,
           PyObject **bad, Py_ssize_t *leftover)
{
    Py_buffer view;
    Py_ssize_t start, end;
    *bad = NULL;
    *leftover = 0;
    if (!ready() || !walk_args(args, &view, &start, &end))
        return NULL;
    const struct cpolicy *pol = (const struct cpolicy *)PyBytes_AS_STRING(compiled);
    long npol = (long)(PyBytes_GET_SIZE(compiled) / sizeof(struct cpolicy));
    const unsigned char *b = view.buf;
    Py_ssize_t off = start;
    uint16_t len, type;
    PyObject *tb = PyDict_New();
    while (tb != NULL && next_attr(b, off, end, &len, &type)) {
        long t = type & NLA_TYPE_MASK;
        Py_ssize_t here = off;
        off += ALIGN4((Py_ssize_t)len);
        if (t == 0 || t > maxtype)
            continue;
        int ok = t >= npol || pol[t].kind == K_NONE ||
                 attr_ok(&pol[t], b + here + NLA_HDRLEN, len - NLA_HDRLEN,
                         strict_start && t >= strict_start);
        PyObject *ra = raw_attr(len, type, here);
        if (ra == NULL) {
            Py_CLEAR(tb);
            break;
        }
        if (!ok) {
            *bad = ra;
            break;
        }
        PyObject *key = PyLong_FromLong(t);
        if (key == NULL || PyDict_SetItem(tb, key, ra) < 0)
            Py_CLEAR(tb);
        Py_XDECREF(key);
        Py_DECREF(ra);
    }
    PyBuffer_Release(&view);
    if (tb == NULL)
        Py_CLEAR(*bad);
    else if (*bad == NULL && end - off > 0)
        *leftover = end - off;
    return tb;
}

/* parse_attrs(buf, start, end, compiled, maxtype, strict_start_type)
 *   -> (tb, failing RawAttr or None, bytes left over)
 * tb maps a type to the last RawAttr of that type (types 0 and above maxtype ignored); on
 * a failure it holds what came before, as nlmsg_parse_deprecated leaves it. */
static PyObject *
nl_parse_attrs(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "parse_attrs(buf, start, end, compiled, maxtype, strict_start_type)");
        return NULL;
    }
    long maxtype = PyLong_AsLong(args[4]);
    long strict_start = PyLong_AsLong(args[5]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *bad;
    Py_ssize_t leftover;
    PyObject *tb = parse_walk(args, args[3], maxtype, strict_start, &bad, &leftover);
    if (tb == NULL)
        return NULL;
    if (bad != NULL)
        return Py_BuildValue("(NNn)", tb, bad, (Py_ssize_t)0);
    return Py_BuildValue("(NOn)", tb, Py_None, leftover);
}

/* ---------------------------------------------------------------------------------------
 * Parser(compiled, maxtype, strict_start_type, slow): parse_attrs with the policy bound, as
 * a family parses every request (xfrmd/netlink/nlattr.py attr_parser). A call
 * ``parser(buf, start, end, hdr_offset)`` returns (tb, None, None) when every attribute
 * passes and none is left over; otherwise it returns ``slow(buf, start, end, hdr_offset)``,
 * the Python function that makes the error or the warning (the rare case).
 */
typedef struct {
    PyObject_HEAD
    PyObject *compiled;             /* bytes: struct cpolicy[] */
    long maxtype, strict_start;
    PyObject *slow;
    vectorcallfunc vectorcall;
} Parser;

static PyObject *
parser_vectorcall(PyObject *self_, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Parser *self = (Parser *)self_;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 4 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "parser(buf, start, end, hdr_offset)");
        return NULL;
    }
    PyObject *bad;
    Py_ssize_t leftover;
    PyObject *tb = parse_walk(args, self->compiled, self->maxtype, self->strict_start,
                              &bad, &leftover);
    if (tb == NULL)
        return NULL;
    if (bad == NULL && leftover == 0) {     /* the common case (no format string parsed) */
        PyObject *out = PyTuple_Pack(3, tb, Py_None, Py_None);
        Py_DECREF(tb);
        return out;
    }
    Py_DECREF(tb);
    Py_XDECREF(bad);
    return PyObject_Vectorcall(self->slow, args, 4, NULL);
}

static PyObject *
parser_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    PyObject *compiled, *slow;
    long maxtype, strict_start;
    if (!PyArg_ParseTuple(args, "O!llO:Parser", &PyBytes_Type, &compiled, &maxtype,
                          &strict_start, &slow))
        return NULL;
    Parser *self = (Parser *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->compiled = Py_NewRef(compiled);
    self->maxtype = maxtype;
    self->strict_start = strict_start;
    self->slow = Py_NewRef(slow);
    self->vectorcall = parser_vectorcall;
    return (PyObject *)self;
}

static void
parser_dealloc(PyObject *self_)
{
    Parser *self = (Parser *)self_;
    PyObject_GC_UnTrack(self_);
    Py_CLEAR(self->compiled);
    Py_CLEAR(self->slow);
    Py_TYPE(self_)->tp_free(self_);
}

static int
parser_traverse(PyObject *self_, visitproc visit, void *arg)
{
    Py_VISIT(((Parser *)self_)->slow);
    return 0;
}

static int
parser_clear(PyObject *self_)
{
    Py_CLEAR(((Parser *)self_)->slow);
    return 0;
}

static PyTypeObject Parser_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "netlink_codec._nlfast.Parser",
    .tp_doc = "Parser(compiled, maxtype, strict_start_type, slow):"
              " parser(buf, start, end, hdr_offset) -> (tb, error, warning)",
    .tp_basicsize = sizeof(Parser),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = parser_new,
    .tp_dealloc = parser_dealloc,
    .tp_traverse = parser_traverse,
    .tp_clear = parser_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Parser, vectorcall),
};

/* ---------------------------------------------------------------------------------------
 * encode_ack: the NLMSG_ERROR netlink_ack builds. The request's nlmsghdr is echoed, and
 * its payload too for an error on a socket without NETLINK_CAP_ACK (else NLM_F_CAPPED);
 * the extended-ACK TLVs come from the Python extack_tlvs.
 */
static PyObject *
nl_encode_ack(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const kwlist[] = {"cap_ack", "ext_ack", "ext"};
    PyObject *kw[3] = {Py_False, Py_False, Py_None};
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "encode_ack(request, req, error, portid, *, cap_ack, ext_ack, ext)");
        return NULL;
    }
    for (Py_ssize_t i = 0; kwnames != NULL && i < PyTuple_GET_SIZE(kwnames); i++) {
        const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, i));
        int k = 0;
        while (name != NULL && k < 3 && strcmp(name, kwlist[k]) != 0)
            k++;
        if (name == NULL || k == 3) {
            if (name != NULL)
                PyErr_Format(PyExc_TypeError, "encode_ack: no argument %s", name);
            return NULL;
        }
        kw[k] = args[nargs + i];
    }
    int cap_ack = PyObject_IsTrue(kw[0]), ext_ack = PyObject_IsTrue(kw[1]);
    PyObject *req = args[1];
    if (cap_ack < 0 || ext_ack < 0 || !PyTuple_Check(req) || PyTuple_GET_SIZE(req) < 6) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "encode_ack: req is a Header");
        return NULL;
    }
    Py_ssize_t req_len = PyLong_AsSsize_t(PyTuple_GET_ITEM(req, 0));
    unsigned long seq = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(req, 3));
    Py_ssize_t req_off = PyLong_AsSsize_t(PyTuple_GET_ITEM(req, 5));
    long error = PyLong_AsLong(args[2]);
    unsigned long portid = PyLong_AsUnsignedLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    if (error < INT32_MIN || error > INT32_MAX || seq > UINT32_MAX || portid > UINT32_MAX
            || req_off < 0 || req_len < 0) {
        PyErr_SetString(PyExc_OverflowError, "encode_ack: a field does not fit");
        return NULL;
    }

    /* the TLVs first: the one step that may call back into Python */
    PyObject *tlvs = NULL;
    if (ext_ack && kw[2] != Py_None) {
        tlvs = PyObject_CallFunctionObjArgs(extack_tlvs_fn, kw[2], args[2], NULL);
        if (tlvs == NULL)
            return NULL;
        if (!PyBytes_Check(tlvs)) {
            Py_DECREF(tlvs);
            PyErr_SetString(PyExc_TypeError, "extack_tlvs returned no bytes");
            return NULL;
        }
    }
    Py_ssize_t ntlv = tlvs ? PyBytes_GET_SIZE(tlvs) : 0;

    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        Py_XDECREF(tlvs);
        return NULL;
    }
    uint16_t flags = 0;
    Py_ssize_t want = req_len;
    if (error == 0 || cap_ack) {
        flags |= NLM_F_CAPPED;
        want = NLMSG_HDRLEN;
    }
    /* bytes(request[off:off + want]): a slice clamps to the buffer */
    Py_ssize_t lo = req_off < view.len ? req_off : view.len;
    Py_ssize_t echoed = want < view.len - lo ? want : view.len - lo;
    if (ntlv)
        flags |= NLM_F_ACK_TLVS;
    Py_ssize_t payload = ALIGN4(4 + echoed);         /* errno + echo, padded */
    Py_ssize_t n = NLMSG_HDRLEN + payload + ntlv;     /* nlmsg_len: unpadded */
    PyObject *out = PyBytes_FromStringAndSize(NULL, ALIGN4(n));
    if (out != NULL) {
        unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
        int32_t err32 = (int32_t)error;
        memset(o, 0, ALIGN4(n));
        put_u32(o, (uint32_t)n);
        put_u16(o + 4, NLMSG_ERROR);
        put_u16(o + 6, flags);
        put_u32(o + 8, (uint32_t)seq);
        put_u32(o + 12, (uint32_t)portid);
        memcpy(o + 16, &err32, 4);
        memcpy(o + 20, (const unsigned char *)view.buf + lo, echoed);
        if (ntlv)
            memcpy(o + NLMSG_HDRLEN + payload, PyBytes_AS_STRING(tlvs), ntlv);
    }
    PyBuffer_Release(&view);
    Py_XDECREF(tlvs);
    return out;
}

/* dump_fill(iterator, parts, used, size) -> (used, stop): dump_fill_py */
static PyObject *
nl_dump_fill(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyIter_Check(args[0]) || !PyList_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "dump_fill(iterator, parts: list, used, size)");
        return NULL;
    }
    PyObject *it = args[0], *parts = args[1], *msg;
    Py_ssize_t used = PyLong_AsSsize_t(args[2]), size = PyLong_AsSsize_t(args[3]);
    if ((used == -1 || size == -1) && PyErr_Occurred())
        return NULL;
    while ((msg = PyIter_Next(it)) != NULL) {
        /* anything but bytes (a Reply: the callback failed), or a message that does not fit
         * in a step that has one already: the caller's */
        if (!PyBytes_CheckExact(msg)
                || (used + PyBytes_GET_SIZE(msg) > size && PyList_GET_SIZE(parts) > 0))
            break;
        if (PyList_Append(parts, msg) < 0) {
            Py_DECREF(msg);
            return NULL;
        }
        used += PyBytes_GET_SIZE(msg);
        Py_DECREF(msg);
    }
    if (msg == NULL && PyErr_Occurred())
        return NULL;
    PyObject *n = PyLong_FromSsize_t(used);
    if (n == NULL) {
        Py_XDECREF(msg);
        return NULL;
    }
    PyObject *out = PyTuple_Pack(2, n, msg == NULL ? Py_None : msg);
    Py_DECREF(n);
    Py_XDECREF(msg);
    return out;
}

/* setup(Header, RawAttr, extack_tlvs) */
static PyObject *
nl_setup(PyObject *self, PyObject *args)
{
    PyObject *h, *r, *f;
    if (!PyArg_ParseTuple(args, "O!O!O:setup", &PyType_Type, &h, &PyType_Type, &r, &f))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)h, &PyTuple_Type) ||
            !PyType_IsSubtype((PyTypeObject *)r, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "setup: Header and RawAttr are tuple classes");
        return NULL;
    }
    Py_XSETREF(Header_type, Py_NewRef(h));
    Py_XSETREF(RawAttr_type, Py_NewRef(r));
    Py_XSETREF(extack_tlvs_fn, Py_NewRef(f));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", nl_setup, METH_VARARGS, "setup(Header, RawAttr, extack_tlvs)"},
    {"kernel_messages", nl_kernel_messages, METH_O,
     "The messages netlink_rcv_skb processes in a datagram: a list of Header."},
    {"kernel_attrs", (PyCFunction)(void (*)(void))nl_kernel_attrs, METH_FASTCALL,
     "kernel_attrs(buf, start, end) -> (attributes, bytes left over)"},
    {"compile_policy", nl_compile_policy, METH_O,
     "compile_policy([(type, kind, len, min, max), ...]) -> the table parse_attrs reads"},
    {"parse_attrs", (PyCFunction)(void (*)(void))nl_parse_attrs, METH_FASTCALL,
     "parse_attrs(buf, start, end, compiled, maxtype, strict_start_type)"
     " -> (tb, failing attribute or None, bytes left over)"},
    {"encode_ack", (PyCFunction)(void (*)(void))nl_encode_ack, METH_FASTCALL | METH_KEYWORDS,
     "encode_ack(request, req, error, portid, *, cap_ack=False, ext_ack=False, ext=None)"},
    {"dump_fill", (PyCFunction)(void (*)(void))nl_dump_fill, METH_FASTCALL,
     "dump_fill(iterator, parts, used, size) -> (used, the item it stopped at or None)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_nlfast",
    "The netlink framework's per-request work in C (pure-Python twins in netlink_codec"
    " and xfrmd/netlink).", -1, methods,
};

PyMODINIT_FUNC
PyInit__nlfast(void)
{
    if (PyType_Ready(&Parser_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddObjectRef(m, "Parser", (PyObject *)&Parser_Type) < 0)
        Py_CLEAR(m);
    return m;
}
