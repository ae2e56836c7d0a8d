/* The C half of NEWSA/UPDSA state construction (xfrmd/xfrm/sa_verify.py keeps the reference
 * Python: checked_newsa_info, then state_construct).
 *
 * setup(SecurityAssociation, LifetimeCur, LifetimeCfg, StateId, Algo, DEFAULT_LFT, SEEN,
 *       shared, AEADS, UNAVAILABLE, DISABLED_TYPES, ESP_OPTIONS) once at import (AEADS: the
 *       algorithm table, (name, icv bits) -> (name, geniv, key sizes, kconfig option); it
 *       never changes), then per request
 * construct(buf, off, attrs, db, wall, unavailable_algos, kconfig_values, rseqth, maxage):
 * the SecurityAssociation xfrm_state_construct would build, up to (not including) the
 * offload binding -- only when verify_newsa_info, the AEAD attach and __xfrm_init_state
 * surely accept the request and it is the shape charon and `ip` send: ESP with XFRMA_ALG_AEAD,
 * optionally XFRMA_SA_DIR and XFRMA_OFFLOAD_DEV (which the caller then binds in Python), a
 * transport, tunnel or BEET mode, no ESN, no padding in the xfrm_id. Anything else -- every
 * error, every other attribute, an algorithm this kernel lacks, a key length the cipher
 * refuses, a buffer that is not bytes -- returns None and the Python path decides. It
 * changes nothing but addrcache (as the Python path would): parity is "built here implies
 * built there, equal in every slot" (tests/test_sacons.py).
 *
 * With links (the namespace's LinkTable; optional tenth argument) and XFRMA_OFFLOAD_DEV,
 * construct also does xfrm_dev_state_add's part before the driver (xfrmd/xfrm/offload.py
 * keeps the reference): CONFIG_XFRM_OFFLOAD on, known flags, the direction matching the
 * SA's, the device found by its ifindex (links.by_index) and having xfrmdev_ops; then the
 * state's xso is the XfrmDevOffload the Python path makes, and the caller hands it to the
 * driver (offload.xfrm_dev_state_add_driver). A request failing any of those, or one
 * without the device (the route lookup), is left whole to the Python path (None).
 *
 * state(*args) is SecurityAssociation(*args) with its eleven arguments positional, made the
 * same way (xfrm_state_alloc for __find_acq_core's larval state).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "../_slots.h"      /* slot_offset */
#include <string.h>

#define INFO_LEN 224            /* xfrm_usersa_info */
#define AF_INET_ 2
#define AF_INET6_ 10
#define IPPROTO_ESP_ 50
#define STATE_DECAP_DSCP 2
#define STATE_NOPMTUDISC 4
#define STATE_WILDRECV 8
#define STATE_ICMP 16
#define STATE_AF_UNSPEC 32
#define STATE_ESN 128
#define SA_DIR_IN 1
#define SA_DIR_OUT 2
#define MODE_TRANSPORT 0
#define MODE_TUNNEL 1
#define MODE_BEET 4
#define XFRMA_ALG_AEAD 18
#define XFRMA_OFFLOAD_DEV 28
#define XFRMA_SA_DIR 33
#define CRYPTO_MAX_ALG_NAME 128
#define OFFLOAD_IPV6 1          /* struct xfrm_user_offload's flags */
#define OFFLOAD_INBOUND 2
#define OFFLOAD_PACKET 4
#define DEV_OFFLOAD_IN 1        /* struct xfrm_dev_offload's dir and type */
#define DEV_OFFLOAD_OUT 2
#define DEV_OFFLOAD_CRYPTO 1
#define DEV_OFFLOAD_PACKET 2

static PyObject *SA_t, *Cur_t, *Lft_t, *StateId_t, *Algo_t, *default_lft, *seen, *shared,
    *aead_by, *unavailable, *disabled_types, *esp_opts, *Xso_t;
/* the names the offload binding looks up, interned once (the type's attribute cache is
 * keyed by the name object) */
static PyObject *s_xfrm_offload, *s_by_index, *s_by_index_table, *s_xfrmdev_ops;

/* SecurityAssociation.__init__ stores its arguments, constants and one fresh LifetimeCur
 * (curlft, add_time the argument) in slots, nothing else: learn_layout saw it fill them
 * from two probes made with sentinel arguments. Any other __init__ leaves n_slots at -1
 * and construct() answers None (the Python path). */
#define SA_ARGS 11              /* lft, xid, sel, family, saddr, mode, reqid, replay_window,
                                 * flags, add_time, net */
#define ARG_ADD_TIME 9
#define MAX_SLOTS 48
#define CURLFT (-2)
static Py_ssize_t n_slots = -1;
static Py_ssize_t slot_off[MAX_SLOTS];
static int slot_arg[MAX_SLOTS];         /* the argument stored there, CURLFT, or -1: const */
static PyObject *slot_const[MAX_SLOTS];
/* the slots construct() sets after __init__, and LifetimeCur's four */
static Py_ssize_t off_aead = -1, off_geniv, off_dir, off_km_seq, off_maxdiff, off_maxage;
static Py_ssize_t cur_bytes = -1, cur_packets, cur_add_time, cur_use_time;
/* XfrmDevOffload's slots (xso_dev < 0: no offload binding here) */
static Py_ssize_t xso_dev = -1, xso_real_dev, xso_dir, xso_type, xso_flags, xso_handle,
    xso_priv, xso_upper_priv, off_xso;

static void learn_xso(void)
{
    xso_dev = -1;
    if (Xso_t == NULL || !PyType_Check(Xso_t))
        return;
    PyTypeObject *tp = (PyTypeObject *)Xso_t;
    /* all eight slots, no __dict__, no __init__ of a base that would set more */
    if (tp->tp_dictoffset != 0 || tp->tp_base != &PyBaseObject_Type)
        return;
    Py_ssize_t o[8];
    const char *names[8] = {"dev", "real_dev", "dir", "type", "flags", "offload_handle",
                            "priv", "upper_priv"};
    for (int i = 0; i < 8; i++)
        if ((o[i] = slot_offset_s(tp, names[i])) < 0)
            return;
    PyObject *slots = PyObject_GetAttrString(Xso_t, "__slots__");
    Py_ssize_t n = slots != NULL && PyTuple_Check(slots) ? PyTuple_GET_SIZE(slots) : -1;
    Py_XDECREF(slots);
    PyErr_Clear();
    if (n != 8 || (off_xso = slot_offset_s((PyTypeObject *)SA_t, "xso")) < 0)
        return;
    xso_real_dev = o[1], xso_dir = o[2], xso_type = o[3], xso_flags = o[4];
    xso_handle = o[5], xso_priv = o[6], xso_upper_priv = o[7];
    xso_dev = o[0];
}

/* a constant no one can change in place: None, an int, bytes, str, or a tuple of those */
static int immutable(PyObject *v)
{
    if (v == Py_None || PyLong_CheckExact(v) || PyBytes_CheckExact(v) || PyUnicode_CheckExact(v))
        return 1;
    if (!PyTuple_CheckExact(v))
        return 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(v); i++)
        if (!immutable(PyTuple_GET_ITEM(v, i)))
            return 0;
    return 1;
}

static int learn_cur(void)
{
    PyTypeObject *tp = (PyTypeObject *)Cur_t;
    cur_bytes = slot_offset_s(tp, "bytes");
    cur_packets = slot_offset_s(tp, "packets");
    cur_add_time = slot_offset_s(tp, "add_time");
    cur_use_time = slot_offset_s(tp, "use_time");
    return cur_bytes >= 0 && cur_packets >= 0 && cur_add_time >= 0 && cur_use_time >= 0
        && tp->tp_dictoffset == 0 && tp->tp_base == &PyBaseObject_Type;
}

static int learn_layout(void)
{
    PyTypeObject *tp = (PyTypeObject *)SA_t;
    PyObject *sent[2][SA_ARGS] = {{NULL}}, *probe[2] = {NULL, NULL}, *names = NULL;
    int ok = 0;
    if (tp->tp_base != &PyBaseObject_Type || !learn_cur())
        return 0;
    for (int p = 0; p < 2; p++) {
        for (int i = 0; i < SA_ARGS; i++)
            if ((sent[p][i] = PyBaseObject_Type.tp_alloc(&PyBaseObject_Type, 0)) == NULL)
                goto out;
        if ((probe[p] = PyObject_Vectorcall(SA_t, sent[p], SA_ARGS, NULL)) == NULL)
            goto out;
        /* nothing in the probe's __dict__: every store went to a slot */
        PyObject **dp = _PyObject_GetDictPtr(probe[p]);
        if (dp != NULL && *dp != NULL && PyDict_GET_SIZE(*dp) != 0)
            goto out;
    }
    names = PyObject_GetAttrString(SA_t, "__slots__");
    if (names == NULL || !PyTuple_Check(names))
        goto out;
    Py_ssize_t n = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if (!PyUnicode_Check(name) || n >= MAX_SLOTS)
            goto out;
        if (PyUnicode_CompareWithASCIIString(name, "__dict__") == 0
                || PyUnicode_CompareWithASCIIString(name, "__weakref__") == 0)
            continue;
        Py_ssize_t off = slot_offset(tp, name);
        if (off < 0)
            goto out;
        PyObject *v0 = *(PyObject **)((char *)probe[0] + off);
        PyObject *v1 = *(PyObject **)((char *)probe[1] + off);
        slot_off[n] = off;
        slot_arg[n] = -1;
        Py_XSETREF(slot_const[n], NULL);
        for (int a = 0; a < SA_ARGS; a++)
            if (v0 == sent[0][a] && v1 == sent[1][a])
                slot_arg[n] = a;
        if (slot_arg[n] < 0 && v0 != NULL && Py_TYPE(v0) == (PyTypeObject *)Cur_t
                && v1 != NULL && Py_TYPE(v1) == (PyTypeObject *)Cur_t && v0 != v1) {
            /* curlft: a LifetimeCur of its own, add_time the argument, the rest 0 */
            char *c0 = (char *)v0, *c1 = (char *)v1;
            PyObject *z[3] = {*(PyObject **)(c0 + cur_bytes), *(PyObject **)(c0 + cur_packets),
                              *(PyObject **)(c0 + cur_use_time)};
            for (int k = 0; k < 3; k++)
                if (z[k] == NULL || !PyLong_CheckExact(z[k]) || PyLong_AsLong(z[k]) != 0)
                    goto out;
            if (*(PyObject **)(c0 + cur_add_time) != sent[0][ARG_ADD_TIME]
                    || *(PyObject **)(c1 + cur_add_time) != sent[1][ARG_ADD_TIME])
                goto out;
            slot_arg[n] = CURLFT;
        } else if (slot_arg[n] < 0) {
            if (v0 == NULL || v0 != v1 || !immutable(v0))
                goto out;
            Py_INCREF(v0);
            slot_const[n] = v0;
        }
        n++;
    }
    off_aead = slot_offset_s(tp, "aead");
    off_geniv = slot_offset_s(tp, "geniv");
    off_dir = slot_offset_s(tp, "dir");
    off_km_seq = slot_offset_s(tp, "km_seq");
    off_maxdiff = slot_offset_s(tp, "replay_maxdiff");
    off_maxage = slot_offset_s(tp, "replay_maxage");
    if (off_aead < 0 || off_geniv < 0 || off_dir < 0 || off_km_seq < 0 || off_maxdiff < 0
            || off_maxage < 0)
        goto out;
    n_slots = n;
    ok = 1;
out:
    PyErr_Clear();
    for (int p = 0; p < 2; p++) {
        for (int i = 0; i < SA_ARGS; i++)
            Py_XDECREF(sent[p][i]);
        Py_XDECREF(probe[p]);
    }
    Py_XDECREF(names);
    return ok;
}

/* store v (a new reference) in the slot at off, dropping what was there */
static inline void set_slot(PyObject *o, Py_ssize_t off, PyObject *v)
{
    PyObject **p = (PyObject **)((char *)o + off);
    Py_XSETREF(*p, v);
}

static PyObject *new_curlft(PyObject *add_time)
{
    PyObject *c = ((PyTypeObject *)Cur_t)->tp_alloc((PyTypeObject *)Cur_t, 0);
    if (c == NULL)
        return NULL;
    PyObject *zero = PyLong_FromLong(0);
    set_slot(c, cur_bytes, Py_NewRef(zero));
    set_slot(c, cur_packets, Py_NewRef(zero));
    set_slot(c, cur_use_time, zero);
    set_slot(c, cur_add_time, Py_NewRef(add_time));
    return c;
}

/* SecurityAssociation(*a) as learn_layout saw __init__ fill it */
static PyObject *make_state(PyObject **a)
{
    PyTypeObject *tp = (PyTypeObject *)SA_t;
    PyObject *x = tp->tp_alloc(tp, 0);
    if (x == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n_slots; i++) {
        PyObject *v;
        if (slot_arg[i] == CURLFT) {
            if ((v = new_curlft(a[ARG_ADD_TIME])) == NULL) {
                Py_DECREF(x);
                return NULL;
            }
        } else {
            v = Py_XNewRef(slot_arg[i] >= 0 ? a[slot_arg[i]] : slot_const[i]);
        }
        *(PyObject **)((char *)x + slot_off[i]) = v;
    }
    return x;
}

static inline unsigned u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline unsigned long u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline unsigned long long u64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* an attribute's payload bounds (RawAttr: type, flags, offset, start, end) */
static int bounds(PyObject *ra, Py_ssize_t blen, Py_ssize_t *start, Py_ssize_t *end)
{
    if (!PyTuple_Check(ra) || PyTuple_GET_SIZE(ra) < 5)
        return 0;
    *start = PyLong_AsSsize_t(PyTuple_GET_ITEM(ra, 3));
    *end = PyLong_AsSsize_t(PyTuple_GET_ITEM(ra, 4));
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return *start >= 0 && *end >= *start && *end <= blen;
}

/* state_construct's addresses and selector: the object addrcache.SEEN holds, else
 * shared(addr) */
static PyObject *address(const unsigned char *p, Py_ssize_t n)
{
    PyObject *a = PyBytes_FromStringAndSize((const char *)p, n);
    if (a == NULL)
        return NULL;
    PyObject *got = PyDict_GetItemWithError(seen, a);
    if (got != NULL) {
        Py_INCREF(got);
        Py_DECREF(a);
        return got;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(a);
        return NULL;
    }
    got = PyObject_CallOneArg(shared, a);
    Py_DECREF(a);
    return got;
}

/* a tuple subtype (a named tuple) of n new references; NULL (all dropped) on failure */
static PyObject *named(PyObject *cls, PyObject **items, int n)
{
    for (int i = 0; i < n; i++)
        if (items[i] == NULL)
            goto fail;
    PyObject *t = ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, n);
    if (t == NULL)
        goto fail;
    for (int i = 0; i < n; i++)
        PyTuple_SET_ITEM(t, i, items[i]);
    return t;
fail:
    for (int i = 0; i < n; i++)
        Py_XDECREF(items[i]);
    return NULL;
}

/* is the kernel option `name` on? (values None: the full default, all on) 1 on, 0 off or
 * not there (the Python path decides), -1 error */
static int option_on(PyObject *values, PyObject *name)
{
    if (values == Py_None)
        return 1;
    PyObject *v = PyDict_GetItemWithError(values, name);
    if (v == NULL)
        return PyErr_Occurred() ? -1 : 0;
    return PyObject_IsTrue(v);
}

/* the last alg_name and ICV length looked up, and what the table had for them (a key
 * manager sends the same one or two): the 64 bytes compared, no str or tuple made */
static unsigned char memo_name[64];
static unsigned long memo_icv;
static PyObject *memo_entry;

/* attach_aead + esp_init_state's checks of it: the table's entry (name, geniv, keys, kconfig
 * option) for (alg_name, icv), when this kernel has the algorithm and the cipher takes the
 * key length; None (new refs) for the Python path */
static PyObject *aead_entry(const unsigned char *a, Py_ssize_t keybytes, unsigned long icv,
                            PyObject *unavail, PyObject *values)
{
    PyObject *entry;
    if (memo_entry != NULL && icv == memo_icv && memcmp(a, memo_name, 64) == 0) {
        entry = memo_entry;
    } else {
        const unsigned char *nul = memchr(a, 0, 63);
        PyObject *name = PyUnicode_DecodeLatin1((const char *)a, nul ? nul - a : 63, NULL);
        PyObject *icv_o = PyLong_FromUnsignedLong(icv);
        PyObject *key = (name && icv_o) ? PyTuple_Pack(2, name, icv_o) : NULL;
        Py_XDECREF(name);
        Py_XDECREF(icv_o);
        if (key == NULL)
            return NULL;
        entry = PyDict_GetItemWithError(aead_by, key);
        Py_DECREF(key);
        if (entry == NULL)
            return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
        if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 4)
            return Py_NewRef(Py_None);
        Py_XSETREF(memo_entry, Py_NewRef(entry));
        memcpy(memo_name, a, 64);
        memo_icv = icv;
    }
    PyObject *dname = PyTuple_GET_ITEM(entry, 0), *geniv = PyTuple_GET_ITEM(entry, 1);
    PyObject *keys = PyTuple_GET_ITEM(entry, 2), *opt = PyTuple_GET_ITEM(entry, 3);
    int ok = PyUnicode_CheckExact(dname) && PyUnicode_CheckExact(geniv);
    /* algos._avail: not missing from the process, nor from this kernel, nor unbuilt */
    if (ok)
        ok = !PySet_Contains(unavailable, dname);
    if (ok == 1 && unavail != Py_None)
        ok = !PySequence_Contains(unavail, dname);
    if (ok == 1 && opt != Py_None)
        ok = option_on(values, opt);
    /* esp_init_state: "geniv(name)" fits CRYPTO_MAX_ALG_NAME; setkey takes the key */
    if (ok == 1)
        ok = PyUnicode_GET_LENGTH(geniv) + PyUnicode_GET_LENGTH(dname) + 2 < CRYPTO_MAX_ALG_NAME;
    if (ok == 1 && keys != Py_None) {
        PyObject *kb = PyLong_FromSsize_t(keybytes);
        ok = kb == NULL ? -1 : PySequence_Contains(keys, kb);
        Py_XDECREF(kb);
    }
    if (ok < 0 || PyErr_Occurred()) {
        PyErr_Clear();
        ok = 0;
    }
    return Py_NewRef(ok ? entry : Py_None);
}

static int default_lft_raw(const unsigned char *l)
{
    for (int i = 0; i < 32; i++)
        if (l[i] != 0xFF)
            return 0;
    for (int i = 32; i < 64; i++)
        if (l[i] != 0)
            return 0;
    return 1;
}

static PyObject *lifetime(const unsigned char *l)
{
    if (default_lft_raw(l))
        return Py_NewRef(default_lft);
    PyObject *items[8];
    for (int i = 0; i < 8; i++)
        items[i] = PyLong_FromUnsignedLongLong(u64(l + 8 * i));
    return named(Lft_t, items, 8);
}

static PyObject *construct(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9 && nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "construct(buf, off, attrs, db, wall, "
                        "unavailable_algos, kconfig_values, rseqth, maxage[, links])");
        return NULL;
    }
    if (SA_t == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_sacons.setup() was not called");
        return NULL;
    }
    PyObject *buf = args[0], *attrs = args[2], *unavail = args[5], *values = args[6];
    if (n_slots < 0 || !PyBytes_CheckExact(buf) || !PyDict_CheckExact(attrs)
            || (values != Py_None && !PyDict_CheckExact(values)))
        Py_RETURN_NONE;
    Py_ssize_t off = PyLong_AsSsize_t(args[1]);
    if (off == -1 && PyErr_Occurred())
        return NULL;
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t blen = PyBytes_GET_SIZE(buf);
    if (off < 0 || off + INFO_LEN > blen)
        Py_RETURN_NONE;
    const unsigned char *p = b + off, *sel = p;
    unsigned proto = p[76], family = u16(p + 212), mode = p[214];
    unsigned replay_window = p[215], flags = p[216];

    /* verify_newsa_info, as far as this shape reaches it */
    if (proto != IPPROTO_ESP_ || p[77] || p[78] || p[79])
        Py_RETURN_NONE;         /* (a padded xfrm_id: id_pad, kept by the Python path) */
    if (family != AF_INET_ && family != AF_INET6_)
        Py_RETURN_NONE;
    unsigned sel_family = u16(sel + 40), fam = sel_family;
    if (!fam && !(flags & STATE_AF_UNSPEC))
        fam = family;
    if (fam == AF_INET_) {
        if (sel[42] > 32 || sel[43] > 32)
            Py_RETURN_NONE;
    } else if (fam == AF_INET6_) {
        if (sel[42] > 128 || sel[43] > 128)
            Py_RETURN_NONE;
    } else if (fam != 0) {
        Py_RETURN_NONE;
    }
    if (flags & STATE_ESN)
        Py_RETURN_NONE;
    if (mode != MODE_TRANSPORT && mode != MODE_TUNNEL && mode != MODE_BEET)
        Py_RETURN_NONE;
    Py_ssize_t pos = 0, a_start = -1, a_end = 0, o_start = -1, o_end = 0;
    PyObject *k, *ra;
    int sa_dir = 0;
    while (PyDict_Next(attrs, &pos, &k, &ra)) {
        long t = PyLong_Check(k) ? PyLong_AsLong(k) : -1;
        Py_ssize_t start, end;
        if (t == -1 && PyErr_Occurred())
            PyErr_Clear();
        if (!bounds(ra, blen, &start, &end))
            Py_RETURN_NONE;
        if (t == XFRMA_ALG_AEAD) {
            /* it holds its key: nla_len >= 72 + (alg_key_len + 7) / 8 */
            if (end - start < 72 || end - start < 72 + (Py_ssize_t)((u32(b + start + 64) + 7) / 8))
                Py_RETURN_NONE;
            a_start = start;
            a_end = end;
        } else if (t == XFRMA_SA_DIR) {
            if (end <= start)
                Py_RETURN_NONE;
            sa_dir = b[start];
        } else if (t == XFRMA_OFFLOAD_DEV) {
            o_start = start;
            o_end = end;
        } else {
            Py_RETURN_NONE;
        }
    }
    (void)a_end;
    if (a_start < 0)
        Py_RETURN_NONE;
    if (sa_dir == SA_DIR_OUT) {
        if (flags & (STATE_DECAP_DSCP | STATE_ICMP | STATE_WILDRECV) || replay_window)
            Py_RETURN_NONE;
    } else if (sa_dir == SA_DIR_IN) {
        if (flags & STATE_NOPMTUDISC)
            Py_RETURN_NONE;
    } else if (sa_dir != 0) {
        Py_RETURN_NONE;
    }

    /* __xfrm_init_state: the selector's family (set from the state's unless AF_UNSPEC) must
     * have the mode; only tunnel modes change family; esp4 / esp6 built */
    unsigned xsel_family = sel_family;
    if (!sel_family && !(flags & STATE_AF_UNSPEC))
        xsel_family = family;
    if (xsel_family != 0 && xsel_family != AF_INET_ && xsel_family != AF_INET6_)
        Py_RETURN_NONE;
    if (xsel_family != 0 && mode == MODE_TRANSPORT && xsel_family != family)
        Py_RETURN_NONE;
    PyObject *esp = PyLong_FromLong(IPPROTO_ESP_);
    int r = esp == NULL ? -1 : PySet_Contains(disabled_types, esp);
    Py_XDECREF(esp);
    if (r == 0)
        r = option_on(values, PyTuple_GET_ITEM(esp_opts, family == AF_INET6_)) == 1 ? 0 : 1;
    if (r != 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }

    /* xfrm_dev_state_add before the driver (after the type init, which is surely accepted
     * here): every refusal, and every case it does not follow, is the Python path's */
    PyObject *dev = NULL;
    int inbound = 0, packet = 0;
    if (o_start >= 0) {
        PyObject *links = nargs == 10 ? args[9] : Py_None;
        if (xso_dev < 0 || links == Py_None || o_end - o_start < 5)
            Py_RETURN_NONE;
        /* CONFIG_XFRM_OFFLOAD (values None: every option on) */
        if (values != Py_None) {
            PyObject *opt = PyDict_GetItemWithError(values, s_xfrm_offload);
            int on = opt == NULL ? 0 : PyObject_IsTrue(opt);
            if (on != 1) {
                PyErr_Clear();
                Py_RETURN_NONE;
            }
        }
        int ifindex;
        memcpy(&ifindex, b + o_start, 4);
        unsigned oflags = b[o_start + 4];
        if (oflags & ~(OFFLOAD_IPV6 | OFFLOAD_INBOUND | OFFLOAD_PACKET))
            Py_RETURN_NONE;
        inbound = (oflags & OFFLOAD_INBOUND) != 0;
        packet = (oflags & OFFLOAD_PACKET) != 0;
        if (sa_dir == (inbound ? SA_DIR_OUT : SA_DIR_IN))
            Py_RETURN_NONE;     /* "Mismatched SA and offload direction" */
        /* (if_id and TFC padding: never in a request of this shape) */
        /* links.by_index(ifindex): its table read here when it is the plain dict
         * LinkTable keeps (devices/netdev.py), the method called otherwise */
        PyObject *ix = PyLong_FromLong(ifindex);
        if (ix == NULL)
            return NULL;
        PyObject *table = PyObject_GetAttr(links, s_by_index_table);
        if (table != NULL && PyDict_CheckExact(table)) {
            dev = PyDict_GetItemWithError(table, ix);
            if (dev == NULL && !PyErr_Occurred())
                dev = Py_None;
            Py_XINCREF(dev);
        } else {
            PyErr_Clear();
            PyObject *cargs[2] = {links, ix};
            dev = PyObject_VectorcallMethod(s_by_index, cargs,
                                            2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        }
        Py_XDECREF(table);
        Py_DECREF(ix);
        if (dev == NULL)
            return NULL;
        PyObject *ops = dev == Py_None ? NULL : PyObject_GetAttr(dev, s_xfrmdev_ops);
        int has_ops = ops != NULL && ops != Py_None;
        Py_XDECREF(ops);
        PyErr_Clear();
        if (!has_ops) {         /* the route lookup, or no xdo_dev_state_add: Python */
            Py_DECREF(dev);
            Py_RETURN_NONE;
        }
        /* (ESN and a protocol other than ESP: never in a request of this shape) */
    }

    /* attach_aead */
    const unsigned char *a = b + a_start;
    unsigned long key_len = u32(a + 64), icv = u32(a + 68);
    Py_ssize_t keybytes = (Py_ssize_t)((key_len + 7) / 8);
    PyObject *desc = aead_entry(a, keybytes, icv, unavail, values);
    if (desc == NULL || desc == Py_None) {
        Py_XDECREF(dev);
        return desc;
    }

    /* copy_from_user_state and xfrm_state_alloc */
    PyObject *sel_o;
    if (!sel_family && !(flags & STATE_AF_UNSPEC)) {
        unsigned char s[56];
        uint16_t f = (uint16_t)family;
        memcpy(s, sel, 56);
        memcpy(s + 40, &f, 2);
        sel_o = address(s, 56);
    } else {
        sel_o = address(sel, 56);
    }
    PyObject *daddr = address(p + 56, 16);
    PyObject *id_items[3] = {
        daddr, PyLong_FromUnsignedLong(((unsigned long)p[72] << 24) | ((unsigned long)p[73] << 16)
                                       | ((unsigned long)p[74] << 8) | p[75]),
        PyLong_FromLong(proto)};
    PyObject *sa[SA_ARGS] = {
        lifetime(p + 96), named(StateId_t, id_items, 3), sel_o, PyLong_FromLong(family),
        address(p + 80, 16), PyLong_FromLong(mode), PyLong_FromUnsignedLong(u32(p + 208)),
        PyLong_FromLong(replay_window < 32 ? replay_window : 32), PyLong_FromLong(flags),
        Py_NewRef(args[4]), Py_NewRef(args[3])};
    PyObject *x = NULL;
    for (int i = 0; i < SA_ARGS; i++)
        if (sa[i] == NULL)
            goto out;
    x = make_state(sa);
    if (x == NULL)
        goto out;
    PyObject *al[5] = {Py_NewRef(PyTuple_GET_ITEM(desc, 0)), PyLong_FromUnsignedLong(key_len),
                       PyBytes_FromStringAndSize((const char *)a + 72, keybytes),
                       PyLong_FromLong(0), PyLong_FromUnsignedLong(icv)};
    PyObject *algo = named(Algo_t, al, 5);
    PyObject *geniv = Py_NewRef(PyTuple_GET_ITEM(desc, 1));
    PyObject *seq = PyLong_FromUnsignedLong(u32(p + 204));
    PyObject *dir = sa_dir ? PyLong_FromLong(sa_dir) : NULL;
    if (algo == NULL || geniv == NULL || seq == NULL || (sa_dir && dir == NULL)) {
        Py_XDECREF(algo);
        Py_XDECREF(geniv);
        Py_XDECREF(seq);
        Py_XDECREF(dir);
        Py_CLEAR(x);
        goto out;
    }
    set_slot(x, off_aead, algo);
    set_slot(x, off_geniv, geniv);
    if (dir != NULL)
        set_slot(x, off_dir, dir);
    set_slot(x, off_km_seq, seq);
    set_slot(x, off_maxdiff, Py_NewRef(args[7]));
    set_slot(x, off_maxage, Py_NewRef(args[8]));
    if (dev != NULL) {
        /* XfrmDevOffload(dev, dir, type): its eight slots as xfrm_dev_state_add fills them */
        PyTypeObject *xt = (PyTypeObject *)Xso_t;
        PyObject *xso = xt->tp_alloc(xt, 0);
        PyObject *d = PyLong_FromLong(inbound ? DEV_OFFLOAD_IN : DEV_OFFLOAD_OUT);
        PyObject *ty = PyLong_FromLong(packet ? DEV_OFFLOAD_PACKET : DEV_OFFLOAD_CRYPTO);
        PyObject *zero = PyLong_FromLong(0);
        if (xso == NULL || d == NULL || ty == NULL || zero == NULL) {
            Py_XDECREF(xso);
            Py_XDECREF(d);
            Py_XDECREF(ty);
            Py_XDECREF(zero);
            Py_CLEAR(x);
            goto out;
        }
        set_slot(xso, xso_dev, Py_NewRef(dev));
        set_slot(xso, xso_real_dev, Py_NewRef(dev));
        set_slot(xso, xso_dir, d);
        set_slot(xso, xso_type, ty);
        set_slot(xso, xso_flags, Py_NewRef(zero));
        set_slot(xso, xso_handle, zero);
        set_slot(xso, xso_priv, Py_NewRef(Py_None));
        set_slot(xso, xso_upper_priv, Py_NewRef(Py_None));
        set_slot(x, off_xso, xso);
    }
out:
    Py_XDECREF(dev);
    Py_DECREF(desc);
    for (int i = 0; i < SA_ARGS; i++)
        Py_XDECREF(sa[i]);
    return x;
}

static PyObject *state(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != SA_ARGS) {
        PyErr_SetString(PyExc_TypeError, "state(lft, xid, sel, family, saddr, mode, reqid, "
                        "replay_window, flags, add_time, net)");
        return NULL;
    }
    if (SA_t == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_sacons.setup() was not called");
        return NULL;
    }
    if (n_slots < 0)
        return PyObject_Vectorcall(SA_t, args, nargs, NULL);
    return make_state((PyObject **)args);
}

/* dst_key(daddr, saddr, reqid, family): the SAD's bydst key (sadb._dst_key_py, the
 * reference): addr_key's addresses (4 bytes for AF_INET, all of them else), each the object
 * addrcache holds; None for addresses that are not bytes (the Python key then). */
static PyObject *dst_key(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "dst_key(daddr, saddr, reqid, family)");
        return NULL;
    }
    if (seen == NULL)
        Py_RETURN_NONE;
    PyObject *d = args[0], *s = args[1];
    if (!PyBytes_CheckExact(d) || !PyBytes_CheckExact(s) || !PyLong_CheckExact(args[3]))
        Py_RETURN_NONE;
    int inet = PyLong_AsLong(args[3]) == AF_INET_;
    if (PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    Py_ssize_t dn = PyBytes_GET_SIZE(d), sn = PyBytes_GET_SIZE(s);
    if (inet) {
        dn = dn < 4 ? dn : 4;
        sn = sn < 4 ? sn : 4;
    }
    PyObject *k[4] = {address((const unsigned char *)PyBytes_AS_STRING(d), dn),
                      address((const unsigned char *)PyBytes_AS_STRING(s), sn),
                      Py_NewRef(args[2]), Py_NewRef(args[3])};
    if (k[0] == NULL || k[1] == NULL) {
        for (int i = 0; i < 4; i++)
            Py_XDECREF(k[i]);
        return NULL;
    }
    PyObject *t = PyTuple_New(4);
    if (t == NULL) {
        for (int i = 0; i < 4; i++)
            Py_DECREF(k[i]);
        return NULL;
    }
    for (int i = 0; i < 4; i++)
        PyTuple_SET_ITEM(t, i, k[i]);
    return t;
}

/* larval(lft, key, proto, mode, spi, add_time, net): __find_acq_core's new state
 * (xfrm_state_alloc, the larval fields) for the bydst key (daddr, saddr, reqid, family) it
 * looked in -- the addresses the key's (4 bytes for AF_INET, 16 for AF_INET6), padded to 16
 * and shared (addrcache), a selector of exactly the two hosts (state.host_sel), the SPI
 * ALLOCSPI drew. None for anything else (sadb.find_acq's Python builds it then). */
static PyObject *larval(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "larval(lft, key, proto, mode, spi, add_time, net)");
        return NULL;
    }
    PyObject *key = args[1];
    if (n_slots < 0 || !PyTuple_CheckExact(key) || PyTuple_GET_SIZE(key) != 4)
        Py_RETURN_NONE;
    PyObject *d = PyTuple_GET_ITEM(key, 0), *s = PyTuple_GET_ITEM(key, 1);
    PyObject *reqid = PyTuple_GET_ITEM(key, 2), *fam = PyTuple_GET_ITEM(key, 3);
    if (!PyLong_CheckExact(fam) || !PyBytes_CheckExact(d) || !PyBytes_CheckExact(s))
        Py_RETURN_NONE;
    long family = PyLong_AsLong(fam);
    Py_ssize_t w = family == AF_INET_ ? 4 : family == AF_INET6_ ? 16 : -1;
    if (w < 0 || PyBytes_GET_SIZE(d) != w || PyBytes_GET_SIZE(s) != w) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    unsigned char d16[16] = {0}, s16[16] = {0}, sel[56] = {0};
    memcpy(d16, PyBytes_AS_STRING(d), w);
    memcpy(s16, PyBytes_AS_STRING(s), w);
    memcpy(sel, d16, 16);
    memcpy(sel + 16, s16, 16);
    sel[42] = sel[43] = (unsigned char)(w * 8);     /* prefixlen_d, prefixlen_s */
    PyObject *id_items[3] = {address(d16, 16), Py_NewRef(args[4]), Py_NewRef(args[2])};
    PyObject *a[SA_ARGS] = {
        Py_NewRef(args[0]), named(StateId_t, id_items, 3),
        PyBytes_FromStringAndSize((const char *)sel, 56), Py_NewRef(fam), address(s16, 16),
        Py_NewRef(args[3]), Py_NewRef(reqid), PyLong_FromLong(0), PyLong_FromLong(0),
        Py_NewRef(args[5]), Py_NewRef(args[6])};
    PyObject *x = NULL;
    for (int i = 0; i < SA_ARGS; i++)
        if (a[i] == NULL)
            goto out;
    x = make_state(a);
out:
    for (int i = 0; i < SA_ARGS; i++)
        Py_XDECREF(a[i]);
    return x;
}

static PyObject *setup(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 12 && nargs != 13) {
        PyErr_SetString(PyExc_TypeError, "setup(SecurityAssociation, LifetimeCur, LifetimeCfg, "
                        "StateId, Algo, DEFAULT_LFT, SEEN, shared, AEADS, UNAVAILABLE, "
                        "DISABLED_TYPES, ESP_OPTIONS[, XfrmDevOffload])");
        return NULL;
    }
    for (int i = 0; i < 5; i++)
        if (!PyType_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "setup: the first five arguments are classes");
            return NULL;
        }
    if (!PyDict_Check(args[6]) || !PyDict_Check(args[8]) || !PySet_Check(args[9])
            || !PySet_Check(args[10]) || !PyTuple_Check(args[11])
            || PyTuple_GET_SIZE(args[11]) != 2) {
        PyErr_SetString(PyExc_TypeError, "setup: SEEN and AEADS are dicts, UNAVAILABLE and "
                        "DISABLED_TYPES sets, ESP_OPTIONS a pair");
        return NULL;
    }
    PyObject **dst[12] = {&SA_t, &Cur_t, &Lft_t, &StateId_t, &Algo_t, &default_lft, &seen,
                          &shared, &aead_by, &unavailable, &disabled_types, &esp_opts};
    for (int i = 0; i < 12; i++)
        Py_XSETREF(*dst[i], Py_NewRef(args[i]));
    Py_XSETREF(Xso_t, nargs == 13 ? Py_NewRef(args[12]) : NULL);
    Py_CLEAR(memo_entry);
    n_slots = -1;
    int ok = learn_layout();
    if (ok)
        learn_xso();
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    {"setup", (PyCFunction)(void (*)(void))setup, METH_FASTCALL,
     "setup(SecurityAssociation, LifetimeCur, LifetimeCfg, StateId, Algo, DEFAULT_LFT, SEEN, "
     "shared, AEADS, UNAVAILABLE, DISABLED_TYPES, ESP_OPTIONS[, XfrmDevOffload]): "
     "True when the state's layout was learned (construct() can answer)"},
    {"state", (PyCFunction)(void (*)(void))state, METH_FASTCALL,
     "state(lft, xid, sel, family, saddr, mode, reqid, replay_window, flags, add_time, net): "
     "SecurityAssociation(...) (all eleven positional) without __init__'s Python frame"},
    {"dst_key", (PyCFunction)(void (*)(void))dst_key, METH_FASTCALL,
     "dst_key(daddr, saddr, reqid, family): the SAD's bydst key, its addresses shared; None "
     "for the Python one"},
    {"larval", (PyCFunction)(void (*)(void))larval, METH_FASTCALL,
     "larval(lft, key, proto, mode, spi, add_time, net): __find_acq_core's new state for its "
     "bydst key, or None for the Python path"},
    {"construct", (PyCFunction)(void (*)(void))construct, METH_FASTCALL,
     "construct(buf, off, attrs, db, wall, unavailable_algos, kconfig_values, rseqth, maxage"
     "[, links]): the state xfrm_state_construct would build before the driver's part of its "
     "offload binding, or None for the Python path"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sacons", NULL, -1, methods};

PyMODINIT_FUNC PyInit__sacons(void)
{
    if ((s_xfrm_offload = PyUnicode_InternFromString("XFRM_OFFLOAD")) == NULL
            || (s_by_index = PyUnicode_InternFromString("by_index")) == NULL
            || (s_by_index_table = PyUnicode_InternFromString("_by_index")) == NULL
            || (s_xfrmdev_ops = PyUnicode_InternFromString("xfrmdev_ops")) == NULL)
        return NULL;
    return PyModule_Create(&module);
}
