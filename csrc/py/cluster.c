/*
 * cluster.c: the Python face of the cluster transport (ps_cluster.h).
 *
 * The functions here are thin: argument checks, a call into the core,
 * results as Python objects.  pubsub/cluster.py adds the friendly
 * start_node() (environment variables, "host:port" strings) on top of
 * _start_node() below.
 *
 * Logging without the GIL: the core's log hook runs on the I/O thread,
 * which must never wait for the GIL.  It copies each record into a
 * bounded ring under a plain mutex and, when the ring was empty, writes a
 * byte to a pipe.  A daemon thread in pubsub/cluster.py blocks on that
 * pipe and calls _cluster_log_drain(), which hands the records to Python
 * for the "pubsub.cluster" logger.  A full ring drops records and counts
 * them (the next drain reports how many).
 */
#include "glue.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "ps_cluster.h"
#include "ps_wire.h"

/* ---- the log ring ---- */

#define LOG_RING 256

typedef struct logrec {
    int level;
    char id[32];
    char msg[600];
} logrec;

static struct {
    pthread_mutex_t mu;
    logrec *ring;               /* LOG_RING records, made at init */
    uint32_t head, len;
    uint64_t lost;
    int rfd, wfd;               /* the wake-up pipe; -1 until init */
} logq = { PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0, -1, -1 };

/* The core's log hook.  Any thread; never takes the GIL. */
static void
log_hook(void *arg, int level, const char *id, const char *msg)
{
    int wake = 0;

    pthread_mutex_lock(&logq.mu);
    if (logq.ring == NULL || logq.len == LOG_RING) {
        logq.lost++;
    } else {
        logrec *r = &logq.ring[(logq.head + logq.len) % LOG_RING];

        r->level = level;
        snprintf(r->id, sizeof r->id, "%s", id);
        snprintf(r->msg, sizeof r->msg, "%s", msg);
        wake = logq.len++ == 0;
    }
    pthread_mutex_unlock(&logq.mu);
    if (wake && logq.wfd >= 0 && write(logq.wfd, "", 1) < 0) {
        /* EAGAIN: the pipe already holds a wake-up */
    }
}

/* Make the ring and the pipe, once per process. */
static int
log_init(void)
{
    int fds[2];

    if (logq.rfd >= 0)
        return 0;
    logq.ring = PyMem_RawCalloc(LOG_RING, sizeof *logq.ring);
    if (logq.ring == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (pipe2(fds, O_CLOEXEC) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    logq.rfd = fds[0];
    logq.wfd = fds[1];
    return 0;
}

/* _cluster_log_fd() -> int: readable when records wait. */
static PyObject *
cluster_log_fd(PyObject *module, PyObject *unused)
{
    return PyLong_FromLong(logq.rfd);
}

/* Take the waiting records into a C array (short critical section). */
static uint32_t
log_take(logrec *out, uint64_t *lost)
{
    uint32_t n;

    pthread_mutex_lock(&logq.mu);
    n = logq.len;
    for (uint32_t i = 0; i < n; i++)
        out[i] = logq.ring[(logq.head + i) % LOG_RING];
    logq.head = (logq.head + n) % LOG_RING;
    logq.len = 0;
    *lost = logq.lost;
    logq.lost = 0;
    pthread_mutex_unlock(&logq.mu);
    return n;
}

/*
 * _cluster_log_drain() -> list[tuple[int, str, str]]: the records
 * waiting, oldest first, as (level, id, message).  Records the ring had
 * to drop are reported as one LOG-LOST record.
 */
/*
 * A record's text as str.  It may quote what a peer sent (a refusal's
 * reason): control characters become '?' so that none can start a log
 * line of its own, and bytes past ASCII are escaped, so no byte can make
 * the record undecodable and lose it.
 */
static PyObject *
log_text(const char *msg)
{
    char buf[sizeof ((logrec *)0)->msg];
    size_t n = strlen(msg);

    if (n >= sizeof buf)
        n = sizeof buf - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)msg[i];

        buf[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    return PyUnicode_DecodeASCII(buf, (Py_ssize_t)n, "backslashreplace");
}

static PyObject *
cluster_log_drain(PyObject *module, PyObject *unused)
{
    logrec *recs = PyMem_Malloc(LOG_RING * sizeof *recs);
    PyObject *list;
    uint64_t lost;
    uint32_t n;

    if (recs == NULL)
        return PyErr_NoMemory();
    n = log_take(recs, &lost);
    list = PyList_New(0);
    for (uint32_t i = 0; list != NULL && i < n; i++) {
        PyObject *t = Py_BuildValue("(isN)", recs[i].level, recs[i].id,
                                    log_text(recs[i].msg));

        if (t == NULL || PyList_Append(list, t) < 0)
            Py_CLEAR(list);
        Py_XDECREF(t);
    }
    PyMem_Free(recs);
    if (list != NULL && lost > 0) {
        PyObject *t = Py_BuildValue("(isN)", PS_LOG_WARNING, "LOG-LOST",
                                    PyUnicode_FromFormat(
                                        "%llu log records were dropped",
                                        (unsigned long long)lost));

        if (t == NULL || PyList_Append(list, t) < 0)
            Py_CLEAR(list);
        Py_XDECREF(t);
    }
    return list;
}

/* ---- start and stop ---- */

/* Fill seeds from a sequence of (host, port).  -1 with an error set. */
static int
parse_seeds(PyObject *seq, ps_cluster_addr **out, size_t *n)
{
    PyObject *fast = PySequence_Fast(seq, "seeds must be a sequence");
    Py_ssize_t len;

    *out = NULL;
    *n = 0;
    if (fast == NULL)
        return -1;
    len = PySequence_Fast_GET_SIZE(fast);
    *out = PyMem_Calloc(len ? (size_t)len : 1, sizeof **out);
    if (*out == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        const char *host;
        Py_ssize_t hlen;
        int port;

        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i),
                              "s#i;seeds must hold (host, port) pairs",
                              &host, &hlen, &port))
            goto fail;
        if (hlen >= PS_CLUSTER_HOSTLEN || port <= 0 || port > 65535) {
            PyErr_Format(PyExc_ValueError, "bad seed address %s:%d",
                         host, port);
            goto fail;
        }
        memcpy((*out)[i].host, host, (size_t)hlen + 1);
        (*out)[i].port = (uint16_t)port;
    }
    *n = (size_t)len;
    Py_DECREF(fast);
    return 0;

fail:
    Py_DECREF(fast);
    PyMem_Free(*out);
    *out = NULL;
    return -1;
}

/* Raise for a failed start. */
static PyObject *
start_error(ps_state *st, int rc, const char *host, int port)
{
    if (rc == PS_ESYS)
        return PyErr_Format(PyExc_OSError, "cannot listen on %s:%d: %s",
                            host, port, strerror(errno));
    if (rc == PS_EBUSY)
        return PyErr_Format(st->PubSubError, "a node is already running; "
                            "stop_node() first");
    if (rc == PS_EINVAL)
        return PyErr_Format(PyExc_ValueError, "bad cluster setting or "
                            "unresolvable address (listen %s:%d)", host,
                            port);
    return psg_raise(st, rc, "start_node");
}

/*
 * _start_node(name, host, port, cookie, seeds, heartbeat, timeout,
 *             max_frame, max_queue) -> None
 * The checked form pubsub.cluster.start_node calls.  ValueError on a bad
 * setting, OSError when the address cannot be bound, PubSubError when a
 * node already runs.
 */
static PyObject *
cluster_start(PyObject *module, PyObject *args, PyObject *kw)
{
    static char *names[] = {"name", "host", "port", "cookie", "seeds",
                            "heartbeat", "timeout", "max_frame",
                            "max_queue", NULL};
    ps_state *st = psg_state(module);
    ps_cluster_config cfg = { 0 };
    Py_ssize_t nlen, clen;
    const char *name, *host, *cookie;
    PyObject *seeds;
    ps_cluster_addr *sv;
    double hb, to;
    int port, rc;
    unsigned long long mf, mq;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "s#siy#OddKK:_start_node",
                                     names, &name, &nlen, &host, &port,
                                     &cookie, &clen, &seeds, &hb, &to,
                                     &mf, &mq))
        return NULL;
    if (nlen == 0 || nlen > PS_MAX_NODENAME || port < 0 || port > 65535 ||
        clen == 0 || !(hb > 0) || !(to > hb) || mf < PS_WIRE_MIN_FRAME ||
        mf > (1u << 30) || mq == 0)
        return PyErr_Format(PyExc_ValueError, "bad cluster setting: name "
                            "1..%d bytes, port 0..65535, a non-empty "
                            "cookie, 0 < heartbeat < timeout, max_frame "
                            "%d..%d, max_queue > 0", PS_MAX_NODENAME,
                            PS_WIRE_MIN_FRAME, 1 << 30);
    if (parse_seeds(seeds, &sv, &cfg.nseeds) < 0)
        return NULL;
    if (log_init() < 0) {
        PyMem_Free(sv);
        return NULL;
    }
    cfg.name = name;
    cfg.name_len = (size_t)nlen;
    cfg.host = host;
    cfg.port = (uint16_t)port;
    cfg.cookie = (const uint8_t *)cookie;
    cfg.cookie_len = (size_t)clen;
    cfg.seeds = sv;
    cfg.heartbeat_ns = (uint64_t)(hb * 1e9);
    cfg.timeout_ns = (uint64_t)(to * 1e9);
    cfg.max_frame = (uint32_t)mf;
    cfg.max_queue = (size_t)mq;
    cfg.log = log_hook;

    /* Resolving names may block: let other threads run. */
    Py_BEGIN_ALLOW_THREADS
    rc = ps_cluster_start(&cfg);
    Py_END_ALLOW_THREADS
    PyMem_Free(sv);
    if (rc != 0)
        return start_error(st, rc, host, port);
    Py_RETURN_NONE;
}

/* stop_node() -> None: stop the node; a no-op when none runs. */
static PyObject *
cluster_stop(PyObject *module, PyObject *unused)
{
    /* The I/O thread never needs the GIL, so waiting for it without
     * the GIL cannot deadlock; holding it could stall other threads. */
    Py_BEGIN_ALLOW_THREADS
    ps_cluster_stop();
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* ---- queries ---- */

/* node_name() -> str | None: this node's name while it runs. */
static PyObject *
cluster_node_name(PyObject *module, PyObject *unused)
{
    ps_node *me = ps_node_local();

    if (!ps_cluster_running())
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(me->name, me->name_len, "surrogateescape");
}

/* listen_address() -> (host, port) | None. */
static PyObject *
cluster_listen_address(PyObject *module, PyObject *unused)
{
    ps_cluster_addr a;

    if (ps_cluster_listen_address(&a) != 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(si)", a.host, (int)a.port);
}

/* nodes() -> list[str]: the nodes with an established link. */
static PyObject *
cluster_nodes(PyObject *module, PyObject *unused)
{
    ps_node *buf[64], **v = buf;
    size_t n = ps_cluster_nodes(buf, 64);
    PyObject *list;

    /* No Python object is made under the registry lock (allocating
     * could run a finalizer that needs it): copy the pointers out. */
    if (n > 64) {
        v = PyMem_Malloc(n * sizeof *v);
        if (v == NULL)
            return PyErr_NoMemory();
        size_t again = ps_cluster_nodes(v, n);

        if (again < n)
            n = again;
    }
    list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        PyObject *s = PyUnicode_DecodeUTF8(v[i]->name, v[i]->name_len,
                                           "surrogateescape");

        if (s == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, s);
    }
    if (v != buf)
        PyMem_Free(v);
    return list;
}

/* _connect(host, port) -> None: dial and keep redialling, like a seed. */
static PyObject *
cluster_connect(PyObject *module, PyObject *args)
{
    ps_state *st = psg_state(module);
    const char *host;
    int port, rc;

    if (!PyArg_ParseTuple(args, "si:connect", &host, &port))
        return NULL;
    if (port <= 0 || port > 65535)
        return PyErr_Format(PyExc_ValueError, "bad port %d", port);
    Py_BEGIN_ALLOW_THREADS
    rc = ps_cluster_connect(host, (uint16_t)port);
    Py_END_ALLOW_THREADS
    if (rc == PS_ENOPEER)
        return PyErr_Format(st->PubSubError, "no node is running; "
                            "start_node() first");
    if (rc == PS_EINVAL)
        return PyErr_Format(PyExc_ValueError, "cannot resolve %s", host);
    if (rc != 0)
        return psg_raise(st, rc, "connect");
    Py_RETURN_NONE;
}


/*
 * monitor_nodes(mailbox) -> None: each time a link to a node comes up or
 * goes down the mailbox receives Message(None, None, NODEUP or NODEDOWN,
 * node name).  Once per call: two calls, two copies of each event.
 */
static PyObject *
cluster_monitor_nodes(PyObject *module, PyObject *obj)
{
    ps_state *st = psg_state(module);
    MailboxObject *mb = psg_mailbox_arg(st, obj, "mailbox", 1);
    int rc;

    if (mb == NULL)
        return NULL;
    rc = ps_registry_watch_nodes(&mb->mb);
    if (rc != 0)
        return psg_raise(st, rc, "monitor_nodes");
    Py_RETURN_NONE;
}

/* demonitor_nodes(mailbox) -> bool: False when it was not watching. */
static PyObject *
cluster_demonitor_nodes(PyObject *module, PyObject *obj)
{
    MailboxObject *mb = psg_mailbox_arg(psg_state(module), obj, "mailbox",
                                        0);

    if (mb == NULL)
        return NULL;
    return PyBool_FromLong(ps_registry_unwatch_nodes(&mb->mb) == 0);
}

/* cluster_stats() -> dict[str, int]: the transport's counters. */
static PyObject *
cluster_stats(PyObject *module, PyObject *unused)
{
    ps_cluster_stats s;
    PyObject *d = PyDict_New();

    if (d == NULL)
        return NULL;
    ps_cluster_stats_get(&s);
#define PS_X_ITEM(name, doc)                                              \
    {                                                                     \
        PyObject *v = PyLong_FromUnsignedLongLong(s.name);                \
                                                                          \
        if (v == NULL || PyDict_SetItemString(d, #name, v) < 0) {         \
            Py_XDECREF(v);                                                \
            Py_DECREF(d);                                                 \
            return NULL;                                                  \
        }                                                                 \
        Py_DECREF(v);                                                     \
    }
    PS_CLUSTER_STATS(PS_X_ITEM)
#undef PS_X_ITEM
    return d;
}

PyMethodDef psg_cluster_methods[] = {
    {"_start_node", (PyCFunction)(void (*)(void))cluster_start,
     METH_VARARGS | METH_KEYWORDS,
     "_start_node(name, host, port, cookie, seeds, heartbeat, timeout, "
     "max_frame, max_queue)\n\nStart the node (use pubsub.start_node)."},
    {"stop_node", cluster_stop, METH_NOARGS,
     "stop_node() -> None\n\nStop the node: close every link and forget "
     "every remote member."},
    {"node_name", cluster_node_name, METH_NOARGS,
     "node_name() -> str | None\n\nThis node's name while it runs."},
    {"listen_address", cluster_listen_address, METH_NOARGS,
     "listen_address() -> (host, port) | None\n\nThe bound address."},
    {"nodes", cluster_nodes, METH_NOARGS,
     "nodes() -> list[str]\n\nThe nodes this one has a link to."},
    {"_connect", cluster_connect, METH_VARARGS,
     "_connect(host, port) -> None\n\nDial a node (use pubsub.connect)."},
    {"monitor_nodes", cluster_monitor_nodes, METH_O,
     "monitor_nodes(mailbox) -> None\n\nSend NODEUP/NODEDOWN messages to "
     "the mailbox as links come and go."},
    {"demonitor_nodes", cluster_demonitor_nodes, METH_O,
     "demonitor_nodes(mailbox) -> bool\n\nStop monitor_nodes."},
    {"cluster_stats", cluster_stats, METH_NOARGS,
     "cluster_stats() -> dict[str, int]\n\nThe transport's counters."},
    {"_cluster_log_fd", cluster_log_fd, METH_NOARGS,
     "The descriptor that turns readable when log records wait."},
    {"_cluster_log_drain", cluster_log_drain, METH_NOARGS,
     "Take the waiting log records as (level, id, message)."},
    {NULL, NULL, 0, NULL},
};

int
psg_cluster_init(PyObject *module, ps_state *st)
{
    return log_init();
}

void
psg_cluster_fini(void)
{
    /* The node outlives a module object: it belongs to the process, and
     * an interpreter at exit stops it through pubsub.cluster's atexit. */
}
