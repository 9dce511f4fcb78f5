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

#include <string.h>
#include <structmember.h>

#include "ps_common.h"
#include "ps_mailbox.h"
#include "ps_msg.h"
#include "ps_registry.h"

typedef struct ps_buf ps_buf;   /* ps_codec.h */

typedef struct ps_state {
    PyTypeObject *Mailbox;
    PyTypeObject *Pid;
    PyTypeObject *Message;
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
    /* The channel and topic of the last message from another node: the
     * next one usually has the same, and reuses them undecoded. */
    PyObject *last_channel, *last_topic;
    /* Short ASCII dict keys decoded lately, by a hash of their bytes:
     * payloads of one kind repeat their keys (codec.c, dec_key_str). */
#define PSG_KEY_CACHE 256
    PyObject *key_cache[PSG_KEY_CACHE];
} ps_state;

typedef struct MailboxObject {
    PyObject_HEAD
    ps_mailbox mb;
    ps_state *st;
    PyObject *pid;              /* made on first use */
    PyObject *pending_exc;      /* raised by the next receive */
    PyObject *weakrefs;
    uint8_t registered;         /* in the pid table and channels */
} MailboxObject;

typedef struct PidObject {
    PyObject_HEAD
    ps_node *node;
    uint64_t id;
} PidObject;

typedef struct ScopeObject {
    PyObject_HEAD
    ps_registry *reg;
    ps_state *st;
    PyObject *name;
    /* The last channel looked up: valid while the str is the same object
     * and ps_registry_generation has not moved. */
    PyObject *last_name;
    ps_channel *last_ch;
    uint64_t last_gen;
} ScopeObject;

static inline MailboxObject *
psg_mailbox_of(ps_mailbox *mb)
{
    return (MailboxObject *)((char *)mb - offsetof(MailboxObject, mb));
}

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

/* ---- message.c ---- */

/* The Message type, made and added to module.  NULL with an error. */
PyTypeObject *psg_message_type(PyObject *module);
/* A new Message holding new references to the four fields. */
PyObject *psg_message_new(ps_state *st, PyObject *channel, PyObject *sender,
                          PyObject *topic, PyObject *payload);
/* A new Message stealing items[0..3]; NULL items mean an error is set. */
PyObject *psg_message_steal(ps_state *st, PyObject *items[4]);
/* Free the recycled messages (module teardown). */
void psg_message_freelist_clear(void);

/* ---- pid.c ---- */

extern PyType_Spec psg_pid_spec;
/* A new Pid for (node, id), or NULL with an exception. */
PyObject *psg_pid_new(ps_state *st, ps_node *node, uint64_t id);

/* ---- mailbox.c ---- */

extern PyType_Spec psg_mailbox_spec;
/* The mailbox's pid object (borrowed; made on first use) or NULL. */
PyObject *psg_mailbox_pid(MailboxObject *self);
/* Leave everything, close, release the queue.  Idempotent; may run code. */
void psg_mailbox_close(MailboxObject *self);
/* Release what a fan-out left behind (drops, slow mailboxes). */
void psg_fanout_finish(ps_fanout *f);
/* The release function for glue items (a Py_DECREF). */
void psg_release_item(void *item);

/* ---- scope.c ---- */

extern PyType_Spec psg_scope_spec;
/*
 * The UTF-8 bytes of a channel name.  Returns 0 and sets *name, *len
 * (valid while *keep lives; *keep may be NULL), or -1 with TypeError (not
 * a str) or ValueError (too long) naming argument what.
 */
int psg_channel_name(PyObject *obj, const char *what, const char **name,
                     Py_ssize_t *len, PyObject **keep);
/* Module functions defined in scope.c (send). */
extern PyMethodDef psg_scope_functions[];

/* Mailbox.join/leave: the scope's join and leave for one mailbox. */
PyObject *psg_scope_join(ScopeObject *sc, PyObject *channel,
                         MailboxObject *mb);
PyObject *psg_scope_leave(ScopeObject *sc, PyObject *channel,
                          MailboxObject *mb);
/* A str for the UTF-8 bytes of a channel name (surrogates pass). */
PyObject *psg_channel_str(const char *name, size_t len);

/* 1 when s, a cached str holding only ASCII (or NULL), spells the n
 * bytes at p: the decoders then hand out s again instead of a new str. */
static inline int
psg_ascii_is(PyObject *s, const uint8_t *p, size_t n)
{
    return s != NULL && PyUnicode_GET_LENGTH(s) == (Py_ssize_t)n &&
           memcmp(PyUnicode_DATA(s), p, n) == 0;
}

/* obj as a Mailbox, or NULL with TypeError naming it what; with open
 * set, MailboxClosed when it is closed.  (scope.c) */
MailboxObject *psg_mailbox_arg(ps_state *st, PyObject *obj,
                               const char *what, int open);

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
