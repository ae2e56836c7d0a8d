/* Shared by the C extensions that read and write a __slots__ class's slots at their
 * offsets (_taprec, _transport, netlink/_rcvfast, netlink/_reopen, datapath/_espfast,
 * xfrm/_sacons, _sadump, _polfast, _poldump). A header, not an extension: each includes it,
 * and netlink_codec/cext.py's build key hashes it with the including source, so that an
 * edit here rebuilds every includer. Setup-time only: a request reads the offsets learned. */
#ifndef XFRMD_SLOTS_H
#define XFRMD_SLOTS_H

#include <Python.h>
#include <structmember.h>

/* The offset of the plain object slot `name` of tp's instances, or -1, with no exception
 * set either way. A plain slot is what a __slots__ entry makes: a member descriptor of a
 * writable T_OBJECT_EX member (AttributeError when unset). It is looked up as an instance's
 * attribute is (_PyType_Lookup: tp's MRO, so a base class's slot counts, and a property or
 * class attribute of the same name in a subclass hides it; never the metaclass), so the
 * offset is valid in every instance of tp. */
static inline Py_ssize_t slot_offset(PyTypeObject *tp, PyObject *name)
{
    PyObject *d = PyUnicode_Check(name) ? _PyType_Lookup(tp, name) : NULL;   /* borrowed */
    if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type))
        return -1;
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    return m->type == T_OBJECT_EX && !(m->flags & READONLY) ? m->offset : -1;
}

/* slot_offset by a C string */
static inline Py_ssize_t slot_offset_s(PyTypeObject *tp, const char *name)
{
    PyObject *n = PyUnicode_InternFromString(name);
    if (n == NULL) {
        PyErr_Clear();
        return -1;
    }
    Py_ssize_t off = slot_offset(tp, n);
    Py_DECREF(n);
    return off;
}

/* off[i] = the offset of the slot names[i] of cls (slot_offset), for n names; -1 with
 * TypeError when cls is not a class or a name is not a plain slot, as a property or a slot
 * of another kind cannot be read at an offset */
static inline int learn_offsets(PyObject *cls, const char **names, int n, Py_ssize_t *off)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "a class");
        return -1;
    }
    for (int i = 0; i < n; i++)
        if ((off[i] = slot_offset_s((PyTypeObject *)cls, names[i])) < 0) {
            PyErr_Format(PyExc_TypeError, "%s.%s is not a plain slot",
                         ((PyTypeObject *)cls)->tp_name, names[i]);
            return -1;
        }
    return 0;
}

#endif
