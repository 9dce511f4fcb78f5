/*
 * mailbox.c: the Mailbox type.  The core mailbox is embedded in the
 * object; the glue keeps the Python side: the pid object, the module
 * state, and the conversion of queued items into Message tuples.
 *
 * Every method runs with the GIL, which is the core mailbox's owner lock.
 * A blocking recv releases the GIL only around poll() on the wake-up
 * descriptor and takes it back before looking at the queue again.
 */
#include "glue.h"

#include <math.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>

static const char *const overflow_names[] = {
    [PS_OVERFLOW_DROP_OLDEST] = "drop_oldest",
    [PS_OVERFLOW_DROP_NEWEST] = "drop_newest",
    [PS_OVERFLOW_CLOSE] = "close",
};

void
psg_release_item(void *item)
{
    Py_DECREF((PyObject *)item);
}

/* Release a queue item of either kind. */
static void
release_any(void *item)
{
    ps_rmsg *m = ps_item_rmsg(item);

    if (m)
        ps_rmsg_decref(m);
    else
        Py_DECREF((PyObject *)item);
}

void
psg_fanout_finish(ps_fanout *f)
{
    /* Keep the slow mailboxes alive across the releases, which may run
     * code that drops the last reference to one of them. */
    for (uint32_t i = 0; i < f->nslow; i++)
        Py_INCREF(psg_mailbox_of(f->slow[i]));
    for (uint32_t i = 0; i < f->ndropped; i++)
        release_any(f->dropped[i]);
    for (uint32_t i = 0; i < f->nslow; i++) {
        MailboxObject *mb = psg_mailbox_of(f->slow[i]);

        psg_mailbox_close(mb);
        Py_DECREF(mb);
    }
    ps_fanout_fini(f);
}

void
psg_mailbox_close(MailboxObject *self)
{
    ps_fanout f = {0};

    if (!self->registered)
        return;
    self->registered = 0;
    ps_registry_remove_mailbox(&self->mb, &f);
    ps_mailbox_close(&self->mb);
    ps_mailbox_drain(&self->mb, psg_release_item);
    psg_fanout_finish(&f);
}

PyObject *
psg_mailbox_pid(MailboxObject *self)
{
    if (self->pid == NULL)
        self->pid = psg_pid_new(self->st, ps_node_local(), self->mb.id);
    return self->pid;
}

/* ---- turning queue items into Python objects ---- */

static PyObject *
event_to_message(ps_state *st, ps_rmsg *m)
{
    PyObject *channel, *topic, *payload;
    int node_event = m->topic_len > 0 && m->topic[0] == 'n';

    if (node_event) {
        channel = Py_NewRef(Py_None);
        topic = Py_NewRef(m->topic[4] == 'u' ? st->str_nodeup
                                             : st->str_nodedown);
        payload = PyUnicode_DecodeUTF8(m->sender_node->name,
                                       m->sender_node->name_len,
                                       "surrogateescape");
    } else {
        channel = psg_channel_str((const char *)m->channel, m->channel_len);
        topic = Py_NewRef(m->topic[0] == 'j' ? st->str_join
                                             : st->str_leave);
        payload = psg_pid_new(st, m->sender_node, m->sender_id);
    }
    return psg_message_steal(st, (PyObject *[4]){
        channel, Py_NewRef(Py_None), topic, payload });
}

/*
 * The str for UTF-8 bytes from another node (decoded with surrogatepass),
 * reusing *last when it spells the same bytes: a stream of messages
 * mostly repeats its channel and topic.  A new reference, NULL with an
 * error.
 */
static PyObject *
remote_str(PyObject **last, const uint8_t *s, uint32_t len)
{
    PyObject *o = *last;

    if (psg_ascii_is(o, s, len))
        return Py_NewRef(o);
    o = PyUnicode_DecodeUTF8((const char *)s, (Py_ssize_t)len,
                             "surrogatepass");
    if (o != NULL && PyUnicode_IS_COMPACT_ASCII(o))
        Py_XSETREF(*last, Py_NewRef(o));
    return o;
}

/* A Message from another node's encoded message; NULL with an error. */
static PyObject *
rmsg_to_message(ps_state *st, ps_rmsg *m)
{
    PyObject *items[4] = {NULL, NULL, NULL, NULL};

    if (m->flags & PS_RMSG_EVENT)
        return event_to_message(st, m);

    if (m->flags & PS_RMSG_DIRECT)
        items[0] = Py_NewRef(Py_None);
    else
        items[0] = remote_str(&st->last_channel, m->channel,
                              m->channel_len);
    items[1] = m->sender_node
        ? psg_pid_new(st, m->sender_node, m->sender_id)
        : Py_NewRef(Py_None);
    if (m->flags & PS_RMSG_TOPIC_BYTES)
        items[2] = PyBytes_FromStringAndSize((const char *)m->topic,
                                             m->topic_len);
    else
        items[2] = remote_str(&st->last_topic, m->topic, m->topic_len);
    if (items[0] && items[1] && items[2])
        items[3] = psg_decode(st, m->payload, m->payload_len);
    return psg_message_steal(st, items);
}

/* Convert a popped item, consuming it.  NULL with an error. */
static PyObject *
item_to_py(MailboxObject *self, void *item)
{
    ps_rmsg *m = ps_item_rmsg(item);
    PyObject *r;

    if (m == NULL)
        return (PyObject *)item;
    r = rmsg_to_message(self->st, m);
    ps_rmsg_decref(m);
    return r;
}

/*
 * The next message, NULL with no exception when empty, NULL with an
 * exception when the mailbox is closed or a message cannot be decoded
 * (that message is consumed: it can never be delivered).
 */
static PyObject *
take(MailboxObject *self)
{
    void *item;

    if (self->pending_exc != NULL) {
        PyObject *exc = self->pending_exc;

        self->pending_exc = NULL;
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
        return NULL;
    }
    /* Closed as a slow consumer by the I/O thread, which may not touch
     * the owner's ring: close it here, dropping what waits, so that a
     * remote overflow ends the same way as a local one. */
    if (atomic_load(&self->mb.state) == PS_MB_SLOW)
        psg_mailbox_close(self);
    item = ps_mailbox_pop(&self->mb);

    if (item != NULL)
        return item_to_py(self, item);

    switch (atomic_load(&self->mb.state)) {
    case PS_MB_SLOW:
        psg_mailbox_close(self);
        /* fall through */
    case PS_MB_CLOSED:
        if (self->mb.policy == PS_OVERFLOW_CLOSE &&
            atomic_load(&self->mb.dropped) > 0)
            PyErr_SetString(self->st->SlowConsumer,
                            "mailbox was closed as a slow consumer: it "
                            "reached its capacity");
        else
            PyErr_SetString(self->st->MailboxClosed, "mailbox is closed");
    }
    return NULL;
}

/* ---- construction and destruction ---- */

static int
parse_capacity(PyObject *obj, uint32_t *out)
{
    long long v;

    if (obj == Py_None) {
        *out = 0;
        return 0;
    }
    if (!PyLong_Check(obj) || PyBool_Check(obj)) {
        PyErr_Format(PyExc_TypeError,
                     "capacity must be a positive int or None, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred())
        PyErr_Clear();
    if (v < 1 || v > UINT32_MAX - 1 || (v == -1)) {
        PyErr_Format(PyExc_ValueError,
                     "capacity must be between 1 and %u, or None for "
                     "unbounded; got %R", UINT32_MAX - 1, obj);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int
parse_overflow(PyObject *obj, ps_overflow *out)
{
    for (int i = 0; i < 3; i++) {
        if (PyUnicode_Check(obj) &&
            PyUnicode_CompareWithASCIIString(obj, overflow_names[i]) == 0) {
            *out = (ps_overflow)i;
            return 0;
        }
    }
    PyErr_Format(PyExc_ValueError,
                 "overflow must be 'drop_oldest', 'drop_newest' or "
                 "'close', not %R", obj);
    return -1;
}

static PyObject *
Mailbox_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"capacity", "overflow", NULL};
    PyObject *capobj = Py_None, *ovobj = NULL;
    uint32_t capacity;
    ps_overflow policy = PS_OVERFLOW_DROP_OLDEST;
    MailboxObject *self;
    ps_state *st = psg_state_of_type(type);

    if (st == NULL)
        return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO:Mailbox", kwlist,
                                     &capobj, &ovobj))
        return NULL;
    if (parse_capacity(capobj, &capacity) < 0)
        return NULL;
    if (ovobj != NULL && parse_overflow(ovobj, &policy) < 0)
        return NULL;

    self = (MailboxObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    ps_mailbox_init(&self->mb, capacity, policy);
    self->st = st;
    if (ps_registry_add_mailbox(&self->mb) != 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    self->registered = 1;
    return (PyObject *)self;
}

static int
Mailbox_traverse(MailboxObject *self, visitproc visit, void *arg)
{
    uint32_t len = atomic_load_explicit(&self->mb.len,
                                        memory_order_relaxed);

    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->pid);
    Py_VISIT(self->pending_exc);
    for (uint32_t i = 0; i < len; i++) {
        void *item = self->mb.ring[(self->mb.head + i) & self->mb.ring_mask];

        if (!ps_item_rmsg(item))
            Py_VISIT((PyObject *)item);
    }
    return 0;
}

static int
Mailbox_clear(MailboxObject *self)
{
    psg_mailbox_close(self);
    Py_CLEAR(self->pid);
    Py_CLEAR(self->pending_exc);
    return 0;
}

static void
Mailbox_dealloc(MailboxObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    if (self->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)self);
    psg_mailbox_close(self);
    ps_mailbox_fini(&self->mb, psg_release_item);
    Py_CLEAR(self->pid);
    Py_CLEAR(self->pending_exc);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* ---- receiving ---- */

static PyObject *
Mailbox_recv_nowait(MailboxObject *self, PyObject *unused)
{
    PyObject *r = take(self);

    if (r != NULL || PyErr_Occurred())
        return r;
    /* A consumer with a descriptor (selector, asyncio) relies on it
     * becoming readable once something arrives after this. */
    if (atomic_load_explicit(&self->mb.wakefd, memory_order_relaxed) >= 0
        && ps_mailbox_prepare_wait(&self->mb) == 0) {
        r = take(self);
        if (r != NULL || PyErr_Occurred())
            return r;
    }
    PyErr_SetString(self->st->Empty, "mailbox is empty");
    return NULL;
}

/* Timeouts from this many seconds on (about 31 years) wait forever. */
#define MAX_TIMEOUT 1e9

/* Wait on the descriptor for up to ms (-1: forever) without the GIL.
 * 0 woke or timed out (caller looks again), -1 with an exception.  The
 * wake-up's count is left on the descriptor: the next prepare_wait
 * consumes it, so the read() is not paid between the wake-up and the
 * message it announced. */
static int
wait_fd(MailboxObject *self, int ms)
{
    struct pollfd pfd = { .fd = atomic_load(&self->mb.wakefd),
                          .events = POLLIN };
    int rc;

    Py_BEGIN_ALLOW_THREADS
    rc = poll(&pfd, 1, ms);
    Py_END_ALLOW_THREADS

    if (rc < 0) {
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        return PyErr_CheckSignals();
    }
    return 0;
}

static PyObject *
Mailbox_recv(MailboxObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *tobj = Py_None, *r;
    double timeout = -1;
    uint64_t deadline = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:recv", kwlist, &tobj))
        return NULL;
    if (tobj != Py_None) {
        timeout = PyFloat_AsDouble(tobj);
        if (timeout == -1 && PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError, "timeout must be a number "
                             "or None, not %.100s", Py_TYPE(tobj)->tp_name);
                return NULL;
            }
            if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                return NULL;
            /* An int past any float: as good as forever if positive. */
            PyErr_Clear();
            timeout = PyObject_RichCompareBool(tobj, Py_False, Py_GT) == 1
                      ? HUGE_VAL : -1;
            if (PyErr_Occurred())
                return NULL;
        }
        if (timeout < 0 || timeout != timeout) {
            PyErr_Format(PyExc_ValueError,
                         "timeout must be a non-negative number or None, "
                         "not %R", tobj);
            return NULL;
        }
        /* Past what the clock counts (inf included) means forever; the
         * cast below would overflow. */
        if (timeout >= MAX_TIMEOUT)
            timeout = -1;
        else
            deadline = ps_now_ns() + (uint64_t)(timeout * 1e9);
    }

    for (;;) {
        int ms = -1, rc;

        r = take(self);
        if (r != NULL || PyErr_Occurred())
            return r;
        if (timeout >= 0) {
            uint64_t now = ps_now_ns();

            if (now >= deadline)
                break;
            ms = (deadline - now) / 1000000 >= INT_MAX
                ? INT_MAX : (int)((deadline - now + 999999) / 1000000);
        }
        rc = ps_mailbox_prepare_wait(&self->mb);
        if (rc < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (rc == 0)
            continue;
        if (wait_fd(self, ms) < 0)
            return NULL;
    }
    PyErr_Format(self->st->Timeout, "no message within %R seconds", tobj);
    return NULL;
}

/* Keep the current exception to raise at the next receive. */
static void
stash_error(MailboxObject *self)
{
    PyObject *type, *value, *tb;

    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    Py_XSETREF(self->pending_exc, value);
}

static PyObject *
Mailbox_recv_many(MailboxObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"max", NULL};
    Py_ssize_t max = PY_SSIZE_T_MAX;
    PyObject *maxobj = Py_None, *list, *r;
    int gc_was_on;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:recv_many", kwlist,
                                     &maxobj))
        return NULL;
    if (maxobj != Py_None) {
        if (!PyIndex_Check(maxobj)) {
            PyErr_Format(PyExc_TypeError, "max must be a positive int or "
                         "None, not %.100s", Py_TYPE(maxobj)->tp_name);
            return NULL;
        }
        max = PyNumber_AsSsize_t(maxobj, NULL);
        if (max == -1 && PyErr_Occurred())
            return NULL;
        if (max < 1) {
            PyErr_Format(PyExc_ValueError,
                         "max must be a positive int or None, not %R",
                         maxobj);
            return NULL;
        }
    }

    list = PyList_New(0);
    if (list == NULL)
        return NULL;
    /* Everything a batch makes (Messages, decoded dicts and lists) stays
     * alive until the call returns.  With the collector on, every 700
     * allocations start a collection, and the batch soon outgrows the
     * long-lived objects, so full collections come every few thousand
     * messages and each walks the whole batch again: a third of a
     * remote receiver's time went there.  Paused for the batch, the
     * first allocation after it pays one young-generation pass. */
    gc_was_on = PyGC_Disable();
    while (PyList_GET_SIZE(list) < max) {
        r = take(self);
        if (r == NULL) {
            if (!PyErr_Occurred())
                break;
            if (PyList_GET_SIZE(list) == 0) {
                Py_CLEAR(list);
                break;
            }
            /* Deliver what we have; the error is raised by the next
             * receive, so no message and no error goes unseen. */
            if (PyErr_ExceptionMatches(self->st->MailboxClosed))
                PyErr_Clear();
            else
                stash_error(self);
            break;
        }
        if (PyList_Append(list, r) < 0) {
            Py_DECREF(r);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(r);
    }
    if (gc_was_on)
        PyGC_Enable();
    if (list == NULL)
        return NULL;
    if (PyList_GET_SIZE(list) == 0 &&
        atomic_load_explicit(&self->mb.wakefd, memory_order_relaxed) >= 0)
        (void)ps_mailbox_prepare_wait(&self->mb);
    return list;
}

/* ---- the rest of the interface ---- */

static PyObject *
Mailbox_fileno(MailboxObject *self, PyObject *unused)
{
    int fd = ps_mailbox_fileno(&self->mb);

    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(fd);
}

static PyObject *
Mailbox_prepare_wait(MailboxObject *self, PyObject *unused)
{
    int rc;

    if (self->pending_exc != NULL)
        Py_RETURN_FALSE;
    rc = ps_mailbox_prepare_wait(&self->mb);
    if (rc < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyBool_FromLong(rc);
}

static PyObject *
Mailbox_clear_wake(MailboxObject *self, PyObject *unused)
{
    ps_mailbox_clear_wake(&self->mb);
    Py_RETURN_NONE;
}

static PyObject *
Mailbox_close(MailboxObject *self, PyObject *unused)
{
    psg_mailbox_close(self);
    Py_RETURN_NONE;
}

static PyObject *
Mailbox_enter(MailboxObject *self, PyObject *unused)
{
    return Py_NewRef(self);
}

static PyObject *
Mailbox_exit(MailboxObject *self, PyObject *args)
{
    psg_mailbox_close(self);
    Py_RETURN_FALSE;
}

/* The scope argument of join/leave: None for the default scope. */
static ScopeObject *
scope_arg(MailboxObject *self, PyObject *scope)
{
    if (scope == NULL || scope == Py_None)
        return (ScopeObject *)self->st->default_scope;
    if (!PyObject_TypeCheck(scope, self->st->Scope)) {
        PyErr_Format(PyExc_TypeError, "scope must be a Scope or None, "
                     "not %.100s", Py_TYPE(scope)->tp_name);
        return NULL;
    }
    return (ScopeObject *)scope;
}

static PyObject *
Mailbox_join(MailboxObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"channel", "scope", NULL};
    PyObject *channel, *scope = NULL;
    ScopeObject *sc;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:join", kwlist,
                                     &channel, &scope))
        return NULL;
    sc = scope_arg(self, scope);
    return sc ? psg_scope_join(sc, channel, self) : NULL;
}

static PyObject *
Mailbox_leave(MailboxObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"channel", "scope", NULL};
    PyObject *channel, *scope = NULL;
    ScopeObject *sc;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:leave", kwlist,
                                     &channel, &scope))
        return NULL;
    sc = scope_arg(self, scope);
    return sc ? psg_scope_leave(sc, channel, self) : NULL;
}

static Py_ssize_t
Mailbox_len(MailboxObject *self)
{
    return (Py_ssize_t)ps_mailbox_len(&self->mb) +
           (self->pending_exc != NULL);
}

static PyObject *
Mailbox_repr(MailboxObject *self)
{
    PyObject *pid = psg_mailbox_pid(self);

    if (pid == NULL)
        return NULL;
    return PyUnicode_FromFormat("<%s %R%s queued=%zd>",
                                Py_TYPE(self)->tp_name, pid,
                                self->registered ? "" : " closed",
                                Mailbox_len(self));
}

static PyObject *
Mailbox_get_pid(MailboxObject *self, void *c)
{
    return Py_XNewRef(psg_mailbox_pid(self));
}

static PyObject *
Mailbox_get_closed(MailboxObject *self, void *c)
{
    return PyBool_FromLong(atomic_load(&self->mb.state) != PS_MB_OPEN);
}

static PyObject *
Mailbox_get_dropped(MailboxObject *self, void *c)
{
    return PyLong_FromUnsignedLongLong(atomic_load(&self->mb.dropped));
}

static PyObject *
Mailbox_get_capacity(MailboxObject *self, void *c)
{
    if (self->mb.capacity == 0)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(self->mb.capacity);
}

static PyObject *
Mailbox_get_overflow(MailboxObject *self, void *c)
{
    return PyUnicode_FromString(overflow_names[self->mb.policy]);
}

static PyMethodDef Mailbox_methods[] = {
    {"recv", (PyCFunction)(void (*)(void))Mailbox_recv,
     METH_VARARGS | METH_KEYWORDS,
     "recv(timeout=None) -> Message\n\nWait for the next message. Raises "
     "Timeout when none came in time,\nMailboxClosed (SlowConsumer) once "
     "the mailbox is closed."},
    {"recv_nowait", (PyCFunction)Mailbox_recv_nowait, METH_NOARGS,
     "recv_nowait() -> Message\n\nThe next message, or raise Empty."},
    {"recv_many", (PyCFunction)(void (*)(void))Mailbox_recv_many,
     METH_VARARGS | METH_KEYWORDS,
     "recv_many(max=None) -> list[Message]\n\nEvery queued message (at "
     "most max), oldest first, without waiting;\nan empty list when none. "
     "To drain a long backlog, a max of a few\nhundred is faster than "
     "None: the batch stays in the caches and\nthe cyclic GC never has "
     "a large batch to walk."},
    {"fileno", (PyCFunction)Mailbox_fileno, METH_NOARGS,
     "fileno() -> int\n\nA descriptor that becomes readable when a message "
     "arrives after a\nreceive found the mailbox empty.  It may stay "
     "readable after that\nmessage is taken: treat readiness as a hint and "
     "receive with\nrecv_nowait() or recv_many()."},
    {"_prepare_wait", (PyCFunction)Mailbox_prepare_wait, METH_NOARGS,
     "Arm the descriptor; True when it is safe to wait on it."},
    {"_clear_wake", (PyCFunction)Mailbox_clear_wake, METH_NOARGS,
     "Consume a wake-up of the descriptor."},
    {"close", (PyCFunction)Mailbox_close, METH_NOARGS,
     "close()\n\nLeave every channel and drop queued messages. "
     "Idempotent."},
    {"join", (PyCFunction)(void (*)(void))Mailbox_join,
     METH_VARARGS | METH_KEYWORDS,
     "join(channel, scope=None)\n\nJoin a channel (once more)."},
    {"leave", (PyCFunction)(void (*)(void))Mailbox_leave,
     METH_VARARGS | METH_KEYWORDS,
     "leave(channel, scope=None) -> bool\n\nUndo one join; False when "
     "not a member."},
    {"__enter__", (PyCFunction)Mailbox_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Mailbox_exit, METH_VARARGS, NULL},
    {NULL},
};

static PyGetSetDef Mailbox_getset[] = {
    {"pid", (getter)Mailbox_get_pid, NULL, "This mailbox's Pid.", NULL},
    {"closed", (getter)Mailbox_get_closed, NULL,
     "True once closed (by close(), or as a slow consumer).", NULL},
    {"dropped", (getter)Mailbox_get_dropped, NULL,
     "Messages dropped because the mailbox was full.", NULL},
    {"capacity", (getter)Mailbox_get_capacity, NULL,
     "The bound, or None when unbounded.", NULL},
    {"overflow", (getter)Mailbox_get_overflow, NULL,
     "What happens when full: 'drop_oldest', 'drop_newest' or 'close'.",
     NULL},
    {NULL},
};

static PyMemberDef Mailbox_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(MailboxObject, weakrefs),
     READONLY},
    {NULL},
};

static PyType_Slot Mailbox_slots[] = {
    {Py_tp_doc, "Mailbox(capacity=None, overflow='drop_oldest')\n\n"
                "A FIFO of Messages with a cluster-wide Pid."},
    {Py_tp_new, Mailbox_new},
    {Py_tp_dealloc, Mailbox_dealloc},
    {Py_tp_traverse, Mailbox_traverse},
    {Py_tp_clear, Mailbox_clear},
    {Py_tp_repr, Mailbox_repr},
    {Py_tp_methods, Mailbox_methods},
    {Py_tp_getset, Mailbox_getset},
    {Py_tp_members, Mailbox_members},
    {Py_sq_length, Mailbox_len},
    {0, NULL},
};

PyType_Spec psg_mailbox_spec = {
    .name = "pubsub._core.Mailbox",
    .basicsize = sizeof(MailboxObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Mailbox_slots,
};
