/*
 * glue.h: what the files of the CPython extension share: the module
 * state and the functions one file offers the others.  This directory is
 * the only place that includes Python.h; the core below it knows nothing
 * of Python.
 */
#ifndef PS_GLUE_H
#define PS_GLUE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "ps_common.h"

typedef struct ps_buf ps_buf;   /* ps_codec.h */

typedef struct ps_state {
    PyTypeObject *Mailbox;
    PyTypeObject *Pid;
    PyTypeObject *Message;      /* a PyStructSequence type */
    PyTypeObject *Scope;
    PyObject *PubSubError;
    PyObject *Empty;
    PyObject *MailboxClosed;
    PyObject *SlowConsumer;
    PyObject *Timeout;
    PyObject *CodecError;
    PyObject *ProtocolError;
    PyObject *PeerLost;
    PyObject *enc_hook;         /* app encoder for other types, or NULL */
    PyObject *dec_hook;         /* app decoder for them, or NULL */
    PyObject *default_scope;
    PyObject *str_join, *str_leave, *str_nodeup, *str_nodedown;
} ps_state;

/* The state of the module that defined type's module (heap types only). */
ps_state *psg_state_of_type(PyTypeObject *type);
/* The state from a module object. */
static inline ps_state *
psg_state(PyObject *module)
{
    return (ps_state *)PyModule_GetState(module);
}

/*
 * Raise the Python exception for a core error code, naming what (the
 * argument or operation) when not NULL.  Always returns NULL.
 */
PyObject *psg_raise(ps_state *st, int code, const char *what);

/* ---- codec.c ---- */

/*
 * Append obj's encoding to out.  Returns 0, or -1 with TypeError (a type
 * that cannot be encoded and no encoder hook), ValueError (nested too
 * deeply, too large) or the hook's own exception set.
 */
int psg_encode(ps_state *st, PyObject *obj, ps_buf *out);

/*
 * Decode exactly len bytes into a new reference, or NULL with CodecError
 * (malformed, truncated, trailing bytes, too deep) or the hook's exception
 * set.
 */
PyObject *psg_decode(ps_state *st, const uint8_t *data, size_t len);

/* encode(obj) -> bytes, decode(bytes) -> obj, set_codec_hooks(...). */
extern PyMethodDef psg_codec_methods[];

/* ---- cluster.c ---- */

/* start_node, stop_node, nodes, node_name, connect, monitor_nodes, ... */
extern PyMethodDef psg_cluster_methods[];

/* Called by module exec/free: set up and tear down cluster glue state. */
int psg_cluster_init(PyObject *module, ps_state *st);
void psg_cluster_fini(void);

#endif
