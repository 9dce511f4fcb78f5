/*
 * message.c: the Message type, a tuple of (channel, sender, topic,
 * payload) with named fields.
 *
 * It is a plain tuple subclass rather than a struct sequence: CPython's
 * struct sequences look their sizes up in the type's dict on every
 * creation and destruction, which cost more than the rest of a delivery.
 * Here the size is fixed, the fields are member descriptors over the
 * tuple's items, and __match_args__ makes class patterns work.
 */
#include "glue.h"

#include <stddef.h>

#define NFIELDS 4

/*
 * Recently freed messages, kept for reuse as CPython keeps tuples: a
 * delivery then costs no trip through the allocator.  Entries keep their
 * reference to the type.  Touched only with the GIL.
 */
#define FREELIST_MAX 256
static PyTupleObject *freelist[FREELIST_MAX];
static int nfree;

static PyTupleObject *
message_alloc(ps_state *st)
{
    PyTupleObject *t;

    if (nfree > 0) {
        t = freelist[--nfree];
        /* Public API for what CPython's own free lists do. */
        Py_SET_REFCNT(t, 1);
        return t;
    }
    return PyObject_GC_NewVar(PyTupleObject, st->Message, NFIELDS);
}

void
psg_message_freelist_clear(void)
{
    while (nfree > 0) {
        PyTupleObject *t = freelist[--nfree];
        PyTypeObject *tp = Py_TYPE(t);

        PyObject_GC_Del(t);
        Py_DECREF(tp);
    }
}

PyObject *
psg_message_new(ps_state *st, PyObject *channel, PyObject *sender,
                PyObject *topic, PyObject *payload)
{
    PyTupleObject *t = message_alloc(st);

    if (t == NULL)
        return NULL;
    t->ob_item[0] = Py_NewRef(channel);
    t->ob_item[1] = Py_NewRef(sender);
    t->ob_item[2] = Py_NewRef(topic);
    t->ob_item[3] = Py_NewRef(payload);
    PyObject_GC_Track(t);
    return (PyObject *)t;
}

/* As psg_message_new, stealing the four references (which may be NULL
 * only when an error is set; then they are released and NULL returned). */
PyObject *
psg_message_steal(ps_state *st, PyObject *items[NFIELDS])
{
    PyTupleObject *t = NULL;

    if (items[0] && items[1] && items[2] && items[3])
        t = message_alloc(st);
    if (t == NULL) {
        for (int i = 0; i < NFIELDS; i++)
            Py_XDECREF(items[i]);
        return NULL;
    }
    for (int i = 0; i < NFIELDS; i++)
        t->ob_item[i] = items[i];
    PyObject_GC_Track(t);
    return (PyObject *)t;
}

static PyObject *
Message_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"channel", "sender", "topic", "payload", NULL};
    PyObject *a[NFIELDS];
    ps_state *st = psg_state_of_type(type);

    if (st == NULL ||
        !PyArg_ParseTupleAndKeywords(args, kw, "OOOO:Message", kwlist,
                                     &a[0], &a[1], &a[2], &a[3]))
        return NULL;
    /* The same shapes a mailbox receives, so code that matches on a
     * Message it built (tests, replays) sees what delivery would give. */
    if (a[0] != Py_None && !PyUnicode_Check(a[0]))
        return PyErr_Format(PyExc_TypeError,
                            "Message channel must be str or None, not %.100s",
                            Py_TYPE(a[0])->tp_name);
    if (a[1] != Py_None && !PyObject_TypeCheck(a[1], st->Pid))
        return PyErr_Format(PyExc_TypeError,
                            "Message sender must be a Pid or None, not %.100s",
                            Py_TYPE(a[1])->tp_name);
    if (!PyUnicode_Check(a[2]) && !PyBytes_Check(a[2]))
        return PyErr_Format(PyExc_TypeError,
                            "Message topic must be str or bytes, not %.100s",
                            Py_TYPE(a[2])->tp_name);
    return psg_message_new(st, a[0], a[1], a[2], a[3]);
}

static void
Message_dealloc(PyTupleObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    Py_TRASHCAN_BEGIN(self, Message_dealloc)
    for (int i = 0; i < NFIELDS; i++)
        Py_CLEAR(self->ob_item[i]);
    if (nfree < FREELIST_MAX) {
        freelist[nfree++] = self;
    } else {
        PyObject_GC_Del(self);
        Py_DECREF(tp);
    }
    Py_TRASHCAN_END
}

static int
Message_traverse(PyTupleObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    for (int i = 0; i < NFIELDS; i++)
        Py_VISIT(self->ob_item[i]);
    return 0;
}

static PyObject *
Message_repr(PyTupleObject *self)
{
    return PyUnicode_FromFormat("Message(channel=%R, sender=%R, topic=%R, "
                                "payload=%R)", self->ob_item[0],
                                self->ob_item[1], self->ob_item[2],
                                self->ob_item[3]);
}

static PyObject *
Message_reduce(PyTupleObject *self, PyObject *unused)
{
    return Py_BuildValue("O(OOOO)", Py_TYPE(self), self->ob_item[0],
                         self->ob_item[1], self->ob_item[2],
                         self->ob_item[3]);
}

#define ITEM(i) (Py_ssize_t)(offsetof(PyTupleObject, ob_item) \
                             + (i) * sizeof(PyObject *))

static PyMemberDef Message_members[] = {
    {"channel", T_OBJECT, ITEM(0), READONLY,
     "The channel it was broadcast on; None when sent directly."},
    {"sender", T_OBJECT, ITEM(1), READONLY,
     "The sender's Pid, or None."},
    {"topic", T_OBJECT, ITEM(2), READONLY,
     "str or bytes chosen by the sender."},
    {"payload", T_OBJECT, ITEM(3), READONLY,
     "The object broadcast (from another node: a decoded copy)."},
    {NULL},
};

static PyMethodDef Message_methods[] = {
    {"__reduce__", (PyCFunction)Message_reduce, METH_NOARGS, NULL},
    {NULL},
};

static PyType_Slot Message_slots[] = {
    {Py_tp_doc, "Message(channel, sender, topic, payload)\n\n"
                "What a mailbox receives: a tuple, so unpack it, index it "
                "or match it,\nas in case Message(channel='posts', "
                "topic='post_created', payload=p)."},
    {Py_tp_new, Message_new},
    {Py_tp_dealloc, Message_dealloc},
    {Py_tp_traverse, Message_traverse},
    {Py_tp_repr, Message_repr},
    {Py_tp_members, Message_members},
    {Py_tp_methods, Message_methods},
    {0, NULL},
};

PyType_Spec psg_message_spec = {
    .name = "pubsub.Message",
    .basicsize = 0,
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Message_slots,
};

/* Make the type, with __match_args__, and add it to the module. */
PyTypeObject *
psg_message_type(PyObject *module)
{
    PyObject *tp = PyType_FromModuleAndSpec(module, &psg_message_spec,
                                            (PyObject *)&PyTuple_Type);
    PyObject *args;

    if (tp == NULL)
        return NULL;
    args = Py_BuildValue("(ssss)", "channel", "sender", "topic", "payload");
    if (args == NULL ||
        PyDict_SetItemString(((PyTypeObject *)tp)->tp_dict,
                             "__match_args__", args) < 0 ||
        PyModule_AddObjectRef(module, "Message", tp) < 0) {
        Py_XDECREF(args);
        Py_DECREF(tp);
        return NULL;
    }
    Py_DECREF(args);
    PyType_Modified((PyTypeObject *)tp);
    return (PyTypeObject *)tp;
}
