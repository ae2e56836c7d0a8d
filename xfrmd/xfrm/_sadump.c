/* The C half of dump_one_state (xfrmd/xfrm/state.py keeps the reference Python:
 * SecurityAssociation.dump_message).
 *
 * setup(SecurityAssociation, LifetimeCur, Algo, fallback) learns where the slots sit.
 * message(x, seq, portid[, flags[, type]]) then builds the NEWSA message dump_one_state
 * puts (nlmsghdr, copy_to_user_state's xfrm_usersa_info, copy_to_user_state_extra's
 * attributes) in one allocation, reading the fields in place: the message of a dump, of a
 * GETSA answer and of ALLOCSPI's answer (and, with its type, xfrm_notify_sa's NEWSA/UPDSA
 * event, the same message). Anything uncommon -- a state with a field of its own among the
 * rare ones (its __dict__: IPComp, a care-of address, TFC padding, a pCPU, IP-TFS, extra
 * flags, a set mark, ...), an offload binding (the driver refreshes the counters first), an
 * encapsulation, an ESN replay state, a field that is not an int of its C width or bytes of
 * its length, an object that is not exactly a SecurityAssociation -- goes to fallback(x,
 * seq, portid, flags), the Python method, whose answer or exception is the result.
 * Parity: tests/test_sadump.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "../_slots.h"      /* slot_offset_s */
#include <string.h>

#define NLMSG_HDRLEN 16
#define INFO_LEN 224                /* xfrm_usersa_info */
#define XFRM_MSG_NEWSA 16
#define NLM_F_MULTI 2
#define XFRMA_ALG_AUTH 1
#define XFRMA_ALG_CRYPT 2
#define XFRMA_REPLAY_VAL 10
#define XFRMA_ALG_AEAD 18
#define XFRMA_ALG_AUTH_TRUNC 20
#define XFRMA_MARK 21
#define XFRMA_LASTUSED 15
#define XFRMA_IF_ID 31
#define XFRMA_SA_DIR 33
#define ALGO_HEAD 64                /* alg_name */

/* SecurityAssociation's slots this path reads, in the order of `names` */
enum { ID, FAMILY, SADDR, MODE, REQID, REPLAY_WINDOW, FLAGS, SEL, AEAD, AUTH, ENC, ENCAP, LFT,
       CURLFT, STATS, REPLAY, REPLAY_ESN, MARK, IF_ID, DIR, LASTUSED, KM_SEQ, XSO, NSLOTS };
static const char *const names[NSLOTS] = {
    "id", "family", "saddr", "mode", "reqid", "replay_window", "flags", "sel", "aead", "auth",
    "enc", "encap", "lft", "curlft", "stats", "replay", "replay_esn", "mark", "if_id", "dir",
    "lastused", "km_seq", "xso",
};
static Py_ssize_t off[NSLOTS];
enum { C_BYTES, C_PACKETS, C_ADD_TIME, C_USE_TIME, NCUR };
static const char *const cur_names[NCUR] = {"bytes", "packets", "add_time", "use_time"};
static Py_ssize_t cur_off[NCUR];
static PyTypeObject *SA_t, *Cur_t, *Algo_t;
static PyObject *fallback;

static inline PyObject *slot(PyObject *o, Py_ssize_t at) { return *(PyObject **)((char *)o + at); }

/* an int (an IntEnum too, as struct packs it) of at most `bits` bits, unsigned; 0 (and
 * *ok = 0) otherwise */
static unsigned long long uint_of(PyObject *v, int bits, int *ok)
{
    if (v == NULL || !PyLong_Check(v)) {
        *ok = 0;
        return 0;
    }
    unsigned long long r = PyLong_AsUnsignedLongLong(v);
    if (r == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        *ok = 0;
        return 0;
    }
    if (bits < 64 && r >> bits) {
        *ok = 0;
        return 0;
    }
    return r;
}

/* n ints of the C width `bits` from a tuple (a named tuple too) or a list of exactly n */
static int uints(PyObject *seq, int n, int bits, unsigned long long *out)
{
    if (seq == NULL || !(PyTuple_Check(seq) || PyList_CheckExact(seq))
            || PySequence_Fast_GET_SIZE(seq) != n)
        return 0;
    int ok = 1;
    for (int i = 0; i < n; i++)
        out[i] = uint_of(PySequence_Fast_GET_ITEM(seq, i), bits, &ok);
    return ok;
}

static inline void put16(unsigned char *p, unsigned v) { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); }
static inline void put32(unsigned char *p, unsigned long v) { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); }
static inline void put64(unsigned char *p, unsigned long long v) { uint64_t x = v; memcpy(p, &x, 8); }

/* an attached algorithm (state.Algo: name, key_len, key, trunc_len, icv_len), read */
typedef struct {
    const char *name;
    Py_ssize_t name_len;
    const char *key;
    Py_ssize_t key_len_bytes;
    unsigned long long key_bits, trunc, icv;
} algo_t;

static int read_algo(PyObject *a, algo_t *out)
{
    if (Py_TYPE(a) != Algo_t || PyTuple_GET_SIZE(a) != 5)
        return 0;
    PyObject *name = PyTuple_GET_ITEM(a, 0), *key = PyTuple_GET_ITEM(a, 2);
    if (!PyUnicode_CheckExact(name) || !PyBytes_CheckExact(key))
        return 0;
    int ok = 1;
    out->key_bits = uint_of(PyTuple_GET_ITEM(a, 1), 32, &ok);
    out->trunc = uint_of(PyTuple_GET_ITEM(a, 3), 32, &ok);
    out->icv = uint_of(PyTuple_GET_ITEM(a, 4), 32, &ok);
    out->name = PyUnicode_AsUTF8AndSize(name, &out->name_len);
    if (out->name == NULL) {
        PyErr_Clear();
        return 0;
    }
    if (out->name_len > ALGO_HEAD - 1)      /* Algo.head: encode()[:63].ljust(64, NUL) */
        out->name_len = ALGO_HEAD - 1;
    out->key = PyBytes_AS_STRING(key);
    out->key_len_bytes = PyBytes_GET_SIZE(key);
    return ok;
}

/* one attribute: header, payload, zero padding to 4 bytes; returns the bytes written */
static inline Py_ssize_t attr_hdr(unsigned char *p, unsigned type, Py_ssize_t payload)
{
    put16(p, (unsigned)(4 + payload));
    put16(p + 2, type);
    Py_ssize_t n = (4 + payload + 3) & ~(Py_ssize_t)3;
    memset(p + 4 + payload, 0, n - 4 - payload);
    return n;
}

/* an algorithm attribute: alg_name, alg_key_len, [second], the key */
static Py_ssize_t put_algo(unsigned char *p, unsigned type, const algo_t *a, int second,
                           unsigned long long v)
{
    Py_ssize_t head = ALGO_HEAD + 4 + (second ? 4 : 0), payload = head + a->key_len_bytes;
    Py_ssize_t n = attr_hdr(p, type, payload);
    unsigned char *q = p + 4;
    memset(q, 0, ALGO_HEAD);
    memcpy(q, a->name, a->name_len);
    put32(q + ALGO_HEAD, (unsigned long)a->key_bits);
    if (second)
        put32(q + ALGO_HEAD + 4, (unsigned long)v);
    memcpy(q + head, a->key, a->key_len_bytes);
    return n;
}

static inline Py_ssize_t algo_size(const algo_t *a, int second)
{
    return (4 + ALGO_HEAD + 4 + (second ? 4 : 0) + a->key_len_bytes + 3) & ~(Py_ssize_t)3;
}

/* the message, or NULL without an error set: the fallback's */
static PyObject *build(PyObject *x, unsigned type, unsigned long seq, unsigned long portid,
                       unsigned flags)
{
    if (Py_TYPE(x) != SA_t)
        return NULL;
    PyObject **dp = _PyObject_GetDictPtr(x);
    if (dp != NULL && *dp != NULL && PyDict_GET_SIZE(*dp) != 0)
        return NULL;        /* a rare field of its own */
    PyObject *v[NSLOTS];
    for (int i = 0; i < NSLOTS; i++)
        if ((v[i] = slot(x, off[i])) == NULL)
            return NULL;
    if (v[XSO] != Py_None || v[ENCAP] != Py_None || v[REPLAY_ESN] != Py_None)
        return NULL;
    PyObject *id = v[ID], *sel = v[SEL], *saddr = v[SADDR], *cur = v[CURLFT];
    if (!PyTuple_Check(id) || PyTuple_GET_SIZE(id) != 3 || !PyBytes_CheckExact(sel)
            || PyBytes_GET_SIZE(sel) != 56 || !PyBytes_CheckExact(saddr)
            || PyBytes_GET_SIZE(saddr) != 16 || Py_TYPE(cur) != Cur_t)
        return NULL;
    PyObject *daddr = PyTuple_GET_ITEM(id, 0);
    if (!PyBytes_CheckExact(daddr) || PyBytes_GET_SIZE(daddr) != 16)
        return NULL;
    int ok = 1;
    unsigned long long spi = uint_of(PyTuple_GET_ITEM(id, 1), 32, &ok);
    unsigned long long proto = uint_of(PyTuple_GET_ITEM(id, 2), 8, &ok);
    unsigned long long lft[8], curlft[4], stats[3], replay[3], mark[2];
    if (!ok || !uints(v[LFT], 8, 64, lft) || !uints(v[STATS], 3, 32, stats)
            || !uints(v[REPLAY], 3, 32, replay) || !uints(v[MARK], 2, 32, mark))
        return NULL;
    for (int i = 0; i < NCUR; i++) {
        PyObject *c = slot(cur, cur_off[i]);
        curlft[i] = uint_of(c, 64, &ok);
    }
    unsigned long long km_seq = uint_of(v[KM_SEQ], 32, &ok), reqid = uint_of(v[REQID], 32, &ok);
    unsigned long long family = uint_of(v[FAMILY], 16, &ok), mode = uint_of(v[MODE], 8, &ok);
    unsigned long long rw = uint_of(v[REPLAY_WINDOW], 8, &ok), fl = uint_of(v[FLAGS], 8, &ok);
    unsigned long long lastused = uint_of(v[LASTUSED], 64, &ok);
    unsigned long long if_id = uint_of(v[IF_ID], 32, &ok), dir = uint_of(v[DIR], 8, &ok);
    algo_t aead, auth, enc;
    int has_aead = v[AEAD] != Py_None, has_auth = v[AUTH] != Py_None, has_enc = v[ENC] != Py_None;
    if (!ok || (has_aead && !read_algo(v[AEAD], &aead)) || (has_auth && !read_algo(v[AUTH], &auth))
            || (has_enc && !read_algo(v[ENC], &enc)))
        return NULL;

    /* copy_to_user_state_extra's attributes, in its order */
    Py_ssize_t n = NLMSG_HDRLEN + INFO_LEN;
    if (lastused)
        n += 12;
    if (has_aead)
        n += algo_size(&aead, 1);
    if (has_auth)
        n += algo_size(&auth, 0) + algo_size(&auth, 1);
    if (has_enc)
        n += algo_size(&enc, 0);
    if (mark[0] | mark[1])
        n += 12;
    n += 16;                                    /* XFRMA_REPLAY_VAL */
    if (if_id)
        n += 8;
    if (dir)
        n += 8;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out), *q = p + NLMSG_HDRLEN;
    put32(p, (unsigned long)n);
    put16(p + 4, type);
    put16(p + 6, flags);
    put32(p + 8, seq);
    put32(p + 12, portid);
    /* xfrm_usersa_info */
    memcpy(q, PyBytes_AS_STRING(sel), 56);
    memcpy(q + 56, PyBytes_AS_STRING(daddr), 16);
    q[72] = (unsigned char)(spi >> 24);
    q[73] = (unsigned char)(spi >> 16);
    q[74] = (unsigned char)(spi >> 8);
    q[75] = (unsigned char)spi;
    q[76] = (unsigned char)proto;
    memset(q + 77, 0, 3);                       /* id_pad: the class default (no __dict__) */
    memcpy(q + 80, PyBytes_AS_STRING(saddr), 16);
    for (int i = 0; i < 8; i++)
        put64(q + 96 + 8 * i, lft[i]);
    for (int i = 0; i < 4; i++)
        put64(q + 160 + 8 * i, curlft[i]);
    for (int i = 0; i < 3; i++)
        put32(q + 192 + 4 * i, (unsigned long)stats[i]);
    put32(q + 204, (unsigned long)km_seq);
    put32(q + 208, (unsigned long)reqid);
    put16(q + 212, (unsigned)family);
    q[214] = (unsigned char)mode;
    q[215] = (unsigned char)rw;
    q[216] = (unsigned char)fl;
    memset(q + 217, 0, 7);
    q += INFO_LEN;
    if (lastused) {
        q += attr_hdr(q, XFRMA_LASTUSED, 8);
        put64(q - 8, lastused);
    }
    if (has_aead)
        q += put_algo(q, XFRMA_ALG_AEAD, &aead, 1, aead.icv);
    if (has_auth) {
        q += put_algo(q, XFRMA_ALG_AUTH, &auth, 0, 0);
        q += put_algo(q, XFRMA_ALG_AUTH_TRUNC, &auth, 1, auth.trunc);
    }
    if (has_enc)
        q += put_algo(q, XFRMA_ALG_CRYPT, &enc, 0, 0);
    if (mark[0] | mark[1]) {
        q += attr_hdr(q, XFRMA_MARK, 8);
        put32(q - 8, (unsigned long)mark[0]);
        put32(q - 4, (unsigned long)mark[1]);
    }
    q += attr_hdr(q, XFRMA_REPLAY_VAL, 12);
    for (int i = 0; i < 3; i++)
        put32(q - 12 + 4 * i, (unsigned long)replay[i]);
    if (if_id) {
        q += attr_hdr(q, XFRMA_IF_ID, 4);
        put32(q - 4, (unsigned long)if_id);
    }
    if (dir) {
        q += attr_hdr(q, XFRMA_SA_DIR, 1);
        q[-4] = (unsigned char)dir;
    }
    return out;
}

static PyObject *message(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 5) {
        PyErr_SetString(PyExc_TypeError, "message(x, seq, portid[, flags[, type]])");
        return NULL;
    }
    if (fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_sadump.setup() was not called");
        return NULL;
    }
    int ok = 1;
    unsigned long long seq = uint_of(args[1], 32, &ok), portid = uint_of(args[2], 32, &ok);
    unsigned long long flags = nargs >= 4 ? uint_of(args[3], 16, &ok) : NLM_F_MULTI;
    unsigned long long type = nargs == 5 ? uint_of(args[4], 16, &ok) : XFRM_MSG_NEWSA;
    if (ok) {
        PyObject *out = build(args[0], (unsigned)type, (unsigned long)seq, (unsigned long)portid,
                              (unsigned)flags);
        if (out != NULL || PyErr_Occurred())
            return out;
    }
    return PyObject_Vectorcall(fallback, args, nargs, NULL);
}

static PyObject *setup(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyType_Check(args[0]) || !PyType_Check(args[1]) || !PyType_Check(args[2])
            || !PyCallable_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "setup(SecurityAssociation, LifetimeCur, Algo, fallback)");
        return NULL;
    }
    PyTypeObject *st = (PyTypeObject *)args[0], *ct = (PyTypeObject *)args[1];
    for (int i = 0; i < NSLOTS; i++)
        if ((off[i] = slot_offset_s(st, names[i])) < 0) {
            PyErr_Format(PyExc_ValueError, "SecurityAssociation has no slot %s", names[i]);
            return NULL;
        }
    for (int i = 0; i < NCUR; i++)
        if ((cur_off[i] = slot_offset_s(ct, cur_names[i])) < 0) {
            PyErr_Format(PyExc_ValueError, "LifetimeCur has no slot %s", cur_names[i]);
            return NULL;
        }
    Py_XSETREF(SA_t, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(Cur_t, (PyTypeObject *)Py_NewRef(args[1]));
    Py_XSETREF(Algo_t, (PyTypeObject *)Py_NewRef(args[2]));
    Py_XSETREF(fallback, Py_NewRef(args[3]));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", (PyCFunction)(void (*)(void))setup, METH_FASTCALL,
     "setup(SecurityAssociation, LifetimeCur, Algo, fallback): where the state keeps the "
     "fields message() reads, and the Python method for the rest"},
    {"message", (PyCFunction)(void (*)(void))message, METH_FASTCALL,
     "message(x, seq, portid[, flags[, type]]): dump_one_state's NEWSA message of state x"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sadump", NULL, -1, methods};

PyMODINIT_FUNC PyInit__sadump(void) { return PyModule_Create(&module); }
