/* The C half of NEWSA/UPDSA checking (xfrmd/xfrm/sa_verify.py keeps the reference Python).
 *
 * newsa_info(buf, off, attrs, UsersaInfo) decodes the request's xfrm_usersa_info as
 * sa_verify.usersa_info does, and returns it only when verify_newsa_info would accept the
 * request: ESP or AH, an address family and selector it accepts, algorithm attributes that
 * hold their keys, a mode it knows, and no attribute outside the few every key manager
 * sends. Anything else -- every error, ESN, IP-TFS, COMP, SEC_CTX, an attribute not on the
 * list, a buffer that is not bytes -- returns None, and the Python path decides (and raises
 * the kernel's errno and message). It never rejects: parity is "accepted here implies
 * accepted there, with the same fields" (tests/test_safast.py).
 *
 * alg(buf, ra, head) reads an algorithm attribute as sa_verify._alg does (attach_aead,
 * attach_auth*, attach_crypt): (alg_name up to its NUL, alg_key_len, the key, the second
 * field); None (the Python path) for anything but a bytes buffer holding the attribute.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define INFO_LEN 224
#define AF_INET_ 2
#define AF_INET6_ 10
#define IPPROTO_ESP_ 50
#define IPPROTO_AH_ 51
#define STATE_DECAP_DSCP 2
#define STATE_NOPMTUDISC 4
#define STATE_WILDRECV 8
#define STATE_ICMP 16
#define STATE_AF_UNSPEC 32
#define STATE_ESN 128
#define SA_DIR_IN 1
#define SA_DIR_OUT 2

/* XFRMA_* this path knows; any other attribute sends the request to Python */
enum {
    ALG_AUTH = 1, ALG_CRYPT = 2, ENCAP = 4, LTIME_VAL = 9, REPLAY_THRESH = 11,
    ETIMER_THRESH = 12, ALG_AEAD = 18, ALG_AUTH_TRUNC = 20, MARK = 21, OFFLOAD_DEV = 28,
    SET_MARK = 29, SET_MARK_MASK = 30, IF_ID = 31, SA_DIR = 33, ATTR_MAX = 64
};

static const unsigned char known[ATTR_MAX] = {
    [ALG_AUTH] = 1, [ALG_CRYPT] = 1, [ENCAP] = 1, [LTIME_VAL] = 1, [REPLAY_THRESH] = 1,
    [ETIMER_THRESH] = 1, [ALG_AEAD] = 1, [ALG_AUTH_TRUNC] = 1, [MARK] = 1,
    [OFFLOAD_DEV] = 1, [SET_MARK] = 1, [SET_MARK_MASK] = 1, [IF_ID] = 1, [SA_DIR] = 1,
};

static inline unsigned u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline unsigned long u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* an attribute's payload bounds (RawAttr: type, flags, offset, start, end) */
static int bounds(PyObject *ra, Py_ssize_t *start, Py_ssize_t *end)
{
    if (!PyTuple_Check(ra) || PyTuple_GET_SIZE(ra) < 5)
        return 0;
    *start = PyLong_AsSsize_t(PyTuple_GET_ITEM(ra, 3));
    *end = PyLong_AsSsize_t(PyTuple_GET_ITEM(ra, 4));
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* verify_newsa_info's length test of an algorithm attribute: its payload holds the head
 * (68 or 72 bytes) and the key alg_key_len names */
static int alg_holds_key(const unsigned char *b, Py_ssize_t blen, Py_ssize_t start,
                         Py_ssize_t end, Py_ssize_t head)
{
    if (start < 0 || end < start || start + 68 > blen)
        return 0;
    return end - start >= head + (Py_ssize_t)((u32(b + start + 64) + 7) / 8);
}

static PyObject *bytes_at(const unsigned char *p, Py_ssize_t n)
{
    return PyBytes_FromStringAndSize((const char *)p, n);
}

static PyObject *newsa_info(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "newsa_info(buf, off, attrs, UsersaInfo)");
        return NULL;
    }
    PyObject *buf = args[0], *attrs = args[2], *cls = args[3];
    if (!PyBytes_CheckExact(buf) || !PyDict_CheckExact(attrs) || !PyType_Check(cls))
        Py_RETURN_NONE;
    Py_ssize_t off = PyLong_AsSsize_t(args[1]);
    if (off == -1 && PyErr_Occurred())
        return NULL;
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t blen = PyBytes_GET_SIZE(buf);
    if (off < 0 || off + INFO_LEN > blen)
        Py_RETURN_NONE;
    const unsigned char *p = b + off, *sel = p;
    unsigned proto = p[76], sa_family = u16(p + 212), mode = p[214];
    unsigned replay_window = p[215], flags = p[216];

    /* the address family, the selector */
    if (sa_family != AF_INET_ && sa_family != AF_INET6_)
        Py_RETURN_NONE;
    unsigned family = u16(sel + 40);
    if (!family && !(flags & STATE_AF_UNSPEC))
        family = sa_family;
    if (family == AF_INET_) {
        if (sel[42] > 32 || sel[43] > 32)
            Py_RETURN_NONE;
    } else if (family == AF_INET6_) {
        if (sel[42] > 128 || sel[43] > 128)
            Py_RETURN_NONE;
    } else if (family != 0) {
        Py_RETURN_NONE;
    }
    if (flags & STATE_ESN)
        Py_RETURN_NONE;     /* verify_replay: REPLAY_ESN_VAL and its checks */
    if (mode > 4 || mode == 3)  /* transport, tunnel, route optimisation, BEET */
        Py_RETURN_NONE;

    /* the attributes: only known ones, algorithm attributes that hold their keys */
    Py_ssize_t pos = 0;
    PyObject *key, *ra;
    int aead = 0, crypt = 0, auth = 0;
    unsigned sa_dir = 0;
    while (PyDict_Next(attrs, &pos, &key, &ra)) {
        long t = PyLong_Check(key) ? PyLong_AsLong(key) : -1;
        if (t <= 0 || t >= ATTR_MAX || !known[t]) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        Py_ssize_t start, end;
        if (!bounds(ra, &start, &end) || start < 0 || end > blen || end < start)
            Py_RETURN_NONE;
        switch (t) {
        case ALG_AEAD:
            aead = 1;
            if (!alg_holds_key(b, blen, start, end, 72))
                Py_RETURN_NONE;
            break;
        case ALG_AUTH_TRUNC:
            auth = 1;
            if (!alg_holds_key(b, blen, start, end, 72))
                Py_RETURN_NONE;
            break;
        case ALG_AUTH:
            auth = 1;
            if (!alg_holds_key(b, blen, start, end, 68))
                Py_RETURN_NONE;
            break;
        case ALG_CRYPT:
            crypt = 1;
            if (!alg_holds_key(b, blen, start, end, 68))
                Py_RETURN_NONE;
            break;
        case SA_DIR:
            if (end <= start)
                Py_RETURN_NONE;
            sa_dir = b[start];
            break;
        }
    }
    if (proto == IPPROTO_ESP_) {
        if (!(aead || crypt || auth) || ((auth || crypt) && aead))
            Py_RETURN_NONE;
    } else if (proto == IPPROTO_AH_) {
        if (!auth || aead || crypt)
            Py_RETURN_NONE;
    } else {
        Py_RETURN_NONE;
    }
    if (sa_dir == SA_DIR_OUT) {
        if (flags & (STATE_DECAP_DSCP | STATE_ICMP | STATE_WILDRECV) || replay_window)
            Py_RETURN_NONE;
    } else if (sa_dir == SA_DIR_IN) {
        if (flags & STATE_NOPMTUDISC)
            Py_RETURN_NONE;
    }

    /* accepted: the fields of sa_verify.USERSA_INFO_IN, as a UsersaInfo (the items first:
     * the tuple is tracked by the collector from its allocation on) */
    PyObject *items[15] = {
        bytes_at(p, 56), bytes_at(p + 56, 16), bytes_at(p + 72, 4),
        PyLong_FromUnsignedLong(proto), bytes_at(p + 77, 3), bytes_at(p + 80, 16),
        bytes_at(p + 96, 64), bytes_at(p + 160, 32), bytes_at(p + 192, 12),
        PyLong_FromUnsignedLong(u32(p + 204)), PyLong_FromUnsignedLong(u32(p + 208)),
        PyLong_FromUnsignedLong(sa_family), PyLong_FromUnsignedLong(mode),
        PyLong_FromUnsignedLong(replay_window), PyLong_FromUnsignedLong(flags),
    };
    PyObject *t = NULL;
    for (int i = 0; i < 15; i++)
        if (items[i] == NULL)
            goto fail;
    t = ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 15);
    if (t == NULL)
        goto fail;
    for (int i = 0; i < 15; i++)
        PyTuple_SET_ITEM(t, i, items[i]);
    return t;
fail:
    for (int i = 0; i < 15; i++)
        Py_XDECREF(items[i]);
    return NULL;
}

static PyObject *alg(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t start, end, head;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "alg(buf, ra, head)");
        return NULL;
    }
    PyObject *buf = args[0];
    head = PyLong_AsSsize_t(args[2]);
    if (head == -1 && PyErr_Occurred())
        return NULL;
    if (!PyBytes_CheckExact(buf) || !bounds(args[1], &start, &end) || head < 0)
        Py_RETURN_NONE;
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t blen = PyBytes_GET_SIZE(buf);
    if (start < 0 || end < start || end > blen)
        Py_RETURN_NONE;
    /* the fixed head, zero-padded to 72 bytes when the attribute is shorter */
    unsigned char fixed[72] = {0};
    memcpy(fixed, b + start, end - start < 72 ? (size_t)(end - start) : 72);
    unsigned long key_len = u32(fixed + 64), second = u32(fixed + 68);
    /* c_name: alg_name up to the first NUL, byte 63 forced to NUL */
    const unsigned char *nul = memchr(fixed, 0, 63);
    Py_ssize_t nlen = nul ? nul - fixed : 63;
    /* the key: buf[start + head : min(start + head + (key_len + 7) / 8, end)] */
    Py_ssize_t lo = start + head, hi = lo + (Py_ssize_t)((key_len + 7ULL) / 8);
    if (hi > end)
        hi = end;
    if (lo > blen)
        lo = blen;
    PyObject *name = PyUnicode_DecodeLatin1((const char *)fixed, nlen, NULL);
    PyObject *key = bytes_at(b + lo, hi > lo ? hi - lo : 0);
    PyObject *kl = PyLong_FromUnsignedLong(key_len), *sec = PyLong_FromUnsignedLong(second);
    if (name == NULL || key == NULL || kl == NULL || sec == NULL) {
        Py_XDECREF(name);
        Py_XDECREF(key);
        Py_XDECREF(kl);
        Py_XDECREF(sec);
        return NULL;
    }
    PyObject *t = PyTuple_New(4);
    if (t == NULL) {
        Py_DECREF(name);
        Py_DECREF(key);
        Py_DECREF(kl);
        Py_DECREF(sec);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, name);
    PyTuple_SET_ITEM(t, 1, kl);
    PyTuple_SET_ITEM(t, 2, key);
    PyTuple_SET_ITEM(t, 3, sec);
    return t;
}

static PyMethodDef methods[] = {
    {"alg", (PyCFunction)(void (*)(void))alg, METH_FASTCALL,
     "alg(buf, ra, head): (alg_name, alg_key_len, key, second field) of an algorithm "
     "attribute, as sa_verify._alg reads it; None for the Python path"},
    {"newsa_info", (PyCFunction)(void (*)(void))newsa_info, METH_FASTCALL,
     "newsa_info(buf, off, attrs, UsersaInfo): the xfrm_usersa_info when verify_newsa_info "
     "would accept the request for sure, else None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_safast", NULL, -1, methods};

PyMODINIT_FUNC PyInit__safast(void) { return PyModule_Create(&module); }
