/*
 * _espfast: the common packet of xfrmd/datapath/esp.py (EspGcmSA) in C.
 *
 * esp.py stays the reference. This file does only what its fast paths do — an
 * rfc4106(gcm(aes)) SA without ESN, with the full 16-byte ICV and the default seqiv IV —
 * and hands everything else back to the Python functions unchanged: ESN, truncated ICVs,
 * caller-given IVs, sequence numbers near the wrap, another SA's SPI, numbers inside or left
 * of the replay window, corrupt packets, arguments of another type. A hand-back happens
 * before this code changed any state, so the Python version sees the SA exactly as it was
 * and gives its own result, counters and exception.
 *
 * The AEAD stays the `cryptography` package's AESGCM object of the SA, made once in
 * EspGcmSA.__post_init__ (the tfm esp_init_aead allocates): its bound encrypt/decrypt are
 * called with PyObject_Vectorcall, so no crypto code and no OpenSSL header is needed here.
 * What C saves is the Python around those two calls (docs/performance.md, "ESP encrypt +
 * decrypt"): the IV, the nonce, the header, the trailer, the concatenations, the replay
 * window's shift and the counters.
 *
 * The per-SA object (Esp) is built from the tuples esp.py already keeps for its own fast
 * paths (EspGcmSA._seal and ._open) and the Python methods to hand back to; esp.py installs
 * its bound methods on the SA in place of the Python ones.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "../_slots.h"          /* learn_offsets: the __slots__ members */
#include <stdint.h>
#include <string.h>

/* the keyword encapsulate takes (output.esp_output passes seq=) */
static PyObject *str_seq;

typedef struct {
    PyObject_HEAD
    /* output: EspGcmSA._seal = (encrypt, salt, ivsalt, spi, replay, stats); encrypt is NULL
     * when the SA has none (a caller's IV source) */
    PyObject *encrypt;
    uint64_t ivsalt;            /* seqiv: IV = 64-bit sequence number XOR this */
    /* input: EspGcmSA._open = (decrypt, salt, spi, min_len, replay, window, mask, stats);
     * decrypt is NULL when the SA has none, or the window is wider than 64 packets (the
     * bitmap is then no uint64_t: the Python code keeps it) */
    PyObject *decrypt;
    Py_ssize_t min_len;
    unsigned window;            /* replay window in packets, 0 = no check */
    uint64_t mask;              /* (1 << window) - 1 */
    /* both */
    unsigned char salt[4];      /* the last 4 bytes of the XFRMA_ALG_AEAD key */
    uint32_t spi;
    PyObject *replay;           /* the SA's ReplayWindow: oseq, top, bitmap */
    PyObject *stats;            /* the SA's Counters: bytes, packets */
    /* where those attributes live: both classes have __slots__, whose values sit at fixed
     * offsets in the object (what their member descriptors read and write); going there
     * directly saves an attribute lookup each, a fifth of the per-packet cost */
    Py_ssize_t oseq, top, bitmap, bytes, packets;
    /* the Python versions (bound to the SA), for every case not handled here */
    PyObject *py_encapsulate, *py_decapsulate, *py_batch;
} EspObject;

/* -- small helpers ------------------------------------------------------------------------ */

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be64(unsigned char *p, uint64_t v)
{
    put_be32(p, v >> 32);
    put_be32(p + 4, (uint32_t)v);
}

/* An exact int in [0, max] as *out; 0 (and no exception set) for anything else. */
static int as_u64(PyObject *o, uint64_t max, uint64_t *out)
{
    if (!PyLong_CheckExact(o))
        return 0;
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();          /* negative or wider than 64 bits */
        return 0;
    }
    if (v > max)
        return 0;
    *out = v;
    return 1;
}

/* The slot at `off` of `obj` (the offsets below) as in as_u64; 0 if unset or no such int. */
static int slot_u64(PyObject *obj, Py_ssize_t off, uint64_t max, uint64_t *out)
{
    PyObject *v = *(PyObject **)((char *)obj + off);
    return v != NULL && as_u64(v, max, out);
}

/* Store a new reference in the slot at `off`, as a member descriptor's __set__ does. */
static void slot_store(PyObject *obj, Py_ssize_t off, PyObject *v)
{
    Py_XSETREF(*(PyObject **)((char *)obj + off), v);
}

static int slot_set_u64(PyObject *obj, Py_ssize_t off, uint64_t v)
{
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    if (o == NULL)
        return -1;
    slot_store(obj, off, o);
    return 0;
}

/* obj.<slot> += n: the counters are Python ints (a small one added in C, any other through
 * the number protocol, as the Python code's += would). */
static int slot_add(PyObject *obj, Py_ssize_t off, Py_ssize_t n)
{
    PyObject *v = *(PyObject **)((char *)obj + off);
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "a counter is unset");
        return -1;
    }
    PyObject *sum = NULL;
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (!overflow && x >= 0 && x < LLONG_MAX / 2 && n < LLONG_MAX / 2)
            sum = PyLong_FromLongLong(x + n);
    }
    if (sum == NULL && !PyErr_Occurred()) {
        PyObject *d = PyLong_FromSsize_t(n);
        if (d != NULL) {
            sum = PyNumber_InPlaceAdd(v, d);
            Py_DECREF(d);
        }
    }
    if (sum == NULL)
        return -1;
    slot_store(obj, off, sum);
    return 0;
}

/* Both counters hold a value (a deleted one is the Python code's AttributeError). */
static int counters_set(PyObject *stats, Py_ssize_t bytes, Py_ssize_t packets)
{
    return *(PyObject **)((char *)stats + bytes) != NULL &&
           *(PyObject **)((char *)stats + packets) != NULL;
}

/* A new bytes object of `len` bytes copied from `p`. */
static PyObject *bytes_of(const void *p, Py_ssize_t len)
{
    return PyBytes_FromStringAndSize((const char *)p, len);
}

/* Hand the call back to the Python version, arguments as given. */
static PyObject *python_version(PyObject *fn, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    return PyObject_Vectorcall(fn, args, nargs, kwnames);
}

/* The AEAD call failed: when it is an ordinary exception, clear it so that the Python
 * version can run from the unchanged SA and raise (and count) what it raises; 0 when it is
 * not one to hand back (KeyboardInterrupt, MemoryError: raised as is). */
static int clear_for_python(void)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception) || PyErr_ExceptionMatches(PyExc_MemoryError))
        return 0;
    PyErr_Clear();
    return 1;
}

/* -- output: esp_output's framing (RFC 4303 §2, RFC 4106 §3-5) ---------------------------- */

/*
 * ESP header (SPI, sequence number) + IV + AES-GCM(payload + trailer) + ICV for `payload`
 * (behind the bytes `inner` if not NULL), numbered `seq`, the whole behind the bytes `outer`
 * if not NULL; NULL with an exception set, or with none when the AEAD call raised and the
 * caller is to hand back to Python.
 *
 *   IV      seqiv (crypto/seqiv.c): the 64-bit sequence number XOR the SA's salt
 *   nonce   the key's 4-byte salt + the IV (RFC 4106 §4)
 *   AAD     the ESP header itself without ESN (RFC 4106 §5)
 *   trailer monotonic padding 1, 2, … to a multiple of 4 with the two trailer bytes, then
 *           the pad length and the next header (RFC 4303 §2.4; esp_output_fill_trailer)
 */
static PyObject *seal_one(EspObject *self, PyObject *payload, unsigned next_header,
                          uint32_t seq, PyObject *inner, PyObject *outer)
{
    Py_ssize_t ilen = inner == NULL ? 0 : PyBytes_GET_SIZE(inner);
    Py_ssize_t n = ilen + PyBytes_GET_SIZE(payload);
    Py_ssize_t pad = -(n + 2) & 3;
    unsigned char hdr[8], nonce[12];

    put_be32(hdr, self->spi);
    put_be32(hdr + 4, seq);
    memcpy(nonce, self->salt, 4);
    put_be64(nonce + 4, (uint64_t)seq ^ self->ivsalt);

    PyObject *plain = PyBytes_FromStringAndSize(NULL, n + pad + 2);
    if (plain == NULL)
        return NULL;
    unsigned char *t = (unsigned char *)PyBytes_AS_STRING(plain);
    if (ilen)
        memcpy(t, PyBytes_AS_STRING(inner), ilen);
    memcpy(t + ilen, PyBytes_AS_STRING(payload), n - ilen);
    for (Py_ssize_t i = 0; i < pad; i++)
        t[n + i] = (unsigned char)(i + 1);
    t[n + pad] = (unsigned char)pad;
    t[n + pad + 1] = (unsigned char)next_header;

    PyObject *args[3] = {bytes_of(nonce, 12), plain, bytes_of(hdr, 8)};
    PyObject *sealed = NULL;
    if (args[0] != NULL && args[2] != NULL)
        sealed = PyObject_Vectorcall(self->encrypt, args, 3, NULL);
    for (int i = 0; i < 3; i++)
        Py_XDECREF(args[i]);
    if (sealed == NULL) {
        clear_for_python();     /* cleared: the caller hands back; else it is raised */
        return NULL;
    }
    if (!PyBytes_Check(sealed)) {
        Py_DECREF(sealed);
        PyErr_SetString(PyExc_TypeError, "AESGCM.encrypt returned no bytes");
        return NULL;
    }

    /* outer header + ESP header + IV + ciphertext and ICV, in one allocation. (Letting the
     * AEAD write into it, encrypt_into with a memoryview, measured 0.1-0.2 µs slower: the
     * output buffer's checks cost more than the copy of 1.4 kB.) */
    Py_ssize_t slen = PyBytes_GET_SIZE(sealed);
    Py_ssize_t olen = outer == NULL ? 0 : PyBytes_GET_SIZE(outer);
    PyObject *out = PyBytes_FromStringAndSize(NULL, olen + 16 + slen);
    if (out != NULL) {
        char *o = PyBytes_AS_STRING(out);
        if (olen)
            memcpy(o, PyBytes_AS_STRING(outer), olen);
        memcpy(o + olen, hdr, 8);
        memcpy(o + olen + 8, nonce + 4, 8);
        memcpy(o + olen + 16, PyBytes_AS_STRING(sealed), slen);
    }
    Py_DECREF(sealed);
    return out;
}

/* A next header the fast path takes: an exact int 0..255 (the Python one indexes a list). */
static int next_header_of(PyObject *o, unsigned *nh)
{
    uint64_t v;
    if (!as_u64(o, 255, &v))
        return 0;
    *nh = (unsigned)v;
    return 1;
}

/* EspGcmSA.encapsulate(payload, next_header, seq=None) */
static PyObject *Esp_encapsulate(EspObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    PyObject *seq_arg = Py_None;
    if (kwnames != NULL) {
        /* only encapsulate(payload, nh, seq=…), as output.esp_output calls it */
        if (nargs != 2 || PyTuple_GET_SIZE(kwnames) != 1 ||
            PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, 0), str_seq) != 0)
            goto python;
        seq_arg = args[2];
    } else if (nargs == 3) {
        seq_arg = args[2];
    } else if (nargs != 2) {
        goto python;
    }
    PyObject *payload = args[0];
    unsigned nh;
    if (!PyBytes_CheckExact(payload) || !next_header_of(args[1], &nh) ||
        !counters_set(self->stats, self->bytes, self->packets))
        goto python;

    uint64_t seq;
    int from_oseq = seq_arg == Py_None;
    if (from_oseq) {
        /* the next outbound number; the wrap (SequenceOverflow) is the Python code's */
        if (!slot_u64(self->replay, self->oseq, 0xFFFFFFFEu, &seq))
            goto python;
        seq += 1;
    } else if (!as_u64(seq_arg, 0xFFFFFFFFu, &seq)) {
        goto python;            /* out of the header's 32 bits: Python raises */
    }

    PyObject *out = seal_one(self, payload, nh, (uint32_t)seq, NULL, NULL);
    if (out == NULL) {
        if (PyErr_Occurred())
            return NULL;
        goto python;
    }
    /* the state, as the Python version leaves it: oseq, then the counters */
    if ((from_oseq && slot_set_u64(self->replay, self->oseq, seq) < 0) ||
        slot_add(self->stats, self->bytes, PyBytes_GET_SIZE(payload)) < 0 ||
        slot_add(self->stats, self->packets, 1) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;

python:
    return python_version(self->py_encapsulate, args, nargs, kwnames);
}

/* A list of `count` exact bytes objects, or None (NULL). 0 for anything else. */
static int bytes_list(PyObject *o, Py_ssize_t count, PyObject **list)
{
    *list = NULL;
    if (o == Py_None)
        return 1;
    if (!PyList_CheckExact(o) || PyList_GET_SIZE(o) != count)
        return 0;
    for (Py_ssize_t i = 0; i < count; i++)
        if (!PyBytes_CheckExact(PyList_GET_ITEM(o, i)))
            return 0;
    *list = o;
    return 1;
}

/* EspGcmSA.encapsulate_batch(payloads, next_header, first_seq, outer=None, inner=None): the
 * numbers first_seq, first_seq + 1, … (the caller's; no wrap check), each payload behind
 * its inner header and each packet behind its outer header if given, the counters added
 * once at the end. */
static PyObject *Esp_encapsulate_batch(EspObject *self, PyObject *const *args,
                                       Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames != NULL || nargs < 3 || nargs > 5 || !PyList_CheckExact(args[0]))
        goto python;
    PyObject *payloads = args[0], *outer, *inner;
    Py_ssize_t count = PyList_GET_SIZE(payloads);
    unsigned nh;
    uint64_t first;
    if (count == 0 || !next_header_of(args[1], &nh) ||
        !as_u64(args[2], 0xFFFFFFFFu, &first) || first + (uint64_t)count - 1 > 0xFFFFFFFFu ||
        !bytes_list(payloads, count, &payloads) ||
        !bytes_list(nargs > 3 ? args[3] : Py_None, count, &outer) ||
        !bytes_list(nargs > 4 ? args[4] : Py_None, count, &inner) ||
        !counters_set(self->stats, self->bytes, self->packets))
        goto python;

    PyObject *out = PyList_New(count);
    if (out == NULL)
        return NULL;
    Py_ssize_t nbytes = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        /* the AEAD call runs no Python code that could change the lists, but the items
         * are held across it anyway */
        PyObject *p = PyList_GET_ITEM(payloads, i);
        PyObject *o = outer == NULL ? NULL : PyList_GET_ITEM(outer, i);
        PyObject *h = inner == NULL ? NULL : PyList_GET_ITEM(inner, i);
        Py_INCREF(p);
        Py_XINCREF(o);
        Py_XINCREF(h);
        PyObject *esp = seal_one(self, p, nh, (uint32_t)(first + i), h, o);
        nbytes += PyBytes_GET_SIZE(p) + (h == NULL ? 0 : PyBytes_GET_SIZE(h));
        Py_DECREF(p);
        Py_XDECREF(o);
        Py_XDECREF(h);
        if (esp == NULL) {
            Py_DECREF(out);
            if (PyErr_Occurred())
                return NULL;
            goto python;        /* nothing counted yet: the Python version from scratch */
        }
        PyList_SET_ITEM(out, i, esp);
    }
    if (slot_add(self->stats, self->bytes, nbytes) < 0 ||
        slot_add(self->stats, self->packets, count) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;

python:
    return python_version(self->py_batch, args, nargs, kwnames);
}

/* -- input: esp_input's common packet ----------------------------------------------------- */

/*
 * EspGcmSA.decapsulate(packet) -> (payload, next header, sequence number), for a packet of
 * this SA's SPI whose number is above the replay window's top (the common case: no bitmap
 * bit to check, xfrm_replay_check_bmp passes). Anything else goes to the Python version
 * before any state changed; so does an ICV mismatch, which the Python code decrypts again,
 * counts (integrity_failed) and raises as IntegrityError — a corrupt packet is rare, and the
 * error is then exactly the Python one.
 */
static PyObject *Esp_decapsulate(EspObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    if (kwnames != NULL || nargs != 1 || !PyBytes_CheckExact(args[0]))
        goto python;
    PyObject *packet = args[0];
    const unsigned char *pkt = (const unsigned char *)PyBytes_AS_STRING(packet);
    Py_ssize_t len = PyBytes_GET_SIZE(packet);
    if (len < self->min_len || get_be32(pkt) != self->spi ||
        !counters_set(self->stats, self->bytes, self->packets))
        goto python;
    uint64_t seq = get_be32(pkt + 4), top, bitmap = 0;
    if (!slot_u64(self->replay, self->top, UINT64_MAX, &top) || !(seq > top))
        goto python;
    if (self->window && !slot_u64(self->replay, self->bitmap, UINT64_MAX, &bitmap))
        goto python;

    /* nonce = salt + the packet's IV; the AAD is the ESP header as received */
    unsigned char nonce[12];
    memcpy(nonce, self->salt, 4);
    memcpy(nonce + 4, pkt + 8, 8);
    PyObject *dargs[3] = {bytes_of(nonce, 12), bytes_of(pkt + 16, len - 16), bytes_of(pkt, 8)};
    PyObject *plain = NULL;
    if (dargs[0] != NULL && dargs[1] != NULL && dargs[2] != NULL)
        plain = PyObject_Vectorcall(self->decrypt, dargs, 3, NULL);
    for (int i = 0; i < 3; i++)
        Py_XDECREF(dargs[i]);
    if (plain == NULL) {
        if (clear_for_python())
            goto python;        /* InvalidTag: the Python code counts and raises */
        return NULL;
    }
    if (!PyBytes_CheckExact(plain) || PyBytes_GET_SIZE(plain) < 2) {
        Py_DECREF(plain);
        goto python;
    }

    /* xfrm_replay_advance: the new top is seen, the bitmap shifted under it */
    if (self->window) {
        uint64_t shift = seq - top;
        bitmap = shift < self->window ? ((bitmap << shift) | 1) & self->mask : 1;
        if (slot_set_u64(self->replay, self->bitmap, bitmap) < 0)
            goto fail;
    }
    if (slot_set_u64(self->replay, self->top, seq) < 0)
        goto fail;

    /* the trailer: strip the padding, its length and the next header */
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(plain);
    Py_ssize_t plen = PyBytes_GET_SIZE(plain);
    unsigned next_header = p[plen - 1];
    Py_ssize_t keep = plen - 2 - p[plen - 2];
    if (keep < 0)
        keep = 0;               /* a pad length past the start: Python's slice is empty */
    PyObject *payload;
    if (Py_REFCNT(plain) == 1) {
        /* the decrypted bytes are ours alone: shorten them in place instead of copying */
        if (_PyBytes_Resize(&plain, keep) < 0)
            return NULL;        /* plain was freed */
        payload = plain;
        plain = NULL;
    } else {
        payload = bytes_of(p, keep);
        Py_CLEAR(plain);
        if (payload == NULL)
            return NULL;
    }
    if (slot_add(self->stats, self->bytes, keep) < 0 || slot_add(self->stats, self->packets, 1) < 0) {
        Py_DECREF(payload);
        return NULL;
    }
    PyObject *res = PyTuple_New(3);
    PyObject *nh_o = PyLong_FromUnsignedLong(next_header);
    PyObject *seq_o = PyLong_FromUnsignedLongLong(seq);
    if (res == NULL || nh_o == NULL || seq_o == NULL) {
        Py_XDECREF(res);
        Py_XDECREF(nh_o);
        Py_XDECREF(seq_o);
        Py_DECREF(payload);
        return NULL;
    }
    PyTuple_SET_ITEM(res, 0, payload);
    PyTuple_SET_ITEM(res, 1, nh_o);
    PyTuple_SET_ITEM(res, 2, seq_o);
    return res;

fail:
    Py_DECREF(plain);
    return NULL;

python:
    return python_version(self->py_decapsulate, args, nargs, kwnames);
}

/* -- the type ------------------------------------------------------------------------------ */

/* 4 bytes of salt from a bytes-like object (the key's last 4 bytes) */
static int salt_of(PyObject *o, unsigned char salt[4])
{
    Py_buffer view;
    if (PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) < 0)
        return -1;
    int ok = view.len == 4;
    if (ok)
        memcpy(salt, view.buf, 4);
    PyBuffer_Release(&view);
    if (!ok)
        PyErr_SetString(PyExc_ValueError, "the salt must be 4 bytes");
    return ok ? 0 : -1;
}

static int u32_of(PyObject *o, uint32_t *v)
{
    uint64_t x;
    if (!as_u64(o, 0xFFFFFFFFu, &x)) {
        PyErr_SetString(PyExc_ValueError, "expected an int of 32 bits");
        return -1;
    }
    *v = (uint32_t)x;
    return 0;
}

#define SET_REF(field, value) do { Py_INCREF(value); Py_XSETREF(self->field, value); } while (0)

/* Esp(seal, open, py_encapsulate, py_decapsulate, py_batch): seal and open are EspGcmSA's
 * _seal and _open tuples, either None. */
static int Esp_init(EspObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *seal, *open, *py_enc, *py_dec, *py_batch;
    if (!PyArg_ParseTuple(args, "OOOOO:Esp", &seal, &open, &py_enc, &py_dec, &py_batch))
        return -1;
    SET_REF(py_encapsulate, py_enc);
    SET_REF(py_decapsulate, py_dec);
    SET_REF(py_batch, py_batch);
    if (seal != Py_None) {
        PyObject *encrypt, *salt, *ivsalt, *spi, *replay, *stats;
        if (!PyArg_ParseTuple(seal, "OOOOOO:seal", &encrypt, &salt, &ivsalt, &spi, &replay,
                              &stats))
            return -1;
        uint64_t iv;
        if (salt_of(salt, self->salt) < 0 || u32_of(spi, &self->spi) < 0)
            return -1;
        if (!as_u64(ivsalt, UINT64_MAX, &iv)) {
            PyErr_SetString(PyExc_ValueError, "the seqiv salt must be 64 bits");
            return -1;
        }
        self->ivsalt = iv;
        SET_REF(encrypt, encrypt);
        SET_REF(replay, replay);
        SET_REF(stats, stats);
    }
    if (open != Py_None) {
        PyObject *decrypt, *salt, *spi, *min_len, *replay, *window, *mask, *stats;
        if (!PyArg_ParseTuple(open, "OOOOOOOO:open", &decrypt, &salt, &spi, &min_len, &replay,
                              &window, &mask, &stats))
            return -1;
        uint64_t ml, w, m;
        if (salt_of(salt, self->salt) < 0 || u32_of(spi, &self->spi) < 0)
            return -1;
        if (!as_u64(min_len, 1 << 16, &ml) || !as_u64(window, UINT64_MAX, &w)) {
            PyErr_SetString(PyExc_ValueError, "bad minimum length or window");
            return -1;
        }
        self->min_len = (Py_ssize_t)ml;
        SET_REF(replay, replay);
        SET_REF(stats, stats);
        if (w <= 64 && as_u64(mask, UINT64_MAX, &m)) {
            self->window = (unsigned)w;
            self->mask = m;
            SET_REF(decrypt, decrypt);
        }                       /* else a wider window: decapsulate hands every packet back */
    }
    if (self->replay == NULL || self->stats == NULL) {
        PyErr_SetString(PyExc_ValueError, "Esp needs the seal or the open tuple");
        return -1;
    }
    /* where the window and the counters are in objects of exactly their types (TypeError
     * when one is not a plain slot) */
    const char *rnames[3] = {"oseq", "top", "bitmap"}, *snames[2] = {"bytes", "packets"};
    Py_ssize_t r[3], c[2];
    if (learn_offsets((PyObject *)Py_TYPE(self->replay), rnames, 3, r) < 0
            || learn_offsets((PyObject *)Py_TYPE(self->stats), snames, 2, c) < 0)
        return -1;
    self->oseq = r[0], self->top = r[1], self->bitmap = r[2];
    self->bytes = c[0], self->packets = c[1];
    return 0;
}

static int Esp_traverse(EspObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->encrypt);
    Py_VISIT(self->decrypt);
    Py_VISIT(self->replay);
    Py_VISIT(self->stats);
    Py_VISIT(self->py_encapsulate);
    Py_VISIT(self->py_decapsulate);
    Py_VISIT(self->py_batch);
    return 0;
}

static int Esp_clear(EspObject *self)
{
    Py_CLEAR(self->encrypt);
    Py_CLEAR(self->decrypt);
    Py_CLEAR(self->replay);
    Py_CLEAR(self->stats);
    Py_CLEAR(self->py_encapsulate);
    Py_CLEAR(self->py_decapsulate);
    Py_CLEAR(self->py_batch);
    return 0;
}

static void Esp_dealloc(EspObject *self)
{
    PyObject_GC_UnTrack(self);
    Esp_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Methods without an SA's tuple (encrypt/decrypt NULL) always hand back. */
static PyObject *Esp_encapsulate_entry(EspObject *self, PyObject *const *args,
                                       Py_ssize_t nargs, PyObject *kwnames)
{
    if (self->encrypt == NULL || self->py_encapsulate == NULL) {
        if (self->py_encapsulate == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "Esp not initialised");
            return NULL;
        }
        return python_version(self->py_encapsulate, args, nargs, kwnames);
    }
    return Esp_encapsulate(self, args, nargs, kwnames);
}

static PyObject *Esp_batch_entry(EspObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    if (self->encrypt == NULL || self->py_batch == NULL) {
        if (self->py_batch == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "Esp not initialised");
            return NULL;
        }
        return python_version(self->py_batch, args, nargs, kwnames);
    }
    return Esp_encapsulate_batch(self, args, nargs, kwnames);
}

static PyObject *Esp_decapsulate_entry(EspObject *self, PyObject *const *args,
                                       Py_ssize_t nargs, PyObject *kwnames)
{
    if (self->decrypt == NULL || self->py_decapsulate == NULL) {
        if (self->py_decapsulate == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "Esp not initialised");
            return NULL;
        }
        return python_version(self->py_decapsulate, args, nargs, kwnames);
    }
    return Esp_decapsulate(self, args, nargs, kwnames);
}

static PyMethodDef Esp_methods[] = {
    {"encapsulate", (PyCFunction)(void (*)(void))Esp_encapsulate_entry,
     METH_FASTCALL | METH_KEYWORDS, "EspGcmSA.encapsulate(payload, next_header, seq=None)"},
    {"encapsulate_batch", (PyCFunction)(void (*)(void))Esp_batch_entry,
     METH_FASTCALL | METH_KEYWORDS,
     "EspGcmSA.encapsulate_batch(payloads, next_header, first_seq, outer=None, inner=None)"},
    {"decapsulate", (PyCFunction)(void (*)(void))Esp_decapsulate_entry,
     METH_FASTCALL | METH_KEYWORDS, "EspGcmSA.decapsulate(packet)"},
    {NULL, NULL, 0, NULL}
};

static PyTypeObject EspType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "xfrmd.datapath._espfast.Esp",
    .tp_doc = "The common packet of one EspGcmSA (esp.py), in C.",
    .tp_basicsize = sizeof(EspObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Esp_init,
    .tp_dealloc = (destructor)Esp_dealloc,
    .tp_traverse = (traverseproc)Esp_traverse,
    .tp_clear = (inquiry)Esp_clear,
    .tp_methods = Esp_methods,
};

static struct PyModuleDef espfast_module = {
    PyModuleDef_HEAD_INIT, "_espfast",
    "The common packet of xfrmd/datapath/esp.py in C (the Python code is the reference).",
    -1, NULL, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC PyInit__espfast(void)
{
    if (!(str_seq = PyUnicode_InternFromString("seq")))
        return NULL;
    if (PyType_Ready(&EspType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&espfast_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&EspType);
    if (PyModule_AddObject(m, "Esp", (PyObject *)&EspType) < 0) {
        Py_DECREF(&EspType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
