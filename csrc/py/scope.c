/*
 * scope.c: the Scope type and the operations every scope offers: join,
 * leave, broadcast, membership queries and monitors.  The module-level
 * functions of the package are the default scope's bound methods.
 *
 * The broadcast path is the hot one: it looks the channel up without a
 * lock (the GIL orders it against every writer), builds one Message and
 * pushes a reference to it into each member's ring.  No Python code runs
 * during the walk over the members: whatever a push gives back (a dropped
 * message, a mailbox closed as a slow consumer) is finished afterwards,
 * so a payload's __del__ that joins or leaves cannot disturb the walk.
 */
#include "glue.h"

#include <stdlib.h>
#include <string.h>

#include "ps_cluster.h"
#include "ps_codec.h"

/* ---- arguments ---- */

/*
 * Sort fastcall arguments into out[] by names (NULL-terminated), the
 * first nreq required.  out[] holds the defaults on entry.  0 or -1 with
 * TypeError.
 */
static int
parse(const char *fname, PyObject *const *args, Py_ssize_t nargs,
      PyObject *kwnames, const char *const *names, int nreq,
      PyObject **out)
{
    int nnames = 0;

    while (names[nnames] != NULL)
        nnames++;
    if (nargs > nnames) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments "
                     "(%zd given)", fname, nnames, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++)
        out[i] = args[i];
    for (Py_ssize_t k = 0; kwnames && k < PyTuple_GET_SIZE(kwnames); k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int i;

        for (i = 0; i < nnames; i++) {
            if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0)
                break;
        }
        if (i == nnames || i < nargs) {
            PyErr_Format(PyExc_TypeError, i == nnames
                         ? "%s() got an unexpected keyword argument %R"
                         : "%s() got multiple values for argument %R",
                         fname, key);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (int i = 0; i < nreq; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required "
                         "argument '%s'", fname, names[i]);
            return -1;
        }
    }
    return 0;
}

int
psg_channel_name(PyObject *obj, const char *what, const char **name,
                 Py_ssize_t *len, PyObject **keep)
{
    *keep = NULL;
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a str, not %.100s",
                     what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    *name = PyUnicode_AsUTF8AndSize(obj, len);
    if (*name == NULL) {
        /* Lone surrogates: still a str, so still a channel name. */
        PyErr_Clear();
        *keep = PyUnicode_AsEncodedString(obj, "utf-8", "surrogatepass");
        if (*keep == NULL)
            return -1;
        *name = PyBytes_AS_STRING(*keep);
        *len = PyBytes_GET_SIZE(*keep);
    }
    if (*len > PS_MAX_CHANNEL) {
        PyErr_Format(PyExc_ValueError, "%s is %zd bytes long in UTF-8; "
                     "the limit is %d bytes", what, *len, PS_MAX_CHANNEL);
        Py_CLEAR(*keep);
        return -1;
    }
    return 0;
}

PyObject *
psg_channel_str(const char *name, size_t len)
{
    return PyUnicode_DecodeUTF8(name, (Py_ssize_t)len, "surrogatepass");
}

MailboxObject *
psg_mailbox_arg(ps_state *st, PyObject *obj, const char *what, int open)
{
    MailboxObject *mb;

    if (!PyObject_TypeCheck(obj, st->Mailbox)) {
        PyErr_Format(PyExc_TypeError, "%s must be a Mailbox, not %.100s",
                     what, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    mb = (MailboxObject *)obj;
    if (open && !mb->registered) {
        PyErr_Format(st->MailboxClosed, "%s is closed", what);
        return NULL;
    }
    return mb;
}

/* ---- join and leave ---- */

PyObject *
psg_scope_join(ScopeObject *sc, PyObject *channel, MailboxObject *mb)
{
    const char *name;
    Py_ssize_t len;
    PyObject *keep;
    ps_fanout f = {0};
    int rc;

    if (psg_channel_name(channel, "channel", &name, &len, &keep) < 0)
        return NULL;
    if (!mb->registered) {
        Py_XDECREF(keep);
        return PyErr_Format(sc->st->MailboxClosed, "mailbox is closed");
    }
    rc = ps_registry_join(sc->reg, name, (size_t)len, &mb->mb, &f);
    Py_XDECREF(keep);
    psg_fanout_finish(&f);
    if (rc != 0)
        return psg_raise(sc->st, rc, "join");
    Py_RETURN_NONE;
}

PyObject *
psg_scope_leave(ScopeObject *sc, PyObject *channel, MailboxObject *mb)
{
    const char *name;
    Py_ssize_t len;
    PyObject *keep;
    ps_fanout f = {0};
    int rc;

    if (psg_channel_name(channel, "channel", &name, &len, &keep) < 0)
        return NULL;
    rc = ps_registry_leave(sc->reg, name, (size_t)len, &mb->mb, &f);
    Py_XDECREF(keep);
    psg_fanout_finish(&f);
    return PyBool_FromLong(rc == 0);
}

static PyObject *
Scope_join(ScopeObject *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    static const char *const names[] = {"channel", "mailbox", NULL};
    PyObject *a[2] = {NULL, NULL};
    MailboxObject *mb;

    if (parse("join", args, nargs, kwnames, names, 2, a) < 0)
        return NULL;
    mb = psg_mailbox_arg(self->st, a[1], "mailbox", 0);
    return mb ? psg_scope_join(self, a[0], mb) : NULL;
}

static PyObject *
Scope_leave(ScopeObject *self, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    static const char *const names[] = {"channel", "mailbox", NULL};
    PyObject *a[2] = {NULL, NULL};
    MailboxObject *mb;

    if (parse("leave", args, nargs, kwnames, names, 2, a) < 0)
        return NULL;
    mb = psg_mailbox_arg(self->st, a[1], "mailbox", 0);
    return mb ? psg_scope_leave(self, a[0], mb) : NULL;
}

/* ---- broadcast and send ---- */

/*
 * The sender argument: None, a Mailbox or a local Pid.  Sets *pid
 * (borrowed, Py_None for none) and *id (0 for none).  0 or -1.
 */
static int
sender_arg(ps_state *st, PyObject *obj, PyObject **pid, uint64_t *id)
{
    if (obj == Py_None) {
        *pid = Py_None;
        *id = 0;
        return 0;
    }
    if (PyObject_TypeCheck(obj, st->Mailbox)) {
        MailboxObject *mb = (MailboxObject *)obj;

        *pid = psg_mailbox_pid(mb);
        *id = mb->mb.id;
        return *pid ? 0 : -1;
    }
    if (Py_TYPE(obj) == st->Pid &&
        ((PidObject *)obj)->node == ps_node_local()) {
        *pid = obj;
        *id = ((PidObject *)obj)->id;
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "sender must be a Mailbox, the Pid of a "
                 "local mailbox, or None; not %.100s", Py_TYPE(obj)->tp_name);
    return -1;
}

static int
topic_arg(PyObject *topic)
{
    if (PyUnicode_Check(topic) || PyBytes_Check(topic))
        return 0;
    PyErr_Format(PyExc_TypeError, "topic must be str or bytes, not %.100s",
                 Py_TYPE(topic)->tp_name);
    return -1;
}

/* The UTF-8 (or raw) bytes of a checked topic.  NULL with an error. */
static const char *
topic_bytes(PyObject *topic, Py_ssize_t *len, int *is_bytes,
            PyObject **keep)
{
    const char *p;

    *keep = NULL;
    *is_bytes = PyBytes_Check(topic);
    if (*is_bytes) {
        *len = PyBytes_GET_SIZE(topic);
        return PyBytes_AS_STRING(topic);
    }
    p = PyUnicode_AsUTF8AndSize(topic, len);
    if (p == NULL) {
        PyErr_Clear();
        *keep = PyUnicode_AsEncodedString(topic, "utf-8", "surrogatepass");
        if (*keep == NULL)
            return NULL;
        *len = PyBytes_GET_SIZE(*keep);
        p = PyBytes_AS_STRING(*keep);
    }
    return p;
}

/* Encode payload for another node, checking the frame limit. */
static int
encode_payload(ps_state *st, PyObject *payload, ps_buf *buf)
{
    size_t max = ps_cluster_max_payload();

    if (psg_encode(st, payload, buf) < 0)
        return -1;
    if (buf->len > max) {
        PyErr_Format(PyExc_ValueError, "payload is %zu bytes when encoded; "
                     "the frame limit allows %zu", buf->len, max);
        return -1;
    }
    return 0;
}

/* Push msg to every local member; what pushes hand back goes into f. */
static void
fan_out(ps_channel *c, PyObject *msg, ps_fanout *f)
{
    ps_member *m = c->members;
    uint32_t n = c->n;

    for (uint32_t i = 0; i < n; i++) {
        ps_mailbox *mb = m[i].mb;
        void *dropped;
        int rc;

        Py_INCREF(msg);
        if (ps_mailbox_push_fast(mb, msg))
            continue;
        /* A full mailbox hands an item back, to be released after the
         * walk (a release may run code): make room for it first.  Without
         * memory this member misses the message, counted as a drop. */
        if (mb->capacity && ps_fanout_reserve(f) != 0) {
            atomic_fetch_add(&mb->dropped, 1);
            Py_DECREF(msg);     /* ours is still held: no code runs */
            continue;
        }
        rc = ps_mailbox_push(mb, msg, &dropped);
        if (rc == PS_ECLOSED || rc == PS_ENOMEM || dropped == (void *)msg)
            Py_DECREF(msg);     /* ours is still held: no code runs */
        else if (dropped != NULL)
            (void)ps_fanout_add_dropped(f, dropped);    /* reserved */
        if (rc == PS_ESLOW)
            (void)ps_fanout_add_slow(f, mb);            /* reserved */
    }
}

/* The local channel named by str obj (name/len its bytes), cached. */
static inline ps_channel *
find_cached(ScopeObject *self, PyObject *obj, const char *name,
            Py_ssize_t len)
{
    ps_channel *c;

    if (obj == self->last_name && self->last_gen == ps_registry_generation)
        return self->last_ch;
    c = ps_registry_find(self->reg, name, (size_t)len);
    /* Only exact str: dropping the old one then runs no code. */
    if (PyUnicode_CheckExact(obj)) {
        self->last_ch = c;
        self->last_gen = ps_registry_generation;
        Py_XSETREF(self->last_name, Py_NewRef(obj));
    }
    return c;
}

/*
 * Make the message of a[] = (channel, topic, payload, _) and push it to
 * c's members.  Allocating may run the collector, and a __del__ may join
 * or leave: the channel is looked up again if the tables moved (name is
 * its UTF-8, or NULL when the caller skipped that on the cached path).
 */
static int
deliver(ScopeObject *self, ps_channel *c, PyObject **a, PyObject *sender,
        const char *name, Py_ssize_t len, ps_fanout *f)
{
    uint64_t gen = ps_registry_generation;
    PyObject *msg = psg_message_new(self->st, a[0], sender, a[1], a[2]);
    PyObject *keep = NULL;

    if (msg == NULL)
        return -1;
    if (gen != ps_registry_generation) {
        if (name == NULL &&
            psg_channel_name(a[0], "channel", &name, &len, &keep) < 0) {
            Py_DECREF(msg);     /* a MemoryError: nothing delivered */
            return -1;
        }
        c = find_cached(self, a[0], name, len);
        Py_XDECREF(keep);
    }
    if (c != NULL)
        fan_out(c, msg, f);
    Py_DECREF(msg);
    return 0;
}


static PyObject *
broadcast(ScopeObject *self, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames, int local_only)
{
    static const char *const names[] = {"channel", "topic", "payload",
                                        "sender", NULL};
    PyObject *a[4] = {NULL, NULL, NULL, Py_None};
    PyObject *keep = NULL, *sender;
    const char *name;
    Py_ssize_t len;
    uint64_t sender_id;
    ps_channel *c;
    ps_node *node;
    ps_buf buf;
    uint8_t bufmem[512];
    ps_fanout f = {0};
    int remote = 0, rc = 0;

    if (nargs == 3 && kwnames == NULL) {
        a[0] = args[0];
        a[1] = args[1];
        a[2] = args[2];
    } else if (parse(local_only ? "local_broadcast" : "broadcast", args,
                     nargs, kwnames, names, 3, a) < 0) {
        return NULL;
    }
    /*
     * The hot path: the same str as last time, tables unchanged, no node
     * running (or a local-only broadcast).  The name was checked when it
     * was cached, so neither it nor its UTF-8 is needed again.
     */
    if (a[0] == self->last_name && self->last_gen == ps_registry_generation
        && (local_only || !ps_cluster_running())) {
        if (topic_arg(a[1]) < 0)
            return NULL;
        if (a[3] == Py_None)
            sender = Py_None;
        else if (sender_arg(self->st, a[3], &sender, &sender_id) < 0)
            return NULL;
        c = self->last_ch;
        if (c != NULL && c->n > 0 &&
            deliver(self, c, a, sender, NULL, 0, &f) < 0)
            return NULL;
        psg_fanout_finish(&f);
        Py_RETURN_NONE;
    }

    if (psg_channel_name(a[0], "channel", &name, &len, &keep) < 0)
        return NULL;
    if (topic_arg(a[1]) < 0 || sender_arg(self->st, a[3], &sender,
                                          &sender_id) < 0)
        goto fail;

    if (!local_only && ps_cluster_running()) {
        ps_registry_lock();
        remote = ps_registry_remote_nodes(self->reg, name, (size_t)len,
                                          &node, 1) > 0;
        ps_registry_unlock();
        ps_buf_init(&buf, bufmem, sizeof bufmem);
        /* Everything that can refuse the message is checked before the
         * first delivery: a broadcast is all or nothing. */
        if (remote && encode_payload(self->st, a[2], &buf) < 0) {
            ps_buf_fini(&buf);
            goto fail;
        }
    }

    c = find_cached(self, a[0], name, len);
    if (c != NULL && c->n > 0 &&
        deliver(self, c, a, sender, name, len, &f) < 0)
        goto fail_remote;

    if (remote) {
        Py_ssize_t tlen;
        int tbytes;
        PyObject *tkeep;
        const char *t = topic_bytes(a[1], &tlen, &tbytes, &tkeep);

        if (t != NULL)
            rc = ps_cluster_broadcast(self->reg, name, (size_t)len,
                                      sender_id, t, (size_t)tlen, tbytes,
                                      buf.data, buf.len);
        Py_XDECREF(tkeep);
        ps_buf_fini(&buf);
        if (t == NULL)
            rc = PS_ENOMEM;
    }
    Py_XDECREF(keep);
    psg_fanout_finish(&f);
    if (rc != 0 && rc != PS_ENOPEER)
        return psg_raise(self->st, rc, "broadcast");
    Py_RETURN_NONE;

fail_remote:
    if (remote)
        ps_buf_fini(&buf);
fail:
    Py_XDECREF(keep);
    return NULL;
}

static PyObject *
Scope_broadcast(ScopeObject *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    return broadcast(self, args, nargs, kwnames, 0);
}

static PyObject *
Scope_local_broadcast(ScopeObject *self, PyObject *const *args,
                      Py_ssize_t nargs, PyObject *kwnames)
{
    return broadcast(self, args, nargs, kwnames, 1);
}

/*
 * send(pid, topic, payload, sender=None) -> bool, a module function:
 * deliver to one mailbox, on this node or another.  True when delivered
 * here or queued for the pid's node; False when the pid is dead here or
 * its node is not connected (the message is dropped, as Erlang's send to
 * a dead pid is).
 */
static PyObject *
module_send(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    static const char *const names[] = {"pid", "topic", "payload",
                                        "sender", NULL};
    ps_state *st = psg_state(module);
    PyObject *a[4] = {NULL, NULL, NULL, Py_None};
    PyObject *sender, *msg, *tkeep;
    PidObject *pid;
    uint64_t sender_id;
    ps_mailbox *mb;
    ps_fanout f = {0};
    ps_buf buf;
    uint8_t bufmem[512];
    const char *t;
    Py_ssize_t tlen;
    int tbytes, rc;

    if (parse("send", args, nargs, kwnames, names, 3, a) < 0)
        return NULL;
    if (Py_TYPE(a[0]) != st->Pid)
        return PyErr_Format(PyExc_TypeError, "pid must be a Pid, not "
                            "%.100s", Py_TYPE(a[0])->tp_name);
    if (topic_arg(a[1]) < 0 ||
        sender_arg(st, a[3], &sender, &sender_id) < 0)
        return NULL;
    pid = (PidObject *)a[0];

    if (pid->node == ps_node_local()) {
        /* The message first: allocating can run code that closes the
         * target, so look it up after. */
        msg = psg_message_new(st, Py_None, sender, a[1], a[2]);
        if (msg == NULL)
            return NULL;
        mb = ps_registry_mailbox(pid->id);
        if (mb == NULL) {
            Py_DECREF(msg);
            Py_RETURN_FALSE;
        }
        fan_out(&(ps_channel){ .members = &(ps_member){ mb, 0 }, .n = 1 },
                msg, &f);
        Py_DECREF(msg);
        psg_fanout_finish(&f);
        Py_RETURN_TRUE;
    }

    if (!ps_cluster_running())
        Py_RETURN_FALSE;
    ps_buf_init(&buf, bufmem, sizeof bufmem);
    if (encode_payload(st, a[2], &buf) < 0) {
        ps_buf_fini(&buf);
        return NULL;
    }
    t = topic_bytes(a[1], &tlen, &tbytes, &tkeep);
    rc = t ? ps_cluster_send(pid->node, pid->id, sender_id, t, (size_t)tlen,
                             tbytes, buf.data, buf.len)
           : PS_ENOMEM;
    Py_XDECREF(tkeep);
    ps_buf_fini(&buf);
    if (t == NULL)
        return NULL;
    if (rc == PS_ENOPEER)
        Py_RETURN_FALSE;
    if (rc != 0)
        return psg_raise(st, rc, "send");
    Py_RETURN_TRUE;
}

PyMethodDef psg_scope_functions[] = {
    {"send", (PyCFunction)(void (*)(void))module_send,
     METH_FASTCALL | METH_KEYWORDS,
     "send(pid, topic, payload, sender=None) -> bool\n\nDeliver "
     "Message(None, sender pid, topic, payload) to one mailbox,\nhere or "
     "on another node. False when the pid is dead or its node\n"
     "unreachable (the message is dropped)."},
    {NULL},
};

/* ---- membership queries ---- */

typedef struct pidvec {
    ps_node **nodes;
    uint64_t *ids;
    size_t n, cap;
} pidvec;

static int
pidvec_add(pidvec *v, ps_node *node, uint64_t id)
{
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 16;
        ps_node **nn = realloc(v->nodes, ncap * sizeof *nn);
        uint64_t *ni;

        if (nn == NULL)
            return -1;
        v->nodes = nn;
        ni = realloc(v->ids, ncap * sizeof *ni);
        if (ni == NULL)
            return -1;
        v->ids = ni;
        v->cap = ncap;
    }
    v->nodes[v->n] = node;
    v->ids[v->n++] = id;
    return 0;
}

/*
 * Collect the members of a channel as (node, id) pairs, one per join:
 * local ones always, remote ones when remote is set.  The remote table is
 * read under the registry lock, and no Python object is made while it is
 * held (an allocation can run the collector, and a __del__ could join).
 */
static int
collect_members(ps_registry *reg, const char *name, size_t len, int remote,
                pidvec *v)
{
    ps_channel *c = ps_registry_find(reg, name, len);
    int rc = 0;

    for (uint32_t i = 0; c != NULL && i < c->n && rc == 0; i++)
        rc = pidvec_add(v, ps_node_local(), c->members[i].mb->id);
    if (!remote || rc != 0)
        return rc;

    ps_registry_lock();
    c = ps_registry_find_remote(reg, name, len);
    for (uint32_t i = 0; c != NULL && i < c->rcap && rc == 0; i++) {
        ps_rmember *e = &c->rmembers[i];

        for (uint32_t k = 0; e->node != NULL && k < e->count && rc == 0;
             k++)
            rc = pidvec_add(v, e->node, e->id);
    }
    ps_registry_unlock();
    return rc;
}

static PyObject *
pidvec_to_list(ps_state *st, pidvec *v)
{
    PyObject *list = PyList_New((Py_ssize_t)v->n);

    for (size_t i = 0; list != NULL && i < v->n; i++) {
        PyObject *pid = psg_pid_new(st, v->nodes[i], v->ids[i]);

        if (pid == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, pid);
    }
    free(v->nodes);
    free(v->ids);
    return list;
}

static PyObject *
members(ScopeObject *self, PyObject *channel, int remote)
{
    const char *name;
    Py_ssize_t len;
    PyObject *keep;
    pidvec v = {0};
    int rc;

    if (psg_channel_name(channel, "channel", &name, &len, &keep) < 0)
        return NULL;
    rc = collect_members(self->reg, name, (size_t)len, remote, &v);
    Py_XDECREF(keep);
    if (rc != 0) {
        free(v.nodes);
        free(v.ids);
        return PyErr_NoMemory();
    }
    return pidvec_to_list(self->st, &v);
}

static PyObject *
Scope_get_members(ScopeObject *self, PyObject *channel)
{
    return members(self, channel, 1);
}

static PyObject *
Scope_get_local_members(ScopeObject *self, PyObject *channel)
{
    return members(self, channel, 0);
}

typedef struct namevec {
    char *buf;
    size_t len, cap;
    size_t count;
} namevec;

/* Append one name as a 4-byte length and its bytes. */
static int
add_name(void *arg, const char *ch, uint32_t len)
{
    namevec *v = arg;

    if (v->len + 4 + len > v->cap) {
        size_t ncap = (v->cap ? v->cap * 2 : 1024) + len + 4;
        char *nb = realloc(v->buf, ncap);

        if (nb == NULL)
            return -1;
        v->buf = nb;
        v->cap = ncap;
    }
    memcpy(v->buf + v->len, &len, 4);
    memcpy(v->buf + v->len + 4, ch, len);
    v->len += 4 + len;
    v->count++;
    return 0;
}

static PyObject *
Scope_which_channels(ScopeObject *self, PyObject *unused)
{
    namevec v = {0};
    PyObject *list = NULL;
    size_t off = 0;
    int rc;

    ps_registry_lock();
    rc = ps_registry_foreach_name(self->reg, add_name, &v);
    ps_registry_unlock();
    if (rc != 0)
        goto out;
    list = PyList_New((Py_ssize_t)v.count);
    for (size_t i = 0; list != NULL && i < v.count; i++) {
        uint32_t len;
        PyObject *s;

        memcpy(&len, v.buf + off, 4);
        s = psg_channel_str(v.buf + off + 4, len);
        off += 4 + len;
        if (s == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, s);
    }
out:
    free(v.buf);
    if (rc != 0)
        return PyErr_NoMemory();
    return list;
}

/* ---- monitors ---- */

/* The (mailbox, channel=None) arguments of monitor and demonitor; the
 * channel's name stays valid while *keep is held.  NULL with an error. */
static MailboxObject *
watch_args(ScopeObject *self, const char *fname, PyObject *const *args,
           Py_ssize_t nargs, PyObject *kwnames, int open, PyObject **chobj,
           const char **name, Py_ssize_t *len, PyObject **keep)
{
    static const char *const names[] = {"mailbox", "channel", NULL};
    PyObject *a[2] = {NULL, Py_None};
    MailboxObject *mb;

    if (parse(fname, args, nargs, kwnames, names, 1, a) < 0)
        return NULL;
    mb = psg_mailbox_arg(self->st, a[0], "mailbox", open);
    if (mb == NULL)
        return NULL;
    *chobj = a[1];
    if (a[1] != Py_None &&
        psg_channel_name(a[1], "channel", name, len, keep) < 0)
        return NULL;
    return mb;
}

static PyObject *
Scope_monitor(ScopeObject *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    PyObject *channel, *keep = NULL;
    const char *name = NULL;
    Py_ssize_t len = 0;
    MailboxObject *mb;
    int rc;

    mb = watch_args(self, "monitor", args, nargs, kwnames, 1, &channel,
                    &name, &len, &keep);
    if (mb == NULL)
        return NULL;
    rc = ps_registry_watch(self->reg, name, (size_t)len, &mb->mb);
    Py_XDECREF(keep);
    if (rc != 0)
        return psg_raise(self->st, rc, "monitor");
    if (channel != Py_None)
        return members(self, channel, 1);
    Py_RETURN_NONE;
}

static PyObject *
Scope_demonitor(ScopeObject *self, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    PyObject *channel, *keep = NULL;
    const char *name = NULL;
    Py_ssize_t len = 0;
    MailboxObject *mb;
    int rc;

    mb = watch_args(self, "demonitor", args, nargs, kwnames, 0, &channel,
                    &name, &len, &keep);
    if (mb == NULL)
        return NULL;
    rc = ps_registry_unwatch(self->reg, name, (size_t)len, &mb->mb);
    Py_XDECREF(keep);
    return PyBool_FromLong(rc == 0);
}

/* ---- the type ---- */

static PyObject *
Scope_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", NULL};
    PyObject *nameobj, *keep;
    const char *name;
    Py_ssize_t len;
    ScopeObject *self;
    ps_state *st = psg_state_of_type(type);

    if (st == NULL ||
        !PyArg_ParseTupleAndKeywords(args, kw, "O:Scope", kwlist, &nameobj))
        return NULL;
    if (psg_channel_name(nameobj, "name", &name, &len, &keep) < 0)
        return NULL;
    self = (ScopeObject *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->st = st;
        self->name = Py_NewRef(nameobj);
        self->reg = ps_registry_scope_acquire(name, (size_t)len);
        if (self->reg == NULL) {
            Py_CLEAR(self);
            PyErr_NoMemory();
        }
    }
    Py_XDECREF(keep);
    return (PyObject *)self;
}

static void
Scope_dealloc(ScopeObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    if (self->reg != NULL)
        ps_registry_scope_release(self->reg);
    Py_CLEAR(self->name);
    Py_CLEAR(self->last_name);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
Scope_richcompare(PyObject *a, PyObject *b, int op)
{
    if (Py_TYPE(a) != Py_TYPE(b) || (op != Py_EQ && op != Py_NE))
        Py_RETURN_NOTIMPLEMENTED;
    if ((((ScopeObject *)a)->reg == ((ScopeObject *)b)->reg) == (op == Py_EQ))
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

static Py_hash_t
Scope_hash(ScopeObject *self)
{
    return PyObject_Hash(self->name);
}

static PyObject *
Scope_repr(ScopeObject *self)
{
    return PyUnicode_FromFormat("Scope(%R)", self->name);
}

static PyObject *
Scope_get_name(ScopeObject *self, void *c)
{
    return Py_NewRef(self->name);
}

#define FAST (METH_FASTCALL | METH_KEYWORDS)
#define CAST(f) (PyCFunction)(void (*)(void))(f)

static PyMethodDef Scope_methods[] = {
    {"join", CAST(Scope_join), FAST,
     "join(channel, mailbox)\n\nAdd one membership; a mailbox may join a "
     "channel several times and\nthen receives each message once per "
     "join."},
    {"leave", CAST(Scope_leave), FAST,
     "leave(channel, mailbox) -> bool\n\nUndo one join; False when the "
     "mailbox is not a member."},
    {"broadcast", CAST(Scope_broadcast), FAST,
     "broadcast(channel, topic, payload, sender=None)\n\nDeliver "
     "Message(channel, sender pid, topic, payload) to every member\non "
     "every node. Returns at once; never waits for consumers.\ntopic is "
     "a str or bytes; sender is a Mailbox, the Pid of a local\nmailbox, "
     "or None."},
    {"local_broadcast", CAST(Scope_local_broadcast), FAST,
     "local_broadcast(channel, topic, payload, sender=None)\n\nAs "
     "broadcast, to the members on this node only."},
    {"get_members", (PyCFunction)Scope_get_members, METH_O,
     "get_members(channel) -> list[Pid]\n\nEvery member on every node, "
     "once per join."},
    {"get_local_members", (PyCFunction)Scope_get_local_members, METH_O,
     "get_local_members(channel) -> list[Pid]\n\nThe members on this "
     "node, once per join."},
    {"which_channels", (PyCFunction)Scope_which_channels, METH_NOARGS,
     "which_channels() -> list[str]\n\nChannels with at least one member "
     "anywhere."},
    {"monitor", CAST(Scope_monitor), FAST,
     "monitor(mailbox, channel=None) -> list[Pid] | None\n\nSend the "
     "mailbox a Message(channel, None, JOIN or LEAVE, pid) for\nevery "
     "join and leave of the channel (or of the whole scope when\nchannel "
     "is None). Returns the channel's current members."},
    {"demonitor", CAST(Scope_demonitor), FAST,
     "demonitor(mailbox, channel=None) -> bool\n\nUndo one monitor."},
    {NULL},
};

static PyGetSetDef Scope_getset[] = {
    {"name", (getter)Scope_get_name, NULL, "The scope's name.", NULL},
    {NULL},
};

static PyType_Slot Scope_slots[] = {
    {Py_tp_doc, "Scope(name)\n\nAn independent membership namespace. "
                "Scopes with the same name\nare the same scope, on this "
                "node and across the cluster."},
    {Py_tp_new, Scope_new},
    {Py_tp_dealloc, Scope_dealloc},
    {Py_tp_richcompare, Scope_richcompare},
    {Py_tp_hash, Scope_hash},
    {Py_tp_repr, Scope_repr},
    {Py_tp_methods, Scope_methods},
    {Py_tp_getset, Scope_getset},
    {0, NULL},
};

PyType_Spec psg_scope_spec = {
    .name = "pubsub.Scope",
    .basicsize = sizeof(ScopeObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Scope_slots,
};
