/* Shared by the C extensions that read and write a __slots__ class's slots at their
 * offsets (xfrmd/netlink/_rcvfast.c, xfrmd/_transport.c). A header, not an extension: each
 * includes it, and netlink_codec/cext.py's build key hashes it with the including source, so
 * that an edit here rebuilds both. */
#ifndef XFRMD_SLOTS_H
#define XFRMD_SLOTS_H

#include <Python.h>
#include <structmember.h>

/* off[i] = the offset of the slot names[i] of cls, for n names; -1 with TypeError when cls
 * is not a class or a name is not a plain object slot (T_OBJECT_EX: AttributeError when
 * unset), as a property or a slot of another kind cannot be read at an offset */
static int learn_offsets(PyObject *cls, const char **names, int n, Py_ssize_t *off)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "a class");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        PyObject *d = PyObject_GetAttrString(cls, names[i]);
        if (d == NULL)
            return -1;
        int ok = Py_TYPE(d) == &PyMemberDescr_Type
            && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (ok)
            off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%s is not a plain slot", names[i]);
            return -1;
        }
    }
    return 0;
}

#endif
