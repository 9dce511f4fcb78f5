/*
 * module.c: the pubsub._core module: its state, exceptions and functions.
 * (Minimal for now: the codec only.  The types arrive with the core.)
 */
#include "glue.h"

#include "ps_codec.h"

static struct PyModuleDef core_module;

ps_state *
psg_state_of_type(PyTypeObject *type)
{
    PyObject *m = PyType_GetModuleByDef(type, &core_module);

    return m ? psg_state(m) : NULL;
}

PyObject *
psg_raise(ps_state *st, int code, const char *what)
{
    PyObject *exc = st->PubSubError;

    switch (code) {
    case PS_ENOMEM:
        return PyErr_NoMemory();
    case PS_EDEPTH: case PS_ETOOBIG: case PS_EINVAL: case PS_ENAMETOOLONG:
        exc = PyExc_ValueError;
        break;
    case PS_EUNSUPP:
        exc = PyExc_TypeError;
        break;
    case PS_EBADDATA: case PS_ETRUNC:
        exc = st->CodecError;
        break;
    case PS_ECLOSED:
        exc = st->MailboxClosed;
        break;
    case PS_ESLOW:
        exc = st->SlowConsumer;
        break;
    case PS_EEMPTY:
        exc = st->Empty;
        break;
    }
    if (what)
        PyErr_Format(exc, "%s: %s", what, ps_strerror(code));
    else
        PyErr_SetString(exc, ps_strerror(code));
    return NULL;
}

static int
add_exc(PyObject *m, PyObject **slot, const char *name, PyObject *bases,
        const char *doc)
{
    char full[64];

    PyOS_snprintf(full, sizeof full, "pubsub.%s", name);
    *slot = PyErr_NewExceptionWithDoc(full, doc, bases, NULL);
    if (*slot == NULL)
        return -1;
    return PyModule_AddObjectRef(m, name, *slot);
}

static int
core_exec(PyObject *m)
{
    ps_state *st = psg_state(m);
    PyObject *b;

    if (add_exc(m, &st->PubSubError, "PubSubError", NULL,
                "Root of every error this package raises.") < 0)
        return -1;
    b = PyTuple_Pack(2, st->PubSubError, PyExc_ValueError);
    if (b == NULL)
        return -1;
    if (add_exc(m, &st->CodecError, "CodecError", b,
                "Encoded data is malformed, truncated or too deep.") < 0) {
        Py_DECREF(b);
        return -1;
    }
    Py_DECREF(b);
    if (PyModule_AddFunctions(m, psg_codec_methods) < 0)
        return -1;
    return 0;
}

static int
core_traverse(PyObject *m, visitproc visit, void *arg)
{
    ps_state *st = psg_state(m);

    Py_VISIT(st->PubSubError);
    Py_VISIT(st->CodecError);
    Py_VISIT(st->enc_hook);
    Py_VISIT(st->dec_hook);
    return 0;
}

static int
core_clear(PyObject *m)
{
    ps_state *st = psg_state(m);

    Py_CLEAR(st->PubSubError);
    Py_CLEAR(st->CodecError);
    Py_CLEAR(st->enc_hook);
    Py_CLEAR(st->dec_hook);
    return 0;
}

static void
core_free(void *m)
{
    core_clear((PyObject *)m);
}

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, core_exec},
    {0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pubsub._core",
    .m_doc = "The C core of cpubsub.",
    .m_size = sizeof(ps_state),
    .m_slots = core_slots,
    .m_traverse = core_traverse,
    .m_clear = core_clear,
    .m_free = core_free,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&core_module);
}
