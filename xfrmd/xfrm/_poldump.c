/* The C half of dump_one_policy (xfrmd/xfrm/policy.py keeps the reference Python:
 * Policy.dump_message, which caches the body it builds).
 *
 * setup(Policy, Template, NO_LIMITS, fallback) learns where Policy's slots sit in its
 * objects.
 * message(pol, seq, portid[, flags]) then builds the NEWPOLICY message dump_one_policy puts
 * (nlmsghdr, copy_to_user_policy's xfrm_userpolicy_info, copy_to_user_tmpl,
 * copy_to_user_policy_type, xfrm_mark_put, xfrm_if_id_put) in one allocation, reading the
 * fields in place: no body is cached, as the kernel builds each message at dump time.
 * Anything uncommon -- an offload binding (copy_user_offload), a policy type other than
 * main and sub, a field that is not an int of its C width, a slot not set, an object that is
 * not exactly a Policy -- goes to fallback(pol, seq, portid, flags), the Python method,
 * whose answer or exception is the result. Parity: tests/test_poldump.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "../_slots.h"      /* slot_offset_s */
#include <limits.h>
#include <string.h>

#define NLMSG_HDRLEN 16
#define INFO_LEN 168        /* xfrm_userpolicy_info */
#define SEL_LEN 56
#define TMPL_LEN 64         /* xfrm_user_tmpl */
#define TMPL_FIELDS 12      /* policy.Template */
#define XFRM_MSG_NEWPOLICY 19
#define NLM_F_MULTI 2
#define XFRMA_TMPL 5
#define XFRMA_POLICY_TYPE 16
#define XFRMA_MARK 21
#define XFRMA_IF_ID 31
#define XFRM_SHARE_ANY 0
#define MAX_TMPLS 64        /* more: the Python path (the kernel's XFRM_MAX_DEPTH is 6) */

/* Policy's slots this path reads, in the order of `names` */
enum { KEY, LFT, CURLFT_ADD, CURLFT_USE, PRIORITY, INDEX, DIR, ACTION, FLAGS, TYPE, TEMPLATES,
       MARK, IF_ID, XDO, NSLOTS };
static const char *const names[NSLOTS] = {
    "key", "lft", "curlft_add", "curlft_use", "priority", "index", "dir", "action", "flags",
    "type", "templates", "mark", "if_id", "xdo",
};
static Py_ssize_t offsets[NSLOTS];
static PyTypeObject *policy_type, *template_type;
static PyObject *fallback;
static PyObject *no_limits;                /* policy.NO_LIMITS, the lft `ip` policies share */
static unsigned char no_limits_wire[64];

static inline void put16(unsigned char *p, unsigned v) { uint16_t x = v; memcpy(p, &x, 2); }
static inline void put32(unsigned char *p, unsigned long v) { uint32_t x = v; memcpy(p, &x, 4); }
static inline void put64(unsigned char *p, unsigned long long v) { memcpy(p, &v, 8); }

/* an int that fits `max` (struct's range check), else 0 with no error set.
 * PyLong_AsUnsignedLong: a loop over the digits, where PyLong_AsUnsignedLongLong converts
 * any int above 2^30 (XFRM_INF, a time, ~0 algorithm masks) byte by byte */
#if ULONG_MAX < 0xFFFFFFFFFFFFFFFFULL
#error "unsigned long is narrower than 64 bits"
#endif
static int uint_of(PyObject *o, unsigned long long max, unsigned long long *v)
{
    if (!PyLong_Check(o))
        return 0;
    *v = PyLong_AsUnsignedLong(o);
    if (*v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return *v <= max;
}

/* struct's "Ns": the bytes, cut or zero-filled to n */
static int put_bytes(unsigned char *p, PyObject *o, Py_ssize_t n)
{
    if (!PyBytes_Check(o))
        return 0;
    Py_ssize_t len = PyBytes_GET_SIZE(o);
    if (len >= n) {
        memcpy(p, PyBytes_AS_STRING(o), n);
    } else {
        memcpy(p, PyBytes_AS_STRING(o), len);
        memset(p + len, 0, n - len);
    }
    return 1;
}

/* policy.TMPL ("=16s4sB3xH2x16sIBBBxIII") of one Template, the SPI in network order */
static int put_tmpl(unsigned char *p, PyObject *t)
{
    if (Py_TYPE(t) != template_type || PyTuple_GET_SIZE(t) != TMPL_FIELDS)
        return 0;
    PyObject **f = &PyTuple_GET_ITEM(t, 0);
    unsigned long long spi, proto, family, reqid, mode, share, optional, aa, ea, ca;
    if (!put_bytes(p, f[0], 16) || !put_bytes(p + 28, f[4], 16)
            || !uint_of(f[1], 0xFFFFFFFFu, &spi) || !uint_of(f[2], 0xFF, &proto)
            || !uint_of(f[3], 0xFFFF, &family) || !uint_of(f[5], 0xFFFFFFFFu, &reqid)
            || !uint_of(f[6], 0xFF, &mode) || !uint_of(f[7], 0xFF, &share)
            || !uint_of(f[8], 0xFF, &optional) || !uint_of(f[9], 0xFFFFFFFFu, &aa)
            || !uint_of(f[10], 0xFFFFFFFFu, &ea) || !uint_of(f[11], 0xFFFFFFFFu, &ca))
        return 0;
    p[16] = spi >> 24; p[17] = spi >> 16; p[18] = spi >> 8; p[19] = spi;
    p[20] = proto;
    p[21] = p[22] = p[23] = 0;
    put16(p + 24, family);
    p[26] = p[27] = 0;
    put32(p + 44, reqid);
    p[48] = mode; p[49] = share; p[50] = optional; p[51] = 0;
    put32(p + 52, aa);
    put32(p + 56, ea);
    put32(p + 60, ca);
    return 1;
}

static inline PyObject *slot(PyObject *pol, int i)
{
    return *(PyObject **)((char *)pol + offsets[i]);
}

/* the message, or NULL with no error set: the Python path builds it */
static PyObject *build(PyObject *pol, unsigned long long seq, unsigned long long portid,
                       unsigned long long flags)
{
    if (policy_type == NULL || Py_TYPE(pol) != policy_type)
        return NULL;
    PyObject *s[NSLOTS];
    for (int i = 0; i < NSLOTS; i++)
        if ((s[i] = slot(pol, i)) == NULL)     /* not set: AttributeError in Python */
            return NULL;
    if (s[XDO] != Py_None)                     /* copy_user_offload: Python */
        return NULL;
    PyObject *key = s[KEY], *lft = s[LFT], *mark = s[MARK], *tmpls = s[TEMPLATES];
    if (!PyBytes_Check(key) || !PyTuple_CheckExact(lft) || PyTuple_GET_SIZE(lft) != 8
            || !PyTuple_CheckExact(mark) || PyTuple_GET_SIZE(mark) != 2)
        return NULL;
    if (!PyTuple_CheckExact(tmpls) && !PyList_CheckExact(tmpls))
        return NULL;
    Py_ssize_t ntmpl = PySequence_Fast_GET_SIZE(tmpls);
    PyObject **tv = PySequence_Fast_ITEMS(tmpls);
    if (ntmpl > MAX_TMPLS)
        return NULL;
    unsigned long long lv[8], add, use, prio, index, dir, action, pflags, ptype, mv, mm, if_id;
    if (lft != no_limits)
        for (int i = 0; i < 8; i++)
            if (!uint_of(PyTuple_GET_ITEM(lft, i), ~0ULL, &lv[i]))
                return NULL;
    if (!uint_of(s[CURLFT_ADD], ~0ULL, &add) || !uint_of(s[CURLFT_USE], ~0ULL, &use)
            || !uint_of(s[PRIORITY], 0xFFFFFFFFu, &prio)
            || !uint_of(s[INDEX], 0xFFFFFFFFu, &index) || !uint_of(s[DIR], 0xFF, &dir)
            || !uint_of(s[ACTION], 0xFF, &action) || !uint_of(s[FLAGS], 0xFF, &pflags)
            || !uint_of(s[TYPE], 1, &ptype)    /* XFRM_POLICY_TYPE_MAIN or _SUB */
            || !uint_of(PyTuple_GET_ITEM(mark, 0), 0xFFFFFFFFu, &mv)
            || !uint_of(PyTuple_GET_ITEM(mark, 1), 0xFFFFFFFFu, &mm)
            || !uint_of(s[IF_ID], 0xFFFFFFFFu, &if_id))
        return NULL;

    Py_ssize_t tlen = ntmpl ? 4 + TMPL_LEN * ntmpl : 0;
    Py_ssize_t len = NLMSG_HDRLEN + INFO_LEN + tlen + 12 + ((mv || mm) ? 12 : 0)
                     + (if_id ? 8 : 0);
    PyObject *out = PyBytes_FromStringAndSize(NULL, len);
    if (out == NULL)
        return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    /* nlmsghdr (encode_msg) */
    put32(p, len);
    put16(p + 4, XFRM_MSG_NEWPOLICY);
    put16(p + 6, flags);
    put32(p + 8, seq);
    put32(p + 12, portid);
    p += NLMSG_HDRLEN;
    /* copy_to_user_policy: the selector, lft, curlft {bytes 0, packets 0, add, use}, ... */
    put_bytes(p, key, SEL_LEN);
    if (lft == no_limits)
        memcpy(p + 56, no_limits_wire, 64);
    else
        for (int i = 0; i < 8; i++)
            put64(p + 56 + 8 * i, lv[i]);
    put64(p + 120, 0);
    put64(p + 128, 0);
    put64(p + 136, add);
    put64(p + 144, use);
    put32(p + 152, prio);
    put32(p + 156, index);
    p[160] = dir; p[161] = action; p[162] = pflags; p[163] = XFRM_SHARE_ANY;
    memset(p + 164, 0, 4);
    p += INFO_LEN;
    /* copy_to_user_tmpl */
    if (ntmpl) {
        put16(p, tlen);
        put16(p + 2, XFRMA_TMPL);
        p += 4;
        for (Py_ssize_t i = 0; i < ntmpl; i++, p += TMPL_LEN)
            if (!put_tmpl(p, tv[i])) {
                Py_DECREF(out);
                return NULL;
            }
    }
    /* copy_to_user_policy_type: {type, reserved1, reserved2}, 10 bytes and 2 of padding */
    put16(p, 10);
    put16(p + 2, XFRMA_POLICY_TYPE);
    memset(p + 4, 0, 8);
    p[4] = ptype;
    p += 12;
    if (mv || mm) {     /* xfrm_mark_put */
        put16(p, 12);
        put16(p + 2, XFRMA_MARK);
        put32(p + 4, mv);
        put32(p + 8, mm);
        p += 12;
    }
    if (if_id) {        /* xfrm_if_id_put */
        put16(p, 8);
        put16(p + 2, XFRMA_IF_ID);
        put32(p + 4, if_id);
    }
    return out;
}

static PyObject *message(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "message(pol, seq, portid[, flags])");
        return NULL;
    }
    unsigned long long seq, portid, flags = NLM_F_MULTI;
    if (uint_of(args[1], 0xFFFFFFFFu, &seq) && uint_of(args[2], 0xFFFFFFFFu, &portid)
            && (nargs == 3 || uint_of(args[3], 0xFFFF, &flags))) {
        PyObject *out = build(args[0], seq, portid, flags);
        if (out != NULL || PyErr_Occurred())
            return out;
    }
    if (fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_poldump.setup() was not called");
        return NULL;
    }
    return PyObject_Vectorcall(fallback, args, nargs, NULL);
}

static PyObject *setup(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyType_Check(args[0]) || !PyType_Check(args[1])
            || !PyTuple_CheckExact(args[2]) || PyTuple_GET_SIZE(args[2]) != 8
            || !PyCallable_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "setup(Policy, Template, NO_LIMITS, fallback)");
        return NULL;
    }
    PyTypeObject *pt = (PyTypeObject *)args[0], *tt = (PyTypeObject *)args[1];
    if (!PyType_IsSubtype(tt, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Template is not a tuple");
        return NULL;
    }
    Py_ssize_t off[NSLOTS];
    for (int i = 0; i < NSLOTS; i++)       /* Policy's own or _PolicyHead's */
        if ((off[i] = slot_offset_s(pt, names[i])) < 0)
            return PyErr_Format(PyExc_TypeError, "%s.%s is not a plain slot", pt->tp_name,
                                names[i]);
    unsigned long long lv;
    for (int i = 0; i < 8; i++) {
        if (!uint_of(PyTuple_GET_ITEM(args[2], i), ~0ULL, &lv)) {
            PyErr_SetString(PyExc_ValueError, "NO_LIMITS is not 8 u64");
            return NULL;
        }
        put64(no_limits_wire + 8 * i, lv);
    }
    memcpy(offsets, off, sizeof off);
    Py_INCREF(pt);
    Py_XSETREF(policy_type, pt);
    Py_INCREF(tt);
    Py_XSETREF(template_type, tt);
    Py_INCREF(args[2]);
    Py_XSETREF(no_limits, args[2]);
    Py_INCREF(args[3]);
    Py_XSETREF(fallback, args[3]);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", (PyCFunction)(void (*)(void))setup, METH_FASTCALL,
     "setup(Policy, Template, NO_LIMITS, fallback): where Policy keeps the fields message "
     "reads"},
    {"message", (PyCFunction)(void (*)(void))message, METH_FASTCALL,
     "message(pol, seq, portid[, flags=NLM_F_MULTI]): dump_one_policy's NEWPOLICY message, "
     "from the fallback (Policy.dump_message) for anything uncommon"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_poldump", NULL, -1, methods};

PyMODINIT_FUNC PyInit__poldump(void) { return PyModule_Create(&module); }
