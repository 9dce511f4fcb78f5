/*
 * module.c: the pubsub._core module: its state (types, exceptions, the
 * default scope), multi-phase initialisation, and the few functions that
 * belong to no type.
 *
 * The core's registry is process-wide, so the module may be initialised
 * once per process; a second initialisation (a subinterpreter, a reload)
 * is refused with ImportError rather than sharing C state between two
 * module states.
 */
#include "glue.h"

#include "ps_codec.h"

static struct PyModuleDef core_module;
static int initialised;

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
    case PS_EJOINS:
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
    case PS_EPROTO: case PS_EAUTH: case PS_EVERSION:
        exc = st->ProtocolError;
        break;
    case PS_ENOPEER:
        exc = st->PeerLost;
        break;
    }
    if (what)
        PyErr_Format(exc, "%s: %s", what, ps_strerror(code));
    else
        PyErr_SetString(exc, ps_strerror(code));
    return NULL;
}

static PyObject *
module_stats(PyObject *module, PyObject *unused)
{
    return Py_BuildValue(
        "{s:K,s:K,s:K,s:K}",
        "channels", (unsigned long long)ps_registry_channel_count(),
        "scopes", (unsigned long long)ps_registry_scope_count(),
        "mailboxes", (unsigned long long)ps_registry_mailbox_count(),
        "remote_messages", (unsigned long long)ps_rmsg_live());
}

static PyMethodDef core_functions[] = {
    {"_registry_stats", module_stats, METH_NOARGS,
     "Counts from the registry (for tests and the benchmarks)."},
    {NULL},
};

/* One exception class: name, bases (a tuple or one class), doc. */
static int
add_exc(PyObject *m, PyObject **slot, const char *name, PyObject *base1,
        PyObject *base2, const char *doc)
{
    char full[64];
    PyObject *bases;

    PyOS_snprintf(full, sizeof full, "pubsub.%s", name);
    bases = base2 ? PyTuple_Pack(2, base1, base2) : Py_NewRef(base1);
    if (bases == NULL)
        return -1;
    *slot = PyErr_NewExceptionWithDoc(full, doc, bases, NULL);
    Py_DECREF(bases);
    if (*slot == NULL)
        return -1;
    return PyModule_AddObjectRef(m, name, *slot);
}

static int
add_exceptions(PyObject *m, ps_state *st)
{
    if (add_exc(m, &st->PubSubError, "PubSubError", PyExc_Exception, NULL,
                "Root of every error this package raises.") < 0)
        return -1;
    return add_exc(m, &st->Empty, "Empty", st->PubSubError, NULL,
                   "recv_nowait() found the mailbox empty.")
        || add_exc(m, &st->MailboxClosed, "MailboxClosed", st->PubSubError,
                   PyExc_ValueError, "The mailbox is closed.")
        || add_exc(m, &st->SlowConsumer, "SlowConsumer", st->MailboxClosed,
                   NULL, "The mailbox was closed because it reached its "
                   "capacity under the 'close' overflow policy.")
        || add_exc(m, &st->Timeout, "Timeout", st->PubSubError,
                   PyExc_TimeoutError, "No message arrived in time.")
        || add_exc(m, &st->CodecError, "CodecError", st->PubSubError,
                   PyExc_ValueError, "Encoded data is malformed, truncated "
                   "or too deep.")
        || add_exc(m, &st->ProtocolError, "ProtocolError", st->PubSubError,
                   NULL, "A peer broke the node-to-node protocol.")
        || add_exc(m, &st->PeerLost, "PeerLost", st->PubSubError,
                   PyExc_ConnectionError, "The node is not connected.")
        ? -1 : 0;
}

static PyTypeObject *
add_type(PyObject *m, PyType_Spec *spec, const char *name)
{
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(m, spec,
                                                                NULL);

    if (tp == NULL || PyModule_AddObjectRef(m, name, (PyObject *)tp) < 0)
        return NULL;
    return tp;
}

static int
add_str(PyObject *m, PyObject **slot, const char *name, const char *value)
{
    *slot = PyUnicode_InternFromString(value);
    if (*slot == NULL)
        return -1;
    return PyModule_AddObjectRef(m, name, *slot);
}

static int
core_exec(PyObject *m)
{
    ps_state *st = psg_state(m);
    uint8_t seed[16];

    if (initialised) {
        PyErr_SetString(PyExc_ImportError, "pubsub._core can be loaded "
                        "once per process");
        return -1;
    }
    if (ps_random(seed, sizeof seed) != 0 || ps_node_init() != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    ps_hash_seed(seed);

    if (add_exceptions(m, st) < 0)
        return -1;
    st->Pid = add_type(m, &psg_pid_spec, "Pid");
    st->Mailbox = st->Pid ? add_type(m, &psg_mailbox_spec, "Mailbox") : NULL;
    st->Scope = st->Mailbox ? add_type(m, &psg_scope_spec, "Scope") : NULL;
    if (st->Scope == NULL)
        return -1;
    st->Message = psg_message_type(m);
    if (st->Message == NULL)
        return -1;

    if (add_str(m, &st->str_join, "JOIN", "$join") < 0 ||
        add_str(m, &st->str_leave, "LEAVE", "$leave") < 0 ||
        add_str(m, &st->str_nodeup, "NODEUP", "$nodeup") < 0 ||
        add_str(m, &st->str_nodedown, "NODEDOWN", "$nodedown") < 0)
        return -1;
    st->default_scope = PyObject_CallFunction((PyObject *)st->Scope, "s",
                                              PS_DEFAULT_SCOPE);
    if (st->default_scope == NULL ||
        PyModule_AddObjectRef(m, "default_scope", st->default_scope) < 0 ||
        PyModule_AddIntConstant(m, "MAX_CHANNEL", PS_MAX_CHANNEL) < 0 ||
        PyModule_AddIntConstant(m, "MAX_JOINS", PS_MAX_JOINS) < 0)
        return -1;

    if (PyModule_AddFunctions(m, core_functions) < 0 ||
        PyModule_AddFunctions(m, psg_scope_functions) < 0 ||
        PyModule_AddFunctions(m, psg_codec_methods) < 0 ||
        PyModule_AddFunctions(m, psg_cluster_methods) < 0 ||
        psg_cluster_init(m, st) < 0)
        return -1;
    initialised = 1;
    return 0;
}

#define STATE_OBJECTS(X)                                                  \
    X(Mailbox) X(Pid) X(Message) X(Scope) X(PubSubError) X(Empty)         \
    X(MailboxClosed) X(SlowConsumer) X(Timeout) X(CodecError)             \
    X(ProtocolError) X(PeerLost) X(enc_hook) X(dec_hook)                  \
    X(default_scope) X(str_join) X(str_leave) X(str_nodeup)               \
    X(str_nodedown) X(last_channel) X(last_topic)

static int
core_traverse(PyObject *m, visitproc visit, void *arg)
{
    ps_state *st = psg_state(m);

#define VISIT(f) Py_VISIT(st->f);
    STATE_OBJECTS(VISIT)
#undef VISIT
    for (int i = 0; i < PSG_KEY_CACHE; i++)
        Py_VISIT(st->key_cache[i]);
    return 0;
}

static int
core_clear(PyObject *m)
{
    ps_state *st = psg_state(m);

#define CLEAR(f) Py_CLEAR(st->f);
    STATE_OBJECTS(CLEAR)
#undef CLEAR
    for (int i = 0; i < PSG_KEY_CACHE; i++)
        Py_CLEAR(st->key_cache[i]);
    return 0;
}

static void
core_free(void *m)
{
    psg_cluster_fini();
    psg_message_freelist_clear();
    core_clear((PyObject *)m);
}

static PyModuleDef_Slot core_slots[] = {
    {Py_mod_exec, core_exec},
    {0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pubsub._core",
    .m_doc = "The C core of cpubsub: mailboxes, scopes, the codec and the "
             "cluster.",
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
