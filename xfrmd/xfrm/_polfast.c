/* The C half of NEWPOLICY/UPDPOLICY (xfrmd/xfrm/spd.py keeps the reference Python).
 *
 * setup(Policy, Template, NO_LIMITS, NO_MARK, ANY, SEEN, shared),
 * setup_offload(XfrmDevOffload) and setup_clock(SystemClock) once at import, then per request:
 *
 * newpolicy(buf, off, attrs, ns): the Policy xfrm_add_policy would make (the key, the shared
 * no-limits lifetime, the templates made as policy.make_template makes them; its slots filled
 * as Policy.__init__ fills them, see learn_layout), with an XFRMA_OFFLOAD_DEV bound to its
 * device as xfrm_dev_policy_add binds it up to the driver's op (bind_offload) -- only when
 * verify_newpolicy_info, validate_tmpl and xfrm_dev_policy_add's checks surely accept the
 * request and it carries nothing but XFRMA_TMPL and XFRMA_OFFLOAD_DEV (what `ip` and charon
 * send). Anything else -- every error, a template family of 0 (validate_tmpl writes the
 * policy's into the request, and a later error echoes that), a security context, a policy
 * type, a mark, an if_id, a short attribute, a buffer that is not bytes, an offload the
 * device or the config refuses -- returns None and the Python path decides. It never
 * rejects and changes nothing: parity is "accepted here implies accepted there, with an
 * equal policy" (tests/test_polfast.py).
 *
 * insert(db, pol): xfrm_policy_insert's common case, or None (PolicyDb.insert decides).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "../_slots.h"      /* slot_offset */
#include <string.h>
/* ahead(): where a dict keeps its table (CPython 3.11's layout; read as the core reads it,
 * this header alone). Without it ahead() fetches nothing. */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 \
    && defined(__has_include) && __has_include("internal/pycore_dict.h")
#define Py_BUILD_CORE
#include "internal/pycore_dict.h"
#undef Py_BUILD_CORE
#define DICT_TABLE 1
#endif

#define INFO_LEN 168            /* xfrm_userpolicy_info */
#define SEL_LEN 56
#define KEY_LEN 70              /* policy.POLICY_KEY: selector, dir, type, if_id, mark */
#define TMPL_LEN 64             /* xfrm_user_tmpl */
#define MAX_DEPTH 6             /* XFRM_MAX_DEPTH */
#define AF_INET_ 2
#define AF_INET6_ 10
#define XFRMA_TMPL 5
#define XFRMA_OFFLOAD_DEV 28
#define SHARE_UNIQUE 3
#define POLICY_OUT 1
#define POLICY_FWD 2
#define MODE_TUNNEL 1
#define MODE_BEET 4
#define MODE_IPTFS 5
#define MODE_MAX 6

static PyObject *Policy_t, *Template_t, *no_limits, *no_mark, *any_alg, *seen, *shared;

/* Policy.__init__ stores its arguments and constants in the object's slots, nothing else: a
 * policy is made here without the Python frame, slot by slot as setup() saw __init__ fill
 * them (learned from one Policy made with a sentinel for each argument; a slot left unset
 * stays unset). Any other __init__ -- a computed value, a mutable default, a __dict__ --
 * leaves n_slots at -1 and Policy is called. tests/test_polfast.py compares every slot. */
#define POLICY_ARGS 12
#define MAX_SLOTS 32
static Py_ssize_t n_slots = -1;
static Py_ssize_t slot_off[MAX_SLOTS];
static int slot_arg[MAX_SLOTS];             /* the argument stored there, or -1: slot_const */
static PyObject *slot_const[MAX_SLOTS];

/* the names of every slot of tp and of its bases (policy.Policy keeps what a delete reads in
 * a base of its own, policy._PolicyHead), as a new list; NULL with no error set when a class
 * on the way is not a plain slotted one of single inheritance */
static PyObject *slot_names(PyTypeObject *tp)
{
    PyObject *all = PyList_New(0);
    if (all == NULL)
        return NULL;
    for (PyTypeObject *t = tp; t != &PyBaseObject_Type; t = t->tp_base) {
        PyObject *names = t == NULL ? NULL : PyDict_GetItemString(t->tp_dict, "__slots__");
        if (names == NULL || !PyTuple_Check(names) || t->tp_dictoffset != 0
                || t->tp_weaklistoffset != 0 || PyTuple_GET_SIZE(t->tp_bases) != 1)
            goto fail;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++)
            if (PyList_Append(all, PyTuple_GET_ITEM(names, i)) < 0)
                goto fail;
    }
    return all;
fail:
    PyErr_Clear();
    Py_DECREF(all);
    return NULL;
}

static int learn_layout(PyObject *cls)
{
    PyTypeObject *tp = (PyTypeObject *)cls;
    PyObject *sentinels[POLICY_ARGS] = {NULL}, *probe = NULL, *names = NULL;
    int ok = 0;
    if ((names = slot_names(tp)) == NULL || PyList_GET_SIZE(names) > MAX_SLOTS)
        goto out;
    for (int i = 0; i < POLICY_ARGS; i++)
        if ((sentinels[i] = PyBaseObject_Type.tp_alloc(&PyBaseObject_Type, 0)) == NULL)
            goto out;
    if ((probe = PyObject_Vectorcall(cls, sentinels, POLICY_ARGS, NULL)) == NULL)
        goto out;
    Py_ssize_t n = PyList_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyList_GET_ITEM(names, i);
        Py_ssize_t off = slot_offset(tp, name);     /* Policy's own or _PolicyHead's */
        if (off < 0)
            goto out;
        PyObject *v = *(PyObject **)((char *)probe + off);
        slot_off[i] = off;
        slot_arg[i] = -1;
        Py_XSETREF(slot_const[i], NULL);
        for (int a = 0; a < POLICY_ARGS; a++)
            if (v == sentinels[a])
                slot_arg[i] = a;
        if (slot_arg[i] >= 0 || v == NULL)
            continue;
        /* a constant: only what no one can change in place */
        if (v != Py_None && v != Py_True && v != Py_False && !PyLong_CheckExact(v)
                && !PyBytes_CheckExact(v) && !PyUnicode_CheckExact(v)
                && !(PyTuple_CheckExact(v) && PyTuple_GET_SIZE(v) == 0))
            goto out;
        Py_INCREF(v);
        slot_const[i] = v;
    }
    n_slots = n;
    ok = 1;
out:
    PyErr_Clear();
    for (int i = 0; i < POLICY_ARGS; i++)
        Py_XDECREF(sentinels[i]);
    Py_XDECREF(probe);
    Py_XDECREF(names);
    return ok;
}

/* Policy(*a) as learn_layout saw __init__ fill it (a: new references, kept by the caller) */
static PyObject *make_policy(PyObject *const *a)
{
    if (n_slots < 0)
        return PyObject_Vectorcall(Policy_t, a, POLICY_ARGS, NULL);
    PyTypeObject *tp = (PyTypeObject *)Policy_t;
    PyObject *pol = tp->tp_alloc(tp, 0);
    if (pol == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n_slots; i++) {
        PyObject *v = slot_arg[i] >= 0 ? a[slot_arg[i]] : slot_const[i];
        Py_XINCREF(v);
        *(PyObject **)((char *)pol + slot_off[i]) = v;
    }
    return pol;
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

/* the last addresses address() returned: a template's two addresses are those of the few
 * gateways the SPD names, and a hit here spares a bytes object and its hash (SEEN is asked
 * with the cached object, whose hash it keeps, whether it still holds it) */
static PyObject *address_seen(const unsigned char *p);
#define RECENT 4
static PyObject *recent[RECENT];
static int recent_next;

/* policy.make_template's addresses: the object addrcache.SEEN holds, else shared(addr) */
static PyObject *address(const unsigned char *p)
{
    for (int i = 0; i < RECENT; i++) {
        PyObject *r = recent[i];
        if (r != NULL && memcmp(PyBytes_AS_STRING(r), p, 16) == 0) {
            PyObject *got = PyDict_GetItemWithError(seen, r);
            if (got == r) {
                Py_INCREF(got);
                return got;
            }
            if (PyErr_Occurred())
                return NULL;
            break;
        }
    }
    PyObject *got = address_seen(p);
    if (got != NULL && PyBytes_CheckExact(got) && PyBytes_GET_SIZE(got) == 16) {
        Py_INCREF(got);
        Py_XSETREF(recent[recent_next], got);
        recent_next = (recent_next + 1) % RECENT;
    }
    return got;
}

/* the object SEEN holds for the address at p, else shared(addr) */
static PyObject *address_seen(const unsigned char *p)
{
    PyObject *a = PyBytes_FromStringAndSize((const char *)p, 16);
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

static PyObject *mask(unsigned long v)
{
    if (v == 0xFFFFFFFFUL) {
        Py_INCREF(any_alg);
        return any_alg;
    }
    return PyLong_FromUnsignedLong(v);
}

/* one template, checked already: a Template (a tuple of its type) */
static PyObject *template(const unsigned char *t)
{
    /* the addresses first: shared() may run Python code, which must not see an error set */
    PyObject *daddr = address(t), *saddr = daddr == NULL ? NULL : address(t + 28);
    if (saddr == NULL) {
        Py_XDECREF(daddr);
        return NULL;
    }
    PyObject *items[12] = {
        daddr, PyLong_FromUnsignedLong(((unsigned long)t[16] << 24) | (t[17] << 16)
                                            | (t[18] << 8) | t[19]),
        PyLong_FromLong(t[20]), PyLong_FromLong(u16(t + 24)), saddr,
        PyLong_FromUnsignedLong(u32(t + 44)), PyLong_FromLong(t[48]), PyLong_FromLong(t[49]),
        PyLong_FromLong(t[50]), mask(u32(t + 52)), mask(u32(t + 56)), mask(u32(t + 60)),
    };
    PyObject *tp = NULL;
    for (int i = 0; i < 12; i++)
        if (items[i] == NULL)
            goto fail;
    tp = ((PyTypeObject *)Template_t)->tp_alloc((PyTypeObject *)Template_t, 12);
    if (tp == NULL)
        goto fail;
    for (int i = 0; i < 12; i++)
        PyTuple_SET_ITEM(tp, i, items[i]);
    return tp;
fail:
    for (int i = 0; i < 12; i++)
        Py_XDECREF(items[i]);
    return NULL;
}

/* validate_tmpl's acceptance of the whole templates of b[start:end] (what copy_templates
 * takes): 1 if it surely accepts them without writing a family, else 0 */
static int tmpls_ok(const unsigned char *b, Py_ssize_t start, Py_ssize_t end, unsigned family,
                    unsigned dir)
{
    unsigned prev = family;
    for (Py_ssize_t o = start; o < end; o += TMPL_LEN) {
        const unsigned char *t = b + o;
        unsigned proto = t[20], tfam = u16(t + 24), mode = t[48], optional = t[50];
        if (tfam == 0)
            return 0;       /* validate_tmpl fills it in the request: the Python path */
        if (mode == MODE_TUNNEL || mode == MODE_BEET) {
            if (optional && dir == POLICY_OUT)
                return 0;
        } else if (mode != MODE_IPTFS && tfam != prev) {
            return 0;
        }
        if (mode >= MODE_MAX)
            return 0;
        prev = tfam;
        if (tfam != AF_INET_ && tfam != AF_INET6_)
            return 0;
        /* xfrm_id_proto_valid: ESP, AH, COMP, routing, destination options */
        if (proto != 50 && proto != 51 && proto != 108 && proto != 43 && proto != 60)
            return 0;
    }
    return 1;
}

static const unsigned char NO_LIMITS_RAW[64] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};

static PyObject *lifetime(const unsigned char *p)
{
    if (memcmp(p, NO_LIMITS_RAW, 64) == 0) {
        Py_INCREF(no_limits);
        return no_limits;
    }
    PyObject *t = PyTuple_New(8);
    if (t == NULL)
        return NULL;
    for (int i = 0; i < 8; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(u64(p + 8 * i));
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static int bind_offload(PyObject *ns, PyObject *pol, PyObject *ifindex, long flags, long dir);

static PyObject *newpolicy(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "newpolicy(buf, off, attrs, ns)");
        return NULL;
    }
    if (Policy_t == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_polfast.setup() was not called");
        return NULL;
    }
    PyObject *buf = args[0], *attrs = args[2], *ns = args[3];
    if (!PyBytes_CheckExact(buf) || !PyDict_CheckExact(attrs))
        Py_RETURN_NONE;
    Py_ssize_t off = PyLong_AsSsize_t(args[1]);
    if (off == -1 && PyErr_Occurred())
        return NULL;
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(buf);
    Py_ssize_t blen = PyBytes_GET_SIZE(buf);
    if (off < 0 || off + INFO_LEN > blen)
        Py_RETURN_NONE;
    const unsigned char *p = b + off;

    /* verify_newpolicy_info */
    unsigned family = u16(p + 40), plen_d = p[42], plen_s = p[43];
    unsigned long priority = u32(p + 152), index = u32(p + 156);
    unsigned dir = p[160], action = p[161], flags = p[162], share = p[163];
    if (share > SHARE_UNIQUE || action > 1)
        Py_RETURN_NONE;
    if (family == AF_INET_) {
        if (plen_d > 32 || plen_s > 32)
            Py_RETURN_NONE;
    } else if (family == AF_INET6_) {
        if (plen_d > 128 || plen_s > 128)
            Py_RETURN_NONE;
    } else {
        Py_RETURN_NONE;
    }
    if (dir > POLICY_FWD || (index && (index & 7) != dir))
        Py_RETURN_NONE;

    /* the attributes: XFRMA_TMPL and XFRMA_OFFLOAD_DEV only */
    Py_ssize_t pos = 0, t_start = 0, t_end = 0, o_start = -1, o_end = 0;
    PyObject *key, *ra;
    while (PyDict_Next(attrs, &pos, &key, &ra)) {
        long t = PyLong_Check(key) ? PyLong_AsLong(key) : -1;
        Py_ssize_t start, end;
        if (!bounds(ra, blen, &start, &end)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        if (t == XFRMA_TMPL) {
            t_start = start;
            t_end = end;
        } else if (t == XFRMA_OFFLOAD_DEV && end - start >= 5) {
            o_start = start;
            o_end = end;
        } else {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
    }
    (void)o_end;
    /* copy_templates takes the whole templates, at most XFRM_MAX_DEPTH of them */
    t_end -= (t_end - t_start) % TMPL_LEN;
    Py_ssize_t n = (t_end - t_start) / TMPL_LEN;
    if (n > MAX_DEPTH || !tmpls_ok(b, t_start, t_end, family, dir))
        Py_RETURN_NONE;

    /* accepted: Policy(key, lft, priority, index, action, flags, ptype, templates, mark,
     * if_id, dir, family), as xfrm_add_policy calls it */
    PyObject *tmpls = PyTuple_New(n), *pol = NULL, *ret = NULL;
    if (tmpls == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *tp = template(b + t_start + i * TMPL_LEN);
        if (tp == NULL)
            goto out;
        PyTuple_SET_ITEM(tmpls, i, tp);
    }
    unsigned char kb[KEY_LEN];
    memcpy(kb, p, SEL_LEN);
    memset(kb + SEL_LEN, 0, KEY_LEN - SEL_LEN);
    kb[SEL_LEN] = (unsigned char)dir;          /* type MAIN, if_id 0, mark (0, 0) */
    PyObject *a[12] = {
        PyBytes_FromStringAndSize((const char *)kb, KEY_LEN), lifetime(p + 56),
        PyLong_FromUnsignedLong(priority), PyLong_FromUnsignedLong(index),
        PyLong_FromLong(action), PyLong_FromLong(flags), PyLong_FromLong(0), tmpls,
        (Py_INCREF(no_mark), no_mark), PyLong_FromLong(0), PyLong_FromLong(dir),
        PyLong_FromLong(family),
    };
    Py_INCREF(tmpls);
    int ok = 1;
    for (int i = 0; i < 12; i++)
        if (a[i] == NULL)
            ok = 0;
    if (ok)
        pol = make_policy(a);
    for (int i = 0; i < 12; i++)
        Py_XDECREF(a[i]);
    if (pol == NULL)
        goto out;
    if (o_start >= 0) {
        /* xfrm_dev_policy_add (struct xfrm_user_offload: ifindex, flags) */
        PyObject *ifindex = PyLong_FromLong((int32_t)u32(b + o_start));
        int bound = ifindex == NULL ? -1 : bind_offload(ns, pol, ifindex, b[o_start + 4], dir);
        Py_XDECREF(ifindex);
        if (bound < 0)
            goto out;
        if (bound == 0) {           /* a check fails: the Python path */
            Py_INCREF(Py_None);
            ret = Py_None;
            goto out;
        }
    }
    ret = pol;
    pol = NULL;
out:
    Py_DECREF(tmpls);
    Py_XDECREF(pol);
    return ret;
}

/* -- xfrm_policy_insert's common case ------------------------------------------------------
 * insert(db, pol), spdb.PolicyDb.insert being the reference: a policy made by
 * newpolicy() (the shared no-limits lifetime and no mark: nothing to sanitize, no timer to
 * arm) whose selector is new to the SPD, and whose direction's bydst table needs no resize,
 * is linked as the Python insert links it -- the index xfrm_gen_index gives, both tables,
 * the direction's count, the add time -- and 0 returned. Anything else (an EEXIST, an
 * UPDPOLICY replacing a policy, a lifetime, a mark, a resize, an object it does not know)
 * returns None before anything changed: the Python insert decides. */
static Py_ssize_t off_key = -1, off_mark, off_lft, off_dir, off_index, off_add, off_use;
static PyObject *s_by_selector, *s_byidx, *s_idx_generator, *s_xnet, *s_spd_counts,
    *s_bydst_hmask, *s_kernel, *s_clock, *s_wall;

#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

static int learn_insert(PyTypeObject *tp)
{
    Py_ssize_t *offs[7] = {&off_key, &off_mark, &off_lft, &off_dir, &off_index, &off_add, &off_use};
    const char *names[7] = {"key", "mark", "lft", "dir", "index", "curlft_add", "curlft_use"};
    PyObject **strs[9] = {&s_by_selector, &s_byidx, &s_idx_generator, &s_xnet, &s_spd_counts,
                          &s_bydst_hmask, &s_kernel, &s_clock, &s_wall};
    const char *snames[9] = {"by_selector", "byidx", "idx_generator", "xnet", "spd_counts",
                             "bydst_hmask", "kernel", "clock", "wall"};
    off_key = -1;
    for (int i = 0; i < 9; i++)
        if (*strs[i] == NULL && (*strs[i] = PyUnicode_InternFromString(snames[i])) == NULL)
            return -1;
    for (int i = 0; i < 7; i++) {
        Py_ssize_t o = slot_offset_s(tp, names[i]);
        if (o < 0) {
            off_key = -1;
            return 0;
        }
        *offs[i] = o;
    }
    return 1;
}

/* an attribute of `o` that must be of type `tp` (exactly): a new reference, or NULL with
 * no error set when it is something else */
static PyObject *attr_of(PyObject *o, PyObject *name, PyTypeObject *tp)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v != NULL && Py_TYPE(v) != tp) {
        Py_DECREF(v);
        return NULL;
    }
    PyErr_Clear();
    return v;
}

/* a list's item `i` as a C long, or -1 (not an int, or out of range) */
static long list_long(PyObject *list, long i)
{
    if (i >= PyList_GET_SIZE(list) || !PyLong_CheckExact(PyList_GET_ITEM(list, i)))
        return -1;
    long v = PyLong_AsLong(PyList_GET_ITEM(list, i));
    if (v < 0)
        PyErr_Clear();
    return v < 0 ? -1 : v;
}

/* ktime_get_real_seconds: clock.wall(). The server's clock (SystemClock) inline -- its
 * Python frame was a sixth of a NEWPOLICY -- as its wall() computes it: int(time.time() +
 * offset), the int object of the last call when the second has not changed. Any other clock,
 * a SystemClock whose wall() is not that one, an offset that is not a float: wall() is
 * called. tests/test_polfast.py compares the two. */
static PyObject *SystemClock_t, *system_wall, *s_offset, *s_last_wall;

static PyObject *setup_clock(PyObject *self, PyObject *cls)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "setup_clock(SystemClock)");
        return NULL;
    }
    PyObject *w = _PyType_Lookup((PyTypeObject *)cls, s_wall);
    if (w == NULL || !PyFunction_Check(w))
        Py_RETURN_FALSE;
    if ((s_offset == NULL && (s_offset = PyUnicode_InternFromString("offset")) == NULL)
            || (s_last_wall == NULL
                && (s_last_wall = PyUnicode_InternFromString("_last_wall")) == NULL))
        return NULL;
    Py_INCREF(cls);
    Py_XSETREF(SystemClock_t, cls);
    Py_INCREF(w);
    Py_XSETREF(system_wall, w);
    Py_RETURN_TRUE;
}

static PyObject *wall(PyObject *clock)
{
    if (SystemClock_t == NULL || Py_TYPE(clock) != (PyTypeObject *)SystemClock_t
            || _PyType_Lookup(Py_TYPE(clock), s_wall) != system_wall)
        return PyObject_CallMethodNoArgs(clock, s_wall);
    PyObject *offset = PyObject_GetAttr(clock, s_offset);
    if (offset == NULL || !PyFloat_CheckExact(offset)) {
        Py_XDECREF(offset);
        PyErr_Clear();
        return PyObject_CallMethodNoArgs(clock, s_wall);
    }
    /* time.time() + self.offset, int() of it */
    double t = _PyTime_AsSecondsDouble(_PyTime_GetSystemClock()) + PyFloat_AS_DOUBLE(offset);
    Py_DECREF(offset);
    PyObject *seconds = PyLong_FromDouble(t), *last = NULL;
    if (seconds == NULL || (last = PyObject_GetAttr(clock, s_last_wall)) == NULL)
        goto fail;
    int differ = PyObject_RichCompareBool(seconds, last, Py_NE);
    if (differ < 0)
        goto fail;
    if (!differ) {
        Py_DECREF(seconds);
        return last;
    }
    Py_DECREF(last);
    if (PyObject_SetAttr(clock, s_last_wall, seconds) < 0)
        goto fail;
    return seconds;
fail:
    Py_XDECREF(seconds);
    Py_XDECREF(last);
    return NULL;
}

/* gen_index's test of an index (given as its spdb.idx_key): 1 when a live policy holds it, 0
 * when none or a dead one (PolicyDb.byidx keeps a deleted policy until its grace period
 * ends), -1 on error */
static PyObject *s_dead;

static int index_taken(PyObject *byidx, PyObject *idx)
{
    PyObject *p = PyDict_GetItemWithError(byidx, idx);
    if (p == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (s_dead == NULL && (s_dead = PyUnicode_InternFromString("dead")) == NULL)
        return -1;
    PyObject *dead = PyObject_GetAttr(p, s_dead);
    if (dead == NULL)
        return -1;
    int is_dead = PyObject_IsTrue(dead);
    Py_DECREF(dead);
    return is_dead < 0 ? -1 : !is_dead;
}

static PyObject *py_wall(PyObject *self, PyObject *clock)
{
    return wall(clock);
}

static PyObject *insert(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "insert(db, pol)");
        return NULL;
    }
    PyObject *db = args[0], *pol = args[1];
    if (off_key < 0 || Py_TYPE(pol) != (PyTypeObject *)Policy_t)
        Py_RETURN_NONE;
    PyObject *key = SLOT(pol, off_key), *dir_o = SLOT(pol, off_dir), *index_o = SLOT(pol, off_index);
    if (key == NULL || !PyBytes_CheckExact(key) || SLOT(pol, off_mark) != no_mark
            || SLOT(pol, off_lft) != no_limits || dir_o == NULL || !PyLong_CheckExact(dir_o)
            || index_o == NULL || !PyLong_CheckExact(index_o))
        Py_RETURN_NONE;
    long dir = PyLong_AsLong(dir_o);
    unsigned long index = PyLong_AsUnsignedLong(index_o);
    if (PyErr_Occurred() || dir < 0 || dir > 5 || index > 0xFFFFFFFFUL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *ret = Py_None, *by_selector = NULL, *byidx = NULL, *gen_o = NULL, *xnet = NULL,
        *counts = NULL, *hmask = NULL, *kernel = NULL, *clock = NULL, *now = NULL, *idx_o = NULL,
        *count_o = NULL, *key_o = NULL;
    Py_INCREF(ret);
    if ((by_selector = attr_of(db, s_by_selector, &PyDict_Type)) == NULL
            || (byidx = attr_of(db, s_byidx, &PyDict_Type)) == NULL
            || (gen_o = attr_of(db, s_idx_generator, &PyLong_Type)) == NULL
            || (xnet = PyObject_GetAttr(db, s_xnet)) == NULL
            || (counts = attr_of(xnet, s_spd_counts, &PyList_Type)) == NULL
            || (hmask = attr_of(db, s_bydst_hmask, &PyList_Type)) == NULL) {
        PyErr_Clear();
        goto out;
    }
    long count = list_long(counts, dir), mask = list_long(hmask, dir);
    if (count < 0 || mask < 0 || count + 1 > mask)
        goto out;       /* xfrm_bydst_should_resize: Python's _resize_check */
    unsigned long gen = PyLong_AsUnsignedLong(gen_o), gen0 = gen;
    if (PyErr_Occurred() || gen > 0xFFFFFFFFUL) {
        PyErr_Clear();
        goto out;
    }
    /* ktime_get_real_seconds, before anything changes (Python code: it may raise) */
    if ((kernel = PyObject_GetAttr(db, s_kernel)) == NULL
            || (clock = PyObject_GetAttr(kernel, s_clock)) == NULL
            || (now = wall(clock)) == NULL) {
        Py_CLEAR(ret);
        goto out;
    }
    /* xfrm_gen_index: the user's index if free, else (generator | dir), stepping by 8 */
    for (;;) {
        unsigned long idx;
        if (!index) {
            idx = gen | (unsigned long)dir;
            gen = (gen + 8) & 0xFFFFFFFFUL;
        } else {
            idx = index;
            index = 0;
        }
        if (idx == 0)
            idx = 8;
        Py_XSETREF(idx_o, PyLong_FromUnsignedLong(idx));
        /* the table's key, spdb.idx_key: the index rotated right by 3 */
        Py_XSETREF(key_o, idx_o == NULL ? NULL
                   : PyLong_FromUnsignedLong(((idx >> 3) | (idx << 29)) & 0xFFFFFFFFUL));
        /* free, or a dead policy's entry waiting for its grace period (taken over) */
        int taken = key_o == NULL ? -1 : index_taken(byidx, key_o);
        if (taken < 0) {
            Py_CLEAR(ret);
            goto out;
        }
        if (!taken)
            break;
    }
    if ((count_o = PyLong_FromLong(count + 1)) == NULL) {
        Py_CLEAR(ret);
        goto out;
    }
    /* by_selector[key] = pol, unless the selector is taken (EEXIST, or UPDPOLICY's
     * replacement: Python's, and nothing has changed yet): one lookup for both */
    PyObject *old = PyDict_SetDefault(by_selector, key, pol);
    if (old != pol) {
        if (old == NULL)
            Py_CLEAR(ret);
        goto out;
    }
    if (gen != gen0) {
        PyObject *g = PyLong_FromUnsignedLong(gen);
        int err = g == NULL ? -1 : PyObject_SetAttr(db, s_idx_generator, g);
        Py_XDECREF(g);
        if (err < 0) {
            Py_CLEAR(ret);
            goto out;
        }
    }
    /* linked: as PolicyDb.insert links it, in its order */
    Py_INCREF(idx_o);
    Py_SETREF(SLOT(pol, off_index), idx_o);
    if (PyDict_SetItem(byidx, key_o, pol) < 0) {
        Py_CLEAR(ret);
        goto out;
    }
    PyList_SetItem(counts, dir, count_o);        /* steals count_o */
    count_o = NULL;
    Py_INCREF(now);
    Py_XSETREF(SLOT(pol, off_add), now);
    Py_XSETREF(SLOT(pol, off_use), PyLong_FromLong(0));
    Py_SETREF(ret, PyLong_FromLong(0));
out:
    Py_XDECREF(by_selector);
    Py_XDECREF(byidx);
    Py_XDECREF(gen_o);
    Py_XDECREF(xnet);
    Py_XDECREF(counts);
    Py_XDECREF(hmask);
    Py_XDECREF(kernel);
    Py_XDECREF(clock);
    Py_XDECREF(now);
    Py_XDECREF(idx_o);
    Py_XDECREF(key_o);
    Py_XDECREF(count_o);
    return ret;
}

/* -- xfrm_dev_policy_add up to the driver ---------------------------------------------------
 * newpolicy()'s XFRMA_OFFLOAD_DEV, offload.xfrm_dev_policy_add being the reference: when
 * CONFIG_XFRM_OFFLOAD is on, the flags are XFRM_OFFLOAD_PACKET, the namespace has a device
 * of that ifindex whose xfrmdev ops have the policy ops, and the direction is IN, OUT or FWD
 * -- its checks in the kernel's order all pass -- pol.xdo is bound to the device as the
 * Python function binds it (an XfrmDevOffload, its slots as __init__ fills them): the caller
 * calls the driver's xdo_dev_policy_add. Anything else leaves the policy as it was and
 * newpolicy() returns None: the Python path decides (and raises). */
#define XDO_SLOTS 8
static PyObject *XfrmDevOffload_t, *s_kernel_, *s_kconfig, *s_values, *s_xfrm_offload,
    *s_links, *s_by_index, *s_xfrmdev_ops, *s_has_policy_ops;
static Py_ssize_t off_xdo = -1, xdo_off[XDO_SLOTS];
static PyObject *xdo_policy_t;     /* the Policy type off_xdo belongs to (borrowed: Policy_t's) */
static const char *xdo_names[XDO_SLOTS] = {"dev", "real_dev", "dir", "type", "flags",
                                           "offload_handle", "priv", "upper_priv"};

static PyObject *setup_offload(PyObject *self, PyObject *cls)
{
    if (!PyType_Check(cls) || Policy_t == NULL) {
        PyErr_SetString(PyExc_TypeError, "setup_offload(XfrmDevOffload), after setup()");
        return NULL;
    }
    PyTypeObject *tp = (PyTypeObject *)cls;
    off_xdo = -1;
    PyObject *names = PyObject_GetAttrString(cls, "__slots__");
    int ok = names != NULL && PyTuple_Check(names) && PyTuple_GET_SIZE(names) == XDO_SLOTS
        && tp->tp_dictoffset == 0 && tp->tp_base == &PyBaseObject_Type;
    /* exactly the slots __init__ fills (a new one would be left unset here) */
    for (int i = 0; ok && i < XDO_SLOTS; i++) {
        ok = PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(names, i), xdo_names[i]) == 0;
        if (ok)
            ok = (xdo_off[i] = slot_offset_s(tp, xdo_names[i])) >= 0;
    }
    Py_XDECREF(names);
    PyErr_Clear();
    PyObject **strs[8] = {&s_kernel_, &s_kconfig, &s_values, &s_xfrm_offload, &s_links,
                          &s_by_index, &s_xfrmdev_ops, &s_has_policy_ops};
    const char *snames[8] = {"kernel", "kconfig", "values", "XFRM_OFFLOAD", "links",
                             "by_index", "xfrmdev_ops", "has_policy_ops"};
    for (int i = 0; i < 8; i++)
        if (*strs[i] == NULL && (*strs[i] = PyUnicode_InternFromString(snames[i])) == NULL)
            return NULL;
    if (ok)
        ok = (off_xdo = slot_offset_s((PyTypeObject *)Policy_t, "xdo")) >= 0;
    xdo_policy_t = Policy_t;
    Py_INCREF(cls);
    Py_XSETREF(XfrmDevOffload_t, cls);
    return PyBool_FromLong(ok);
}

/* getattr(o, name, None), as a new reference (None for any error) */
static PyObject *attr_or_none(PyObject *o, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) {
        PyErr_Clear();
        Py_INCREF(Py_None);
        v = Py_None;
    }
    return v;
}

static int bind_offload(PyObject *ns, PyObject *pol, PyObject *ifindex, long flags, long dir)
{
    if (off_xdo < 0 || Py_TYPE(pol) != (PyTypeObject *)xdo_policy_t
            || SLOT(pol, off_xdo) != Py_None)
        return 0;
    /* (the !CONFIG_XFRM_OFFLOAD stub and every check that fails: the Python function) */
    if (flags != 4 /* XFRM_OFFLOAD_PACKET */ || dir < 0 || dir > POLICY_FWD)
        return 0;
    int ret = 0;
    PyObject *kernel = NULL, *cfg = NULL, *links = NULL, *dev = NULL, *ops = NULL;
    kernel = attr_or_none(ns, s_kernel_);
    cfg = attr_or_none(kernel, s_kconfig);
    if (cfg != Py_None) {                       /* kconfig.enabled("XFRM_OFFLOAD") */
        PyObject *values = attr_or_none(cfg, s_values);
        PyObject *on = PyDict_Check(values) ? PyDict_GetItemWithError(values, s_xfrm_offload) : NULL;
        int yes = on == Py_True;
        Py_DECREF(values);
        if (!yes)
            goto out;
    }
    links = attr_or_none(ns, s_links);
    if (links == Py_None)
        goto out;
    dev = PyObject_CallMethodOneArg(links, s_by_index, ifindex);     /* dev_get_by_index */
    if (dev == NULL || dev == Py_None)
        goto out;
    ops = attr_or_none(dev, s_xfrmdev_ops);
    if (ops == Py_None)
        goto out;
    PyObject *has = attr_or_none(ops, s_has_policy_ops);
    int yes = has == Py_True;
    Py_DECREF(has);
    if (!yes)
        goto out;
    /* XfrmDevOffload(dev, XFRM_DEV_OFFLOAD_IN/OUT/FWD, XFRM_DEV_OFFLOAD_PACKET) */
    PyObject *xdo = ((PyTypeObject *)XfrmDevOffload_t)->tp_alloc((PyTypeObject *)XfrmDevOffload_t, 0);
    if (xdo == NULL) {
        ret = -1;
        goto out;
    }
    PyObject *vals[XDO_SLOTS] = {dev, dev, PyLong_FromLong(dir + 1), PyLong_FromLong(2),
                                 PyLong_FromLong(0), PyLong_FromLong(0), Py_None, Py_None};
    for (int i = 0; i < XDO_SLOTS; i++) {
        Py_INCREF(vals[i]);             /* (small ints: never NULL) */
        SLOT(xdo, xdo_off[i]) = vals[i];
    }
    Py_SETREF(SLOT(pol, off_xdo), xdo);
    ret = 1;
out:
    if (ret == 0)
        PyErr_Clear();
    Py_XDECREF(kernel);
    Py_XDECREF(cfg);
    Py_XDECREF(links);
    Py_XDECREF(dev);
    Py_XDECREF(ops);
    return ret;
}

/* -- the by-selector lookup's memory, fetched ahead ------------------------------------------
 * A DELPOLICY or GETPOLICY by selector at a million policies waits for three cold lines one
 * after the other: the dict's index slot, the entry it names, then the stored key and the
 * policy (read side by side). Their addresses are known early -- the slot from the key's
 * hash, the entry from the slot -- while the handler still has the request's checks to run
 * (xfrm_get_policy, _lookup: policy type, direction, security context). So:
 *
 * ahead(table, sel, dir): the key of a request with no attributes, policy.policy_key(sel,
 * dir, MAIN, 0, 0, 0), its hash taken and the first two slots the lookup probes for it in
 * `table` (a dict) fetched; None when sel is not 56 bytes.
 * ahead_entry(table, key): the entries those slots name fetched.
 *
 * Hints only: nothing is read but the dict's own table, nothing changes, and the lookup
 * itself is the dict's (docs/performance.md, "The SPD's 1M curve (session 12)"). */
#ifdef DICT_TABLE
static PyDictKeysObject *general_keys(PyObject *table)
{
    if (!PyDict_CheckExact(table))
        return NULL;
    PyDictKeysObject *dk = ((PyDictObject *)table)->ma_keys;
    if (dk->dk_kind != DICT_KEYS_GENERAL || ((PyDictObject *)table)->ma_values != NULL)
        return NULL;
    return dk;
}

/* the address of slot i of dk's index table, and its width in bytes */
static const char *slot_at(PyDictKeysObject *dk, size_t i, int *width)
{
    *width = 1 << (dk->dk_log2_index_bytes - dk->dk_log2_size);
    return dk->dk_indices + i * (size_t)*width;
}

/* the first two slots the dict's lookup probes for `hash` (dictobject.c's open addressing:
 * i = hash & mask, then perturb >>= 5, i = (i * 5 + perturb + 1) & mask): at the table's
 * load a third of the keys are not in their first slot */
static void probe_slots(PyDictKeysObject *dk, Py_hash_t hash, size_t slot[2])
{
    size_t mask = (size_t)DK_SIZE(dk) - 1, perturb = (size_t)hash;
    slot[0] = (size_t)hash & mask;
    perturb >>= 5;
    slot[1] = (slot[0] * 5 + perturb + 1) & mask;
}
#endif

static PyObject *ahead(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyBytes_CheckExact(args[1]) || !PyLong_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "ahead(table, sel: bytes, dir: int)");
        return NULL;
    }
    long dir = PyLong_AsLong(args[2]);
    if (PyBytes_GET_SIZE(args[1]) != SEL_LEN || dir < 0 || dir > 0xFF) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    unsigned char kb[KEY_LEN];
    memcpy(kb, PyBytes_AS_STRING(args[1]), SEL_LEN);
    memset(kb + SEL_LEN, 0, KEY_LEN - SEL_LEN);
    kb[SEL_LEN] = (unsigned char)dir;          /* type MAIN, if_id 0, mark (0, 0) */
    PyObject *key = PyBytes_FromStringAndSize((const char *)kb, KEY_LEN);
    if (key == NULL)
        return NULL;
    Py_hash_t hash = PyObject_Hash(key);       /* kept in the object: the lookup's */
#ifdef DICT_TABLE
    PyDictKeysObject *dk = general_keys(args[0]);
    if (hash != -1 && dk != NULL) {
        int width;
        size_t slot[2];
        probe_slots(dk, hash, slot);
        for (int p = 0; p < 2; p++)
            __builtin_prefetch(slot_at(dk, slot[p], &width));
    }
#endif
    (void)hash;
    PyErr_Clear();
    return key;
}

static PyObject *ahead_entry(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "ahead_entry(table, key: bytes)");
        return NULL;
    }
#ifdef DICT_TABLE
    PyDictKeysObject *dk = general_keys(args[0]);
    Py_hash_t hash = PyObject_Hash(args[1]);
    if (dk == NULL || hash == -1) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    int width;
    size_t slot[2];
    probe_slots(dk, hash, slot);
    for (int p = 0; p < 2; p++) {
        const char *at = slot_at(dk, slot[p], &width);
        Py_ssize_t ix = width == 1 ? *(const int8_t *)at : width == 2 ? *(const int16_t *)at
                        : width == 4 ? *(const int32_t *)at : *(const int64_t *)at;
        if (ix >= 0 && ix < dk->dk_nentries)
            __builtin_prefetch(&DK_ENTRIES(dk)[ix]);
    }
#endif
    Py_RETURN_NONE;
}

static PyObject *setup(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7 || !PyType_Check(args[0]) || !PyType_Check(args[1])
            || !PyDict_CheckExact(args[5])) {
        PyErr_SetString(PyExc_TypeError, "setup(Policy, Template, NO_LIMITS, NO_MARK, ANY, "
                        "SEEN, shared)");
        return NULL;
    }
    PyObject **slots[7] = {&Policy_t, &Template_t, &no_limits, &no_mark, &any_alg, &seen,
                           &shared};
    for (int i = 0; i < 7; i++) {
        Py_INCREF(args[i]);
        Py_XSETREF(*slots[i], args[i]);
    }
    n_slots = -1;
    if (learn_insert((PyTypeObject *)Policy_t) < 0)
        return NULL;
    return PyBool_FromLong(learn_layout(Policy_t));
}

static PyMethodDef methods[] = {
    {"newpolicy", (PyCFunction)(void (*)(void))newpolicy, METH_FASTCALL,
     "newpolicy(buf, off, attrs, ns): the Policy (an offload bound to its device) when "
     "verify_newpolicy_info, validate_tmpl and xfrm_dev_policy_add's checks would accept the "
     "request for sure, else None"},
    {"insert", (PyCFunction)(void (*)(void))insert, METH_FASTCALL,
     "insert(db, pol): 0 when xfrm_policy_insert's common case linked the policy, "
     "else None (nothing changed: PolicyDb.insert decides)"},
    {"ahead", (PyCFunction)(void (*)(void))ahead, METH_FASTCALL,
     "ahead(table, sel, dir): policy_key(sel, dir, 0, 0, 0, 0), its slot in the dict table "
     "fetched ahead; None for a selector that is not 56 bytes"},
    {"ahead_entry", (PyCFunction)(void (*)(void))ahead_entry, METH_FASTCALL,
     "ahead_entry(table, key): the dict entry key's slot names fetched ahead"},
    {"setup_clock", (PyCFunction)setup_clock, METH_O,
     "setup_clock(SystemClock): True when insert() reads that clock without its wall()"},
    {"wall", (PyCFunction)py_wall, METH_O, "wall(clock): clock.wall(), as insert() reads it"},
    {"setup_offload", (PyCFunction)setup_offload, METH_O,
     "setup_offload(XfrmDevOffload): True when newpolicy binds offloaded policies"},
    {"setup", (PyCFunction)(void (*)(void))setup, METH_FASTCALL,
     "setup(Policy, Template, NO_LIMITS, NO_MARK, ANY, SEEN, shared): True when "
     "policies are made without calling Policy.__init__"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_polfast", NULL, -1, methods};

PyMODINIT_FUNC PyInit__polfast(void) { return PyModule_Create(&module); }
