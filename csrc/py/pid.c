/*
 * pid.c: the Pid type, a mailbox's cluster-wide identity: the node's
 * interned record (name and incarnation) and a number unique on it.
 * Immutable, hashable, ordered by (node name, incarnation, number).
 */
#include "glue.h"

#include <string.h>

PyObject *
psg_pid_new(ps_state *st, ps_node *node, uint64_t id)
{
    PidObject *p = PyObject_New(PidObject, st->Pid);

    if (p == NULL)
        return NULL;
    p->node = node;
    p->id = id;
    return (PyObject *)p;
}

static void
Pid_dealloc(PidObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_Free(self);
    Py_DECREF(tp);
}

static Py_hash_t
Pid_hash(PidObject *self)
{
    uint64_t h = self->id * 0x9e3779b97f4a7c15ULL;

    h ^= self->node->incarnation + (h << 6) + (h >> 2);
    h &= ~(uint64_t)0 >> 1;
    return (Py_hash_t)(h == (uint64_t)-1 ? 1 : h);
}

static int
cmp_u64(uint64_t a, uint64_t b)
{
    return a < b ? -1 : a > b;
}

static int
pid_cmp(PidObject *a, PidObject *b)
{
    int c;
    size_t n;

    if (a->node != b->node) {
        n = a->node->name_len < b->node->name_len ? a->node->name_len
                                                  : b->node->name_len;
        c = memcmp(a->node->name, b->node->name, n);
        if (c == 0)
            c = cmp_u64(a->node->name_len, b->node->name_len);
        if (c == 0)
            c = cmp_u64(a->node->incarnation, b->node->incarnation);
        if (c != 0)
            return c;
    }
    return cmp_u64(a->id, b->id);
}

static PyObject *
Pid_richcompare(PyObject *a, PyObject *b, int op)
{
    int c;

    if (Py_TYPE(a) != Py_TYPE(b))
        Py_RETURN_NOTIMPLEMENTED;
    c = pid_cmp((PidObject *)a, (PidObject *)b);
    Py_RETURN_RICHCOMPARE(c, 0, op);
}

static PyObject *
Pid_repr(PidObject *self)
{
    char buf[PS_MAX_NODENAME + 64];

    /* The low 32 bits of the incarnation tell node starts apart. */
    PyOS_snprintf(buf, sizeof buf, "<Pid %s#%08lx.%llu>", self->node->name,
                  (unsigned long)(self->node->incarnation & 0xffffffffUL),
                  (unsigned long long)self->id);
    return PyUnicode_DecodeUTF8(buf, (Py_ssize_t)strlen(buf),
                                "surrogateescape");
}

static PyObject *
Pid_get_node(PidObject *self, void *c)
{
    return PyUnicode_DecodeUTF8(self->node->name, self->node->name_len,
                                "surrogateescape");
}

static PyObject *
Pid_get_incarnation(PidObject *self, void *c)
{
    return PyLong_FromUnsignedLongLong(self->node->incarnation);
}

static PyObject *
Pid_get_id(PidObject *self, void *c)
{
    return PyLong_FromUnsignedLongLong(self->id);
}

static PyObject *
Pid_get_is_local(PidObject *self, void *c)
{
    return PyBool_FromLong(self->node == ps_node_local());
}

static PyGetSetDef Pid_getset[] = {
    {"node", (getter)Pid_get_node, NULL, "Name of the node it lives on.",
     NULL},
    {"incarnation", (getter)Pid_get_incarnation, NULL,
     "The node start it belongs to; a restarted node has a new one.", NULL},
    {"id", (getter)Pid_get_id, NULL, "Number unique on that node start.",
     NULL},
    {"is_local", (getter)Pid_get_is_local, NULL,
     "True when the mailbox lives in this process.", NULL},
    {NULL},
};

/* A pid is immutable and names one mailbox: a copy is the pid itself. */
static PyObject *
Pid_copy(PyObject *self, PyObject *unused)
{
    return Py_NewRef(self);
}

static PyMethodDef Pid_methods[] = {
    {"__copy__", Pid_copy, METH_NOARGS, NULL},
    {"__deepcopy__", Pid_copy, METH_O, NULL},
    {NULL},
};

static PyType_Slot Pid_slots[] = {
    {Py_tp_doc, "A mailbox's identity: node, incarnation and number.\n\n"
                "Made by the library (Mailbox.pid, Message.sender); "
                "hashable and ordered."},
    {Py_tp_dealloc, Pid_dealloc},
    {Py_tp_hash, Pid_hash},
    {Py_tp_richcompare, Pid_richcompare},
    {Py_tp_repr, Pid_repr},
    {Py_tp_getset, Pid_getset},
    {Py_tp_methods, Pid_methods},
    {0, NULL},
};

PyType_Spec psg_pid_spec = {
    .name = "pubsub.Pid",
    .basicsize = sizeof(PidObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Pid_slots,
};
