/*
 * ps_cluster.c: the cluster transport.  See ps_cluster.h for the model.
 *
 * One I/O thread owns the listener, the epoll set, every socket, the read
 * buffers and the dial list.  Other threads reach a peer only through
 * ps_node.link or the peer list, both changed by the I/O thread with the
 * registry lock held, so a peer found under that lock stays alive until
 * the lock is released.  A peer's output queue (q) is filled by any
 * thread under the peer's mutex; the I/O thread swaps it with its write
 * buffer (w) and writes without the mutex.
 *
 * Handshake (initiator I dials acceptor A):
 *   I -> A  HELLO      settings, name, incarnation, nonce_i
 *   A -> I  CHALLENGE  settings, name, incarnation, nonce_a  (or REFUSE)
 *   I -> A  RESPONSE   HMAC(cookie, "initiator" label, both nonces, both
 *                      identities, max_frame)
 *   A -> I  RESPONSE   the same with the "acceptor" label   (or REFUSE)
 * Each side is established once it has checked the other's proof; then it
 * sends PEERS and its full membership (SYNC), and deltas follow.  PEERS
 * is sent again every timeout, so a mesh cut in two places heals.
 */
#include "ps_cluster.h"
#include "ps_codec.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ps_wire.h"

#define RBUF_PREAUTH 4096
#define RBUF_UP (256u << 10)
#define MAX_EVENTS 64
#define DIAL_BACKOFF_MIN (50ull * 1000000)
#define DIAL_BACKOFF_MAX (2000ull * 1000000)
#define LEARNED_ATTEMPTS 4
#define LINGER_NS (1000ull * 1000000)
/* A link written to within this long is taken to be in a burst, where
 * queueing for one large write pays; past it (a message a millisecond,
 * say), the sender writes its frame itself.  Of the order of one thread
 * wake-up on a loaded machine. */
#define DIRECT_IDLE_NS (50ull * 1000)
/* Larger frames gain nothing worth holding the registry lock through
 * their copy into the socket; they are queued. */
#define DIRECT_MAX (64u << 10)

typedef struct obuf {
    uint8_t *data;
    size_t len, cap;
} obuf;

typedef enum conn_state {
    CONN_DIALING,           /* non-blocking connect in progress */
    CONN_WAIT_CHALLENGE,    /* initiator: HELLO sent */
    CONN_WAIT_HELLO,        /* acceptor: nothing heard yet */
    CONN_WAIT_RESPONSE,     /* acceptor: CHALLENGE sent */
    CONN_WAIT_PROOF,        /* initiator: RESPONSE sent */
    CONN_UP,
    CONN_CLOSING,           /* refused: flush, half-close, wait for EOF */
    CONN_DEAD,              /* unlinked; freed at the end of the turn */
} conn_state;

struct dial;

typedef struct peer {
    struct peer *next;          /* cl.peers: registry lock to change */
    int fd;
    uint8_t state;              /* conn_state; I/O thread */
    uint8_t initiator;
    uint8_t synced;             /* receives deltas: registry lock */
    uint8_t want_out;           /* EPOLLOUT registered */
    char addr[PS_CLUSTER_HOSTLEN + 8];  /* the other end, for logs */
    char rhost[PS_CLUSTER_HOSTLEN];     /* the other end's address */
    struct dial *dial;          /* the target this was dialled for */

    /* Identity, known after HELLO/CHALLENGE; interned once proven. */
    ps_node *node;
    char rname[PS_MAX_NODENAME + 1];
    uint8_t rname_len;
    uint64_t rinc;
    ps_cluster_addr listen;     /* where the peer listens */
    uint8_t nonce_mine[PS_WIRE_NONCE];
    uint8_t nonce_theirs[PS_WIRE_NONCE];
    uint64_t deadline;          /* handshake or linger deadline */
    uint64_t last_recv;
    _Atomic uint64_t last_send; /* last write that made progress */

    uint8_t *rbuf;              /* I/O thread only */
    size_t rlen, rcap;

    pthread_mutex_t mu;         /* guards q, wlen_locked */
    obuf q;
    size_t wlen_locked;         /* w.len as of the last swap */
    obuf w;                     /* I/O thread only */
    size_t woff;
    atomic_int overflow;
} peer;

typedef struct dial {
    struct dial *next;
    ps_cluster_addr addr;
    uint8_t seed;               /* redial forever */
    uint8_t warned;             /* a failure was logged since the last link */
    int attempts;
    uint64_t next_at, backoff;
    peer *conn;                 /* a connection dialled for it, or NULL */
} dial;

static struct cluster {
    atomic_int running;
    pthread_t thread;
    int epfd, wakefd, lfd;
    ps_cluster_addr listen;
    uint8_t cookie[256];
    size_t cookie_len;
    uint64_t heartbeat_ns, timeout_ns;
    uint32_t max_frame;
    size_t max_queue;
    ps_cluster_log_fn log;
    void *log_arg;

    peer *peers;                /* registry lock to change */
    peer *reap;                 /* dead, freed at the end of a turn */
    dial *dials;                /* I/O thread */
    int accept_paused;          /* out of descriptors: retry next tick */
    uint64_t gossip_at;         /* when PEERS next goes to every link */
    pthread_mutex_t pending_mu; /* guards pending */
    dial *pending;              /* from ps_cluster_connect */
} cl = { .epfd = -1, .wakefd = -1, .lfd = -1,
         .pending_mu = PTHREAD_MUTEX_INITIALIZER };

static struct {
#define PS_X_ATOMIC(name, doc) _Atomic uint64_t name;
    PS_CLUSTER_STATS(PS_X_ATOMIC)
#undef PS_X_ATOMIC
} stats;

#define COUNT(field, n) \
    atomic_fetch_add_explicit(&stats.field, (n), memory_order_relaxed)

/*
 * Set in a child forked from this process.  The child inherits the
 * links' sockets but not the I/O thread, so it must never write to them:
 * its bytes would pass for the parent's and could land in the middle of
 * a frame the parent's I/O thread is writing.  Before send_direct only
 * the I/O thread wrote; this keeps it so in a child.
 */
static atomic_int forked_child;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void
on_fork_child(void)
{
    atomic_store_explicit(&forked_child, 1, memory_order_relaxed);
}

static void
atfork_register(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

/* Markers for the two descriptors that are not peers. */
static char listen_tag, wake_tag;

/* ---- logging ---- */

static void
report(int level, const char *id, const char *fmt, ...)
{
    char msg[600];
    va_list ap;

    if (cl.log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cl.log(cl.log_arg, level, id, msg);
}

/* "name (addr)" once the peer has said who it is, else "addr". */
static const char *
label(const peer *p, char *buf, size_t cap)
{
    if (p->rname_len)
        snprintf(buf, cap, "%s (%s)", p->rname, p->addr);
    else
        snprintf(buf, cap, "%s", p->addr);
    return buf;
}

#define LABEL(p) label((p), (char[PS_MAX_NODENAME + 96]){0}, \
                       PS_MAX_NODENAME + 96)

/* ---- buffers ---- */

/* n more bytes at the end of b, or NULL when out of memory. */
static uint8_t *
obuf_reserve(obuf *b, size_t n)
{
    uint8_t *p;

    if (b->cap - b->len < n) {
        size_t ncap = b->cap ? b->cap * 2 : 4096;
        uint8_t *nd;

        while (ncap - b->len < n)
            ncap *= 2;
        nd = realloc(b->data, ncap);
        if (nd == NULL)
            return NULL;
        b->data = nd;
        b->cap = ncap;
    }
    p = b->data + b->len;
    b->len += n;
    return p;
}

static void
obuf_fini(obuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static void
wake_io(void)
{
    uint64_t one = 1;

    if (write(cl.wakefd, &one, sizeof one) < 0) {
        /* EAGAIN: the counter is already non-zero, the thread will
         * wake anyway. */
    }
}

/*
 * Reserve n bytes of p's queue for a frame.  Caller holds p->mu.  With
 * bounded set, a queue that would pass max_queue marks the peer for
 * dropping and returns NULL; NULL also when out of memory.  *was_empty
 * tells whether the queue was empty (the caller wakes the thread after
 * unlocking).
 */
static uint8_t *
queue_reserve(peer *p, size_t n, int bounded, int *was_empty)
{
    uint8_t *out;

    if (atomic_load_explicit(&p->overflow, memory_order_relaxed))
        return NULL;
    if (bounded && p->q.len + p->wlen_locked + n > cl.max_queue) {
        atomic_store(&p->overflow, 1);
        *was_empty = 1;     /* wake the thread to drop the link */
        return NULL;
    }
    *was_empty |= p->q.len == 0;
    out = obuf_reserve(&p->q, n);
    if (out != NULL)
        COUNT(frames_out, 1);
    return out;
}

/* Queue a frame made only of a header and a small body. */
static int
queue_small(peer *p, ps_frame_type type, const uint8_t *body, size_t len)
{
    int was_empty = 0;
    uint8_t *out;

    pthread_mutex_lock(&p->mu);
    out = queue_reserve(p, PS_WIRE_HDR + len, 0, &was_empty);
    if (out != NULL)
        ps_wire_putbytes(ps_wire_hdr_put(out, type, (uint32_t)len), body,
                         len);
    pthread_mutex_unlock(&p->mu);
    return out ? 0 : PS_ENOMEM;
}

/* ---- addresses ---- */

/* Resolve host:port (numeric only when numeric is set). */
static int
addr_resolve(const char *host, uint16_t port, int numeric,
             struct sockaddr_storage *ss, socklen_t *sl)
{
    struct addrinfo hints = { 0 }, *res = NULL;
    char sport[8];

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (numeric ? AI_NUMERICHOST : 0);
    snprintf(sport, sizeof sport, "%u", port);
    if (getaddrinfo(host, sport, &hints, &res) != 0 || res == NULL)
        return PS_EINVAL;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sl = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* The numeric form of a socket address. */
static int
addr_numeric(const struct sockaddr *sa, socklen_t sl, ps_cluster_addr *out)
{
    char sport[8];

    if (getnameinfo(sa, sl, out->host, sizeof out->host, sport,
                    sizeof sport, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return PS_EINVAL;
    out->port = (uint16_t)atoi(sport);
    return 0;
}

static int
addr_equal(const ps_cluster_addr *a, const ps_cluster_addr *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* Resolve a user-given address into its numeric form. */
static int
addr_canon(const char *host, uint16_t port, ps_cluster_addr *out)
{
    struct sockaddr_storage ss;
    socklen_t sl;

    if (addr_resolve(host, port, 0, &ss, &sl) != 0)
        return PS_EINVAL;
    return addr_numeric((struct sockaddr *)&ss, sl, out);
}

/* ---- epoll ---- */

static int
ep_add(int fd, void *tag, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = tag };

    return epoll_ctl(cl.epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void
ep_want_out(peer *p, int on)
{
    struct epoll_event ev = { .data.ptr = p };

    if (p->want_out == on)
        return;
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
    epoll_ctl(cl.epfd, EPOLL_CTL_MOD, p->fd, &ev);
    p->want_out = (uint8_t)on;
}

/* ---- peer lifetime ---- */

static peer *
peer_new(int fd, int initiator, const ps_cluster_addr *other)
{
    peer *p = calloc(1, sizeof *p);

    if (p == NULL)
        return NULL;
    p->rbuf = malloc(RBUF_PREAUTH);
    if (p->rbuf == NULL) {
        free(p);
        return NULL;
    }
    p->rcap = RBUF_PREAUTH;
    p->fd = fd;
    p->initiator = (uint8_t)initiator;
    snprintf(p->addr, sizeof p->addr, "%s:%u", other->host, other->port);
    snprintf(p->rhost, sizeof p->rhost, "%s", other->host);
    pthread_mutex_init(&p->mu, NULL);
    p->last_recv = ps_now_ns();
    atomic_init(&p->last_send, p->last_recv);
    p->deadline = p->last_recv + cl.timeout_ns;

    ps_registry_lock();
    p->next = cl.peers;
    cl.peers = p;
    ps_registry_unlock();
    return p;
}

static void
peer_free(peer *p)
{
    obuf_fini(&p->q);
    obuf_fini(&p->w);
    free(p->rbuf);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* Registry lock held: take p out of the peer list. */
static void
unlink_locked(peer *p)
{
    for (peer **pp = &cl.peers; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    p->synced = 0;
}

/*
 * Close p.  When it carried its node's link and quiet is not set, the
 * node's members are dropped and watchers told the node is down.  The
 * struct itself is freed at the end of the I/O thread's turn, since
 * events for it may still be pending in this batch.
 */
static void
peer_close(peer *p, int quiet)
{
    int was_up = p->state == CONN_UP;

    if (p->state == CONN_DEAD)
        return;
    ps_registry_lock();
    if (p->node != NULL && p->node->link == p) {
        p->node->link = NULL;
        if (!quiet) {
            ps_registry_remote_drop_node(p->node);
            ps_registry_node_event(p->node, 0);
        }
    }
    unlink_locked(p);
    ps_registry_unlock();

    if (was_up && !quiet)
        COUNT(links_dropped, 1);
    if (p->dial != NULL)
        p->dial->conn = NULL;
    epoll_ctl(cl.epfd, EPOLL_CTL_DEL, p->fd, NULL);
    close(p->fd);
    p->state = CONN_DEAD;
    p->next = cl.reap;
    cl.reap = p;
}

/* Close with a log line; counts a handshake failure when not yet up. */
static void
peer_drop(peer *p, int level, const char *id, const char *why)
{
    if (p->state == CONN_DEAD)
        return;
    report(level, id, "%s: %s; connection closed", LABEL(p), why);
    if (p->state != CONN_UP && p->state != CONN_DIALING)
        COUNT(bad_handshakes, 1);
    peer_close(p, 0);
}

static void
reap_dead(void)
{
    while (cl.reap != NULL) {
        peer *p = cl.reap;

        cl.reap = p->next;
        peer_free(p);
    }
}

/* ---- writing ---- */

/*
 * Write what is queued to p: the write buffer first, then the queue,
 * swapped in under the mutex.  One write() per buffer; EAGAIN leaves the
 * rest for EPOLLOUT.  0, or PS_ESYS when the connection failed.
 */
static int
peer_flush(peer *p)
{
    for (;;) {
        ssize_t n;

        if (p->woff == p->w.len) {
            obuf t;

            pthread_mutex_lock(&p->mu);
            t = p->w;
            t.len = 0;
            p->w = p->q;
            p->q = t;
            p->wlen_locked = p->w.len;
            pthread_mutex_unlock(&p->mu);
            p->woff = 0;
            if (p->w.len == 0)
                break;
        }
        /* send() rather than write(): no SIGPIPE in a host that has
         * not ignored it. */
        n = send(p->fd, p->w.data + p->woff, p->w.len - p->woff,
                 MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ep_want_out(p, 1);
            return 0;
        }
        if (n < 0)
            return PS_ESYS;
        p->woff += (size_t)n;
        atomic_store_explicit(&p->last_send, ps_now_ns(),
                              memory_order_relaxed);
        COUNT(bytes_out, (uint64_t)n);
        COUNT(writes, 1);
    }
    ep_want_out(p, 0);
    return 0;
}

/*
 * The sender's shortcut past the I/O thread.  Caller holds the registry
 * lock, under which it saw p->synced, and p->mu, and has just appended a
 * frame of n bytes to p->q.  When that frame is all the link holds, is
 * at most DIRECT_MAX and the link has written nothing for DIRECT_IDLE_NS,
 * it goes to the socket now, from this thread: one send() instead of
 * an eventfd write, a thread wake-up and the I/O thread's three
 * syscalls.  A busier link keeps queueing, so a burst is still coalesced
 * into large writes.
 *
 * - Order: the I/O thread writes only what it swapped out of q under
 *   p->mu, and wlen_locked == 0 says it has written all of that; a later
 *   frame finds this one's tail in q, or goes out after it.
 * - The descriptor: peer_close clears p->synced under the registry lock
 *   before it closes the fd, so the fd is open, and is p's, here.  In a
 *   forked child it is the parent's: nothing is written there.
 * - Partial writes and errors: what was not written stays at the front
 *   of q for the I/O thread, which owns EPOLLOUT, errors and closing;
 *   nothing is closed here.
 *
 * Returns 1 when the whole frame is written (q is empty again and the
 * I/O thread need not wake), 0 when some or all of it stays queued.
 */
static int
send_direct(peer *p, size_t n)
{
    uint64_t now;
    ssize_t sent;

    if (n > DIRECT_MAX || p->q.len != n || p->wlen_locked != 0 ||
        atomic_load_explicit(&forked_child, memory_order_relaxed))
        return 0;
    now = ps_now_ns();
    if (now - atomic_load_explicit(&p->last_send, memory_order_relaxed)
            < DIRECT_IDLE_NS)
        return 0;

    sent = send(p->fd, p->q.data, n, MSG_NOSIGNAL);
    if (sent <= 0)
        return 0;           /* EAGAIN, EINTR, an error: the thread's */
    atomic_store_explicit(&p->last_send, now, memory_order_relaxed);
    COUNT(bytes_out, (uint64_t)sent);
    COUNT(writes, 1);
    COUNT(direct_writes, 1);

    p->q.len = n - (size_t)sent;
    memmove(p->q.data, p->q.data + sent, p->q.len);
    return p->q.len == 0;
}

/* Flush, and close p on a write error. */
static void
peer_flush_or_drop(peer *p)
{
    if (p->state == CONN_DEAD || p->state == CONN_DIALING)
        return;
    if (peer_flush(p) != 0) {
        char why[128];

        snprintf(why, sizeof why, "write failed: %s", strerror(errno));
        peer_drop(p, PS_LOG_WARNING, "PEER-DOWN", why);
    }
}

/*
 * Refuse p: queue a REFUSE with the reason, log it, then half-close once
 * written and wait (briefly) for the other side to close, so that it
 * reads the reason instead of a reset.
 */
static void
peer_refuse(peer *p, uint16_t code, const char *id, const char *reason)
{
    size_t len = strlen(reason);
    int was_empty = 0;
    uint8_t *out;

    report(PS_LOG_ERROR, id, "%s: refused: %s", LABEL(p), reason);
    COUNT(bad_handshakes, 1);
    pthread_mutex_lock(&p->mu);
    out = queue_reserve(p, ps_wire_refuse_size(len), 0, &was_empty);
    if (out != NULL)
        ps_wire_refuse_put(out, code, reason, len);
    pthread_mutex_unlock(&p->mu);

    p->state = CONN_CLOSING;
    p->deadline = ps_now_ns() + LINGER_NS;
    if (peer_flush(p) != 0 || p->w.len == p->woff)
        shutdown(p->fd, SHUT_WR);
}

/* ---- handshake ---- */

/* Our HELLO/CHALLENGE, with a fresh nonce. */
static int
send_hello(peer *p, ps_frame_type type)
{
    ps_node *me = ps_node_local();
    ps_wire_hello h = { 0 };
    int was_empty = 0;
    uint8_t *out;

    if (ps_random(p->nonce_mine, PS_WIRE_NONCE) != 0)
        return PS_ESYS;
    h.max_frame = cl.max_frame;
    h.incarnation = me->incarnation;
    h.name = (ps_span){ (const uint8_t *)me->name, me->name_len };
    h.host = (ps_span){ (const uint8_t *)cl.listen.host,
                        strlen(cl.listen.host) };
    h.port = cl.listen.port;
    memcpy(h.nonce, p->nonce_mine, PS_WIRE_NONCE);

    pthread_mutex_lock(&p->mu);
    out = queue_reserve(p, ps_wire_hello_size(&h), 0, &was_empty);
    if (out != NULL)
        ps_wire_hello_put(out, type, &h);
    pthread_mutex_unlock(&p->mu);
    return out ? 0 : PS_ENOMEM;
}

/* Append one identity (name, incarnation) to a MAC input. */
static uint8_t *
put_identity(uint8_t *q, const char *name, size_t len, uint64_t inc)
{
    q = ps_wire_put8(q, (uint8_t)len);
    q = ps_wire_putbytes(q, name, len);
    return ps_wire_put64(q, inc);
}

/*
 * The proof one side gives: HMAC-SHA256 keyed by the cookie over a label
 * naming the prover's role, both nonces and both identities (initiator's
 * first) and the frame limit.  The labels differ, so a proof can never be
 * reflected back as the other direction's.
 */
static int
proof(const peer *p, int by_initiator, uint8_t out[PS_WIRE_MAC])
{
    static const char li[] = "cpubsub/1 initiator proof";
    static const char la[] = "cpubsub/1 acceptor proof";
    ps_node *me = ps_node_local();
    uint8_t data[64 + 2 * PS_WIRE_NONCE + 2 * (PS_MAX_NODENAME + 9) + 4];
    uint8_t *q = data;
    const uint8_t *ni = p->initiator ? p->nonce_mine : p->nonce_theirs;
    const uint8_t *na = p->initiator ? p->nonce_theirs : p->nonce_mine;
    unsigned int outlen = 0;

    q = by_initiator ? ps_wire_putbytes(q, li, sizeof li - 1)
                     : ps_wire_putbytes(q, la, sizeof la - 1);
    q = ps_wire_putbytes(q, ni, PS_WIRE_NONCE);
    q = ps_wire_putbytes(q, na, PS_WIRE_NONCE);
    if (p->initiator) {
        q = put_identity(q, me->name, me->name_len, me->incarnation);
        q = put_identity(q, p->rname, p->rname_len, p->rinc);
    } else {
        q = put_identity(q, p->rname, p->rname_len, p->rinc);
        q = put_identity(q, me->name, me->name_len, me->incarnation);
    }
    q = ps_wire_put32(q, cl.max_frame);

    if (HMAC(EVP_sha256(), cl.cookie, (int)cl.cookie_len, data,
             (size_t)(q - data), out, &outlen) == NULL ||
        outlen != PS_WIRE_MAC)
        return PS_ESYS;
    return 0;
}

static int
send_proof(peer *p)
{
    uint8_t mac[PS_WIRE_MAC];

    if (proof(p, p->initiator, mac) != 0)
        return PS_ESYS;
    return queue_small(p, PS_FT_RESPONSE, mac, sizeof mac);
}

/* Check the other side's proof in constant time.  1 when it holds. */
static int
check_proof(peer *p, const uint8_t *body, size_t len)
{
    uint8_t mac[PS_WIRE_MAC];

    if (len != PS_WIRE_MAC || proof(p, !p->initiator, mac) != 0)
        return 0;
    return CRYPTO_memcmp(mac, body, PS_WIRE_MAC) == 0;
}

/*
 * Judge a HELLO or CHALLENGE: version, settings, name.  Fills the peer's
 * identity.  Returns 0, or a refuse code with why filled in.
 */
static int
judge_hello(peer *p, const ps_frame_hdr *h, const uint8_t *body,
            char *why, size_t cap)
{
    ps_node *me = ps_node_local();
    ps_wire_hello m;

    if (h->version != PS_WIRE_VERSION) {
        snprintf(why, cap, "protocol version %u, this node speaks %u",
                 h->version, PS_WIRE_VERSION);
        return PS_REFUSE_VERSION;
    }
    if (ps_wire_hello_get(body, h->len, &m) != 0 ||
        m.host.len >= PS_CLUSTER_HOSTLEN) {
        snprintf(why, cap, "malformed %s", ps_wire_type_name(h->type));
        return PS_REFUSE_PROTO;
    }
    if (m.max_frame != cl.max_frame) {
        snprintf(why, cap, "max_frame %u differs from this node's %u",
                 m.max_frame, cl.max_frame);
        return PS_REFUSE_SETTINGS;
    }
    memcpy(p->rname, m.name.p, m.name.len);
    p->rname[m.name.len] = '\0';
    p->rname_len = (uint8_t)m.name.len;
    p->rinc = m.incarnation;
    memcpy(p->nonce_theirs, m.nonce, PS_WIRE_NONCE);
    memcpy(p->listen.host, m.host.p, m.host.len);
    p->listen.host[m.host.len] = '\0';
    p->listen.port = m.port;
    /* A node bound to every interface advertises an address nobody can
     * dial: use the one its connection comes from. */
    if (strcmp(p->listen.host, "0.0.0.0") == 0 ||
        strcmp(p->listen.host, "::") == 0 || m.host.len == 0)
        snprintf(p->listen.host, sizeof p->listen.host, "%s", p->rhost);
    if (m.name.len == me->name_len &&
        memcmp(m.name.p, me->name, m.name.len) == 0) {
        snprintf(why, cap, "node name \"%s\" is this node's own",
                 p->rname);
        return PS_REFUSE_NAME;
    }
    return 0;
}

/* ---- establishing a link ---- */

/* Order of two node identities: name bytes, then incarnation. */
static int
node_cmp(const char *an, size_t al, uint64_t ai, const ps_node *b)
{
    size_t n = al < b->name_len ? al : b->name_len;
    int c = memcmp(an, b->name, n);

    if (c != 0)
        return c;
    if (al != b->name_len)
        return al < b->name_len ? -1 : 1;
    return ai < b->incarnation ? -1 : ai > b->incarnation;
}

typedef struct sync_ctx {
    peer *p;
    size_t start;               /* offset of the open SYNC frame in q */
    uint32_t count;
    int err;
} sync_ctx;

/* Close the open SYNC frame: patch its header and entry count. */
static void
sync_close(sync_ctx *s)
{
    uint8_t *f;

    if (s->count == 0) {
        s->p->q.len = s->start;
        return;
    }
    f = s->p->q.data + s->start;
    ps_wire_hdr_put(f, PS_FT_SYNC,
                    (uint32_t)(s->p->q.len - s->start - PS_WIRE_HDR));
    ps_wire_put32(f + PS_WIRE_HDR, s->count);
    COUNT(frames_out, 1);
}

/* Open a new SYNC frame at the end of q. */
static int
sync_open(sync_ctx *s)
{
    s->start = s->p->q.len;
    s->count = 0;
    return obuf_reserve(&s->p->q, PS_WIRE_HDR + 4) ? 0 : PS_ENOMEM;
}

static int
sync_entry(void *arg, ps_registry *reg, const char *ch, uint32_t len,
           uint64_t id, uint32_t count)
{
    sync_ctx *s = arg;
    ps_wire_entry e;
    uint32_t slen;
    size_t n;
    uint8_t *out;

    e.scope.p = (const uint8_t *)ps_registry_name(reg, &slen);
    e.scope.len = slen;
    e.channel = (ps_span){ (const uint8_t *)ch, len };
    e.id = id;
    e.count = (int32_t)count;
    n = ps_wire_entry_size(slen, len);
    if (s->p->q.len - s->start - PS_WIRE_HDR + n > cl.max_frame) {
        sync_close(s);
        if (sync_open(s) != 0)
            return s->err = PS_ENOMEM;
    }
    out = obuf_reserve(&s->p->q, n);
    if (out == NULL)
        return s->err = PS_ENOMEM;
    ps_wire_entry_put(out, &e);
    s->count++;
    return 0;
}

/* Registry lock and p->mu held: queue our full membership. */
static int
queue_sync(peer *p)
{
    sync_ctx s = { .p = p };

    if (sync_open(&s) != 0)
        return PS_ENOMEM;
    ps_registry_foreach_local(sync_entry, &s);
    if (s.err == 0)
        sync_close(&s);
    return s.err;
}

/* Registry lock and p->mu held: queue the list of our other links. */
static int
queue_peers(peer *p)
{
    size_t body = 2, n = 0;
    uint8_t *out;

    for (peer *o = cl.peers; o != NULL; o = o->next) {
        if (o != p && o->synced && n < UINT16_MAX) {
            body += ps_wire_peer_size(o->rname_len, strlen(o->listen.host));
            n++;
        }
    }
    out = obuf_reserve(&p->q, PS_WIRE_HDR + body);
    if (out == NULL)
        return PS_ENOMEM;
    out = ps_wire_hdr_put(out, PS_FT_PEERS, (uint32_t)body);
    out = ps_wire_put16(out, (uint16_t)n);
    for (peer *o = cl.peers; o != NULL && n > 0; o = o->next) {
        ps_wire_peer e;

        if (o == p || !o->synced)
            continue;
        e.name = (ps_span){ (const uint8_t *)o->rname, o->rname_len };
        e.incarnation = o->rinc;
        e.host = (ps_span){ (const uint8_t *)o->listen.host,
                            strlen(o->listen.host) };
        e.port = o->listen.port;
        out = ps_wire_peer_put(out, &e);
        n--;
    }
    COUNT(frames_out, 1);
    return 0;
}

/*
 * Registry lock held: settle a second link to p's node name.  Returns 1
 * when p must be closed (the other link stays), 0 when p goes ahead;
 * *replaced tells whether p takes over a link of the same incarnation.
 */
static int
settle_duplicate(peer *p, ps_node *node, int *replaced, peer **gone)
{
    ps_node *me = ps_node_local();
    int lower_is_me = node_cmp(me->name, me->name_len, me->incarnation,
                               node) < 0;

    for (peer *q = cl.peers; q != NULL; q = q->next) {
        if (q == p || !q->synced || q->rname_len != p->rname_len ||
            memcmp(q->rname, p->rname, p->rname_len) != 0)
            continue;
        if (q->node != node) {
            *gone = q;          /* a past incarnation: take it down */
            return 0;
        }
        /* Both ends keep the connection dialled by the lower node. */
        if (p->initiator == lower_is_me && q->initiator != lower_is_me) {
            *replaced = 1;
            *gone = q;
            return 0;
        }
        return 1;
    }
    return 0;
}

/*
 * Is p's name already linked to another incarnation?  Names are unique in
 * a cluster: a second live process under one name is refused rather than
 * allowed to displace the first back and forth.  A restarted node gets in
 * once its old link is gone (closed, or silent past the timeout).
 */
static int
name_taken(peer *p)
{
    int taken = 0;

    ps_registry_lock();
    for (peer *q = cl.peers; q != NULL && !taken; q = q->next) {
        taken = q != p && q->synced && q->rinc != p->rinc &&
                q->rname_len == p->rname_len &&
                memcmp(q->rname, p->rname, p->rname_len) == 0;
    }
    ps_registry_unlock();
    return taken;
}

/* Refuse p because its name is linked to another incarnation. */
static void
refuse_taken(peer *p)
{
    char why[PS_MAX_NODENAME + 80];

    snprintf(why, sizeof why, "a node named \"%s\" (another incarnation) "
             "is already connected", p->rname);
    peer_refuse(p, PS_REFUSE_NAME, "PEER-REFUSING", why);
}

/*
 * p has proven itself: make it its node's link, and in the same critical
 * section queue PEERS and the full membership and mark it as receiving
 * deltas, so the snapshot and the deltas neither overlap nor miss.
 */
static void
link_up(peer *p)
{
    ps_node *node = ps_node_intern(p->rname, p->rname_len, p->rinc);
    peer *gone = NULL;
    int replaced = 0, dup, rc = 0;

    if (node == NULL) {
        peer_drop(p, PS_LOG_ERROR, "PEER-DOWN", "out of memory");
        return;
    }
    ps_registry_lock();
    dup = settle_duplicate(p, node, &replaced, &gone);
    ps_registry_unlock();
    if (dup) {
        report(PS_LOG_DEBUG, "PEER-DUPLICATE",
               "%s: a link already exists; this one is closed",
               LABEL(p));
        peer_close(p, 1);
        return;
    }
    if (gone != NULL)
        peer_close(gone, replaced);

    ps_registry_lock();
    p->node = node;
    node->link = p;
    p->state = CONN_UP;
    ps_registry_remote_drop_node(node);
    pthread_mutex_lock(&p->mu);
    rc = queue_peers(p);
    if (rc == 0)
        rc = queue_sync(p);
    p->synced = rc == 0;
    pthread_mutex_unlock(&p->mu);
    if (rc == 0 && !replaced)
        ps_registry_node_event(node, 1);
    ps_registry_unlock();

    if (rc != 0) {
        peer_drop(p, PS_LOG_ERROR, "PEER-DOWN", "out of memory");
        return;
    }
    if (RBUF_UP > p->rcap) {
        uint8_t *nb = realloc(p->rbuf, RBUF_UP);

        if (nb != NULL) {
            p->rbuf = nb;
            p->rcap = RBUF_UP;
        }
    }
    if (p->dial != NULL) {
        p->dial->backoff = DIAL_BACKOFF_MIN;
        p->dial->warned = 0;
    }
    COUNT(links_up, 1);
    report(PS_LOG_INFO, "PEER-UP", "%s: link established", LABEL(p));
}

/* ---- dialling ---- */

static dial *
dial_find(const ps_cluster_addr *a)
{
    for (dial *d = cl.dials; d != NULL; d = d->next) {
        if (addr_equal(&d->addr, a))
            return d;
    }
    return NULL;
}

/* Add a target to the dial list (I/O thread), or return the existing. */
static dial *
dial_add(const ps_cluster_addr *a, int seed)
{
    dial *d = dial_find(a);

    if (d != NULL) {
        d->seed |= (uint8_t)seed;
        d->attempts = 0;
        return d;
    }
    d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->addr = *a;
    d->seed = (uint8_t)seed;
    d->backoff = DIAL_BACKOFF_MIN;
    d->next = cl.dials;
    cl.dials = d;
    return d;
}

/*
 * A dial failed.  The first failure of a seed since its last link is a
 * warning, so that a mistyped seed shows at the default log level; its
 * retries, and dials to addresses learned from peers, are debug.
 */
static void
dial_failed(dial *d, int err)
{
    int warn = d->seed && !d->warned;

    d->warned |= (uint8_t)warn;
    report(warn ? PS_LOG_WARNING : PS_LOG_DEBUG, "PEER-DIAL-FAILED",
           "%s:%u: %s%s", d->addr.host, d->addr.port, strerror(err),
           warn ? " (redialling; until a link is up, further failures "
                  "are logged at debug level)" : "");
}

/* Start a non-blocking connect to d. */
static void
dial_start(dial *d)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    peer *p;
    int fd;

    COUNT(dials, 1);
    d->attempts++;
    if (addr_resolve(d->addr.host, d->addr.port, 1, &ss, &sl) != 0)
        return;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                0);
    if (fd < 0)
        return;
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0 &&
        errno != EINPROGRESS) {
        dial_failed(d, errno);
        close(fd);
        return;
    }
    p = peer_new(fd, 1, &d->addr);
    if (p == NULL) {
        close(fd);
        return;
    }
    p->dial = d;
    d->conn = p;
    p->state = CONN_DIALING;
    if (ep_add(fd, p, EPOLLIN | EPOLLOUT) != 0)
        peer_close(p, 1);
    else
        p->want_out = 1;
}

/* Is there a link to a node listening at a? */
static int
linked_to(const ps_cluster_addr *a)
{
    for (peer *p = cl.peers; p != NULL; p = p->next) {
        if (p->state == CONN_UP && addr_equal(&p->listen, a))
            return 1;
    }
    return 0;
}

/* Take the targets ps_cluster_connect queued. */
static void
dial_take_pending(void)
{
    dial *list;

    pthread_mutex_lock(&cl.pending_mu);
    list = cl.pending;
    cl.pending = NULL;
    pthread_mutex_unlock(&cl.pending_mu);
    while (list != NULL) {
        dial *next = list->next;

        dial_add(&list->addr, 1);
        free(list);
        list = next;
    }
}

/* Dial the targets that are due; forget learned ones that keep failing. */
static void
dial_tick(uint64_t now)
{
    for (dial **dp = &cl.dials; *dp != NULL;) {
        dial *d = *dp;

        if (d->conn != NULL || linked_to(&d->addr) ||
            addr_equal(&d->addr, &cl.listen)) {
            dp = &d->next;
            continue;
        }
        if (!d->seed && d->attempts >= LEARNED_ATTEMPTS) {
            report(PS_LOG_DEBUG, "PEER-FORGOTTEN", "%s:%u: %d dials "
                   "failed; not dialled again until a peer names it",
                   d->addr.host, d->addr.port, d->attempts);
            *dp = d->next;
            free(d);
            continue;
        }
        if (now >= d->next_at) {
            d->next_at = now + d->backoff;
            d->backoff *= 2;
            if (d->backoff > DIAL_BACKOFF_MAX)
                d->backoff = DIAL_BACKOFF_MAX;
            dial_start(d);
        }
        dp = &d->next;
    }
}

/* ---- frames from an established peer ---- */

/* Registry lock held: the scope, valid until the lock is released. */
static ps_registry *
scope_of(ps_span name, int create)
{
    return ps_registry_scope_find((const char *)name.p, name.len, create);
}

/* Names and str topics arrive as Python's surrogatepass UTF-8 of a str;
 * anything else would fail to decode at every reader here. */
static int
text_ok(ps_span s)
{
    return ps_utf8_valid_sp(s.p, s.len, 1);
}

/* SYNC or DELTA: apply every entry to the peer's remote memberships. */
static int
on_entries(peer *p, const uint8_t *body, size_t len, int delta)
{
    ps_rd r;
    uint32_t n;

    ps_rd_init(&r, body, len);
    n = ps_rd_u32(&r);
    if (delta && n != 1)
        return PS_EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        ps_wire_entry e;
        ps_registry *reg;

        ps_wire_entry_get(&r, &e);
        if (r.bad || e.channel.len > PS_MAX_CHANNEL ||
            e.scope.len > PS_MAX_CHANNEL || e.id == 0 ||
            !text_ok(e.channel) || !text_ok(e.scope) ||
            (delta ? (e.count != 1 && e.count != -1) : e.count <= 0))
            return PS_EPROTO;
        ps_registry_lock();
        reg = scope_of(e.scope, e.count > 0);
        if (reg == NULL && e.count > 0) {
            ps_registry_unlock();
            return PS_ENOMEM;
        }
        if (reg != NULL)
            ps_registry_remote_change(reg, (const char *)e.channel.p,
                                      e.channel.len, p->node, e.id, e.count);
        ps_registry_unlock();
    }
    return r.left == 0 ? 0 : PS_EPROTO;
}

static int
on_bcast(peer *p, const uint8_t *body, size_t len)
{
    ps_wire_bcast b;
    ps_registry *reg;
    ps_channel *c;
    ps_rmsg *m = NULL;
    uint32_t flags;

    if (ps_wire_bcast_get(body, len, &b) != 0 || !text_ok(b.scope) ||
        !text_ok(b.channel) ||
        (!(b.flags & PS_WIRE_TOPIC_BYTES) && !text_ok(b.topic)))
        return PS_EPROTO;
    flags = (b.flags & PS_WIRE_TOPIC_BYTES) ? PS_RMSG_TOPIC_BYTES : 0;

    ps_registry_lock();
    reg = scope_of(b.scope, 0);
    if (reg == NULL) {
        ps_registry_unlock();
        return 0;           /* no scope by that name: nobody here */
    }
    c = ps_registry_find(reg, (const char *)b.channel.p, b.channel.len);
    if (c != NULL && c->n > 0)
        m = ps_rmsg_new(flags, b.sender_id ? p->node : NULL, b.sender_id,
                        b.channel.p, (uint32_t)b.channel.len, b.topic.p,
                        (uint32_t)b.topic.len, b.payload.p,
                        (uint32_t)b.payload.len);
    if (m != NULL)
        ps_registry_deliver_remote(c, m);
    ps_registry_unlock();
    if (m != NULL)
        ps_rmsg_decref(m);
    return 0;
}

static int
on_send(peer *p, const uint8_t *body, size_t len)
{
    ps_wire_send s;
    ps_mailbox *mb;
    ps_rmsg *m;
    uint32_t flags = PS_RMSG_DIRECT;

    if (ps_wire_send_get(body, len, &s) != 0 ||
        (!(s.flags & PS_WIRE_TOPIC_BYTES) && !text_ok(s.topic)))
        return PS_EPROTO;
    if (s.target_inc != ps_node_local()->incarnation) {
        COUNT(stale_drops, 1);
        return 0;
    }
    if (s.flags & PS_WIRE_TOPIC_BYTES)
        flags |= PS_RMSG_TOPIC_BYTES;
    m = ps_rmsg_new(flags, s.sender_id ? p->node : NULL, s.sender_id,
                    NULL, 0, s.topic.p, (uint32_t)s.topic.len,
                    s.payload.p, (uint32_t)s.payload.len);
    if (m == NULL)
        return PS_ENOMEM;

    ps_registry_lock();
    mb = ps_registry_mailbox(s.target_id);
    if (mb == NULL)
        COUNT(dead_drops, 1);
    else
        ps_mailbox_push_remote(mb, m);
    ps_registry_unlock();
    ps_rmsg_decref(m);
    return 0;
}

/* PEERS: dial the nodes we have no link to. */
static int
on_peers(peer *p, const uint8_t *body, size_t len)
{
    ps_node *me = ps_node_local();
    ps_rd r;
    uint16_t n;

    ps_rd_init(&r, body, len);
    n = ps_rd_u16(&r);
    for (uint16_t i = 0; i < n; i++) {
        ps_wire_peer e;
        ps_cluster_addr a;

        ps_wire_peer_get(&r, &e);
        if (r.bad || e.host.len >= PS_CLUSTER_HOSTLEN)
            return PS_EPROTO;
        if (e.name.len == me->name_len &&
            memcmp(e.name.p, me->name, me->name_len) == 0)
            continue;
        memcpy(a.host, e.host.p, e.host.len);
        a.host[e.host.len] = '\0';
        a.port = e.port;
        if (!linked_to(&a))
            dial_add(&a, 0);
    }
    return r.left == 0 ? 0 : PS_EPROTO;
}

/* A frame from an established peer.  0 or a PS_E* code. */
static int
on_frame_up(peer *p, const ps_frame_hdr *h, const uint8_t *body)
{
    COUNT(frames_in, 1);
    if (h->version != PS_WIRE_VERSION)
        return PS_EPROTO;
    switch (h->type) {
    case PS_FT_HEARTBEAT:
        return h->len == 0 ? 0 : PS_EPROTO;
    case PS_FT_PEERS:
        return on_peers(p, body, h->len);
    case PS_FT_SYNC:
        return on_entries(p, body, h->len, 0);
    case PS_FT_DELTA:
        return on_entries(p, body, h->len, 1);
    case PS_FT_BCAST:
        return on_bcast(p, body, h->len);
    case PS_FT_SEND:
        return on_send(p, body, h->len);
    }
    return PS_EPROTO;
}

/* ---- frames during the handshake ---- */

/* A REFUSE from the other side: log its reason and close. */
static void
on_refused(peer *p, const ps_frame_hdr *h, const uint8_t *body)
{
    char why[600];
    uint16_t code;
    ps_span reason;

    if (ps_wire_refuse_get(body, h->len, &code, &reason) != 0)
        snprintf(why, sizeof why, "refused us (malformed REFUSE)");
    else
        snprintf(why, sizeof why, "refused us: %.*s", (int)reason.len,
                 (const char *)reason.p);
    peer_drop(p, PS_LOG_ERROR, "PEER-REFUSED", why);
}

/* Acceptor: HELLO arrived. */
static void
on_hello(peer *p, const ps_frame_hdr *h, const uint8_t *body)
{
    char why[400];
    int code = judge_hello(p, h, body, why, sizeof why);

    if (code != 0) {
        peer_refuse(p, (uint16_t)code, "PEER-REFUSING", why);
        return;
    }
    if (send_hello(p, PS_FT_CHALLENGE) != 0) {
        peer_drop(p, PS_LOG_ERROR, "PEER-DOWN", "cannot answer HELLO");
        return;
    }
    p->state = CONN_WAIT_RESPONSE;
}

/* Initiator: CHALLENGE arrived; prove we know the cookie. */
static void
on_challenge(peer *p, const ps_frame_hdr *h, const uint8_t *body)
{
    char why[400];
    int code = judge_hello(p, h, body, why, sizeof why);

    if (code != 0) {
        peer_refuse(p, (uint16_t)code, "PEER-REFUSING", why);
        return;
    }
    if (send_proof(p) != 0) {
        peer_drop(p, PS_LOG_ERROR, "PEER-DOWN", "cannot compute proof");
        return;
    }
    p->state = CONN_WAIT_PROOF;
}

/* Either side: the other side's proof arrived. */
static void
on_response(peer *p, const ps_frame_hdr *h, const uint8_t *body)
{
    if (!check_proof(p, body, h->len)) {
        /* The cookie's value is never logged, on either side. */
        if (p->initiator)
            peer_drop(p, PS_LOG_ERROR, "PEER-BAD-COOKIE",
                      "the peer's proof does not match our cookie");
        else
            peer_refuse(p, PS_REFUSE_AUTH, "PEER-BAD-COOKIE",
                        "authentication failed (cookies differ)");
        return;
    }
    if (name_taken(p)) {
        refuse_taken(p);
        return;
    }
    if (!p->initiator && send_proof(p) != 0) {
        peer_drop(p, PS_LOG_ERROR, "PEER-DOWN", "cannot compute proof");
        return;
    }
    link_up(p);
}

/* A frame before authentication: only the expected step is accepted. */
static void
on_frame_handshake(peer *p, const ps_frame_hdr *h, const uint8_t *body)
{
    if (h->type == PS_FT_REFUSE && p->state != CONN_WAIT_HELLO) {
        on_refused(p, h, body);
        return;
    }
    if (p->state == CONN_WAIT_HELLO && h->type == PS_FT_HELLO)
        on_hello(p, h, body);
    else if (p->state == CONN_WAIT_CHALLENGE &&
             h->type == PS_FT_CHALLENGE)
        on_challenge(p, h, body);
    else if ((p->state == CONN_WAIT_RESPONSE ||
              p->state == CONN_WAIT_PROOF) && h->type == PS_FT_RESPONSE)
        on_response(p, h, body);
    else if (h->version != PS_WIRE_VERSION)
        peer_refuse(p, PS_REFUSE_VERSION, "PEER-REFUSING",
                    "unknown protocol version");
    else
        peer_drop(p, PS_LOG_WARNING, "PEER-BAD-FRAME",
                  "unexpected frame during the handshake");
}

/* ---- reading ---- */

/* Largest body p may send in its present state. */
static uint32_t
frame_limit(const peer *p)
{
    return p->state == CONN_UP ? cl.max_frame : PS_WIRE_MAX_PREAUTH;
}

/* Why a frame failed, for the log line. */
static void
bad_frame(peer *p, int rc, const ps_frame_hdr *h)
{
    char why[160];

    if (rc == PS_ETOOBIG)
        snprintf(why, sizeof why, "frame of %u bytes exceeds the limit "
                 "of %u", h->len, frame_limit(p));
    else if (rc == PS_ENOMEM)
        snprintf(why, sizeof why, "out of memory");
    else if (h != NULL && h->type != 0)
        snprintf(why, sizeof why, "malformed %s frame",
                 ps_wire_type_name(h->type));
    else
        snprintf(why, sizeof why, "bad frame header");
    if (p->state == CONN_UP)
        COUNT(bad_frames, 1);
    peer_drop(p, PS_LOG_WARNING, "PEER-BAD-FRAME", why);
}

/*
 * Parse every complete frame in p's read buffer and keep the partial
 * rest.  Each header is checked against the limit of the state p is in
 * when that frame starts, so a pre-auth peer cannot announce a large one.
 */
static void
parse_frames(peer *p)
{
    size_t off = 0;

    while (p->state != CONN_DEAD && p->state != CONN_CLOSING) {
        ps_frame_hdr h = { 0 };
        int rc = ps_wire_hdr_get(p->rbuf + off, p->rlen - off,
                                 frame_limit(p), &h);

        if (rc < 0) {
            /* The length check may fail on a well-formed header. */
            if (rc == PS_ETOOBIG)
                ps_wire_hdr_get(p->rbuf + off, p->rlen - off, UINT32_MAX,
                                &h);
            bad_frame(p, rc, &h);
            return;
        }
        if (rc == 0 || p->rlen - off < PS_WIRE_HDR + (size_t)h.len)
            break;
        rc = 0;
        if (p->state == CONN_UP)
            rc = on_frame_up(p, &h, p->rbuf + off + PS_WIRE_HDR);
        else
            on_frame_handshake(p, &h, p->rbuf + off + PS_WIRE_HDR);
        if (rc != 0) {
            bad_frame(p, rc, &h);
            return;
        }
        off += PS_WIRE_HDR + h.len;
    }
    if (p->state == CONN_DEAD)
        return;
    if (p->state == CONN_CLOSING) {
        p->rlen = 0;        /* nothing more is read from a refused peer */
        return;
    }
    memmove(p->rbuf, p->rbuf + off, p->rlen - off);
    p->rlen -= off;
}

/* Make room for the frame at the head of the buffer, if it needs more. */
static int
rbuf_fit(peer *p)
{
    ps_frame_hdr h;
    size_t need;
    uint8_t *nb;

    if (ps_wire_hdr_get(p->rbuf, p->rlen, frame_limit(p), &h) != 1)
        return 0;
    need = PS_WIRE_HDR + (size_t)h.len;
    if (need <= p->rcap)
        return 0;
    nb = realloc(p->rbuf, need);
    if (nb == NULL)
        return PS_ENOMEM;
    p->rbuf = nb;
    p->rcap = need;
    return 0;
}

/*
 * Read what the socket has, a few large reads at most per turn.  A read
 * that leaves room in the buffer has emptied the socket: the next one
 * would only say EAGAIN, and epoll (level-triggered) reports what comes
 * after, so the turn ends there.
 */
static void
peer_read(peer *p)
{
    for (int round = 0; round < 8 && p->state != CONN_DEAD; round++) {
        ssize_t n;
        int drained;

        if (rbuf_fit(p) != 0) {
            peer_drop(p, PS_LOG_ERROR, "PEER-DOWN", "out of memory");
            return;
        }
        n = read(p->fd, p->rbuf + p->rlen, p->rcap - p->rlen);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            char why[160];

            if (n < 0)
                snprintf(why, sizeof why, "read failed: %s",
                         strerror(errno));
            else
                snprintf(why, sizeof why, p->rlen ? "closed in the "
                         "middle of a frame (truncated)" :
                         "closed by the peer");
            if (p->state == CONN_CLOSING)
                peer_close(p, 0);
            else
                peer_drop(p, p->rlen || p->state != CONN_UP ?
                          PS_LOG_WARNING : PS_LOG_INFO, "PEER-DOWN", why);
            return;
        }
        COUNT(bytes_in, (uint64_t)n);
        COUNT(reads, 1);
        p->last_recv = ps_now_ns();
        drained = (size_t)n < p->rcap - p->rlen;
        if (p->state == CONN_CLOSING) {
            p->rlen = 0;        /* discard: we are only waiting for EOF */
        } else {
            p->rlen += (size_t)n;
            parse_frames(p);
        }
        if (drained)
            return;
    }
}

/* The non-blocking connect finished (or failed). */
static void
dial_done(peer *p)
{
    int err = 0;
    socklen_t len = sizeof err;

    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        dial_failed(p->dial, err);     /* a DIALING peer always has one */
        peer_close(p, 1);
        return;
    }
    setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
    p->state = CONN_WAIT_CHALLENGE;
    p->deadline = ps_now_ns() + cl.timeout_ns;
    if (send_hello(p, PS_FT_HELLO) != 0)
        peer_drop(p, PS_LOG_ERROR, "PEER-DOWN", "cannot send HELLO");
}

/* ---- the I/O thread ---- */

static void
on_accept(void)
{
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        ps_cluster_addr a = { "?", 0 };
        peer *p;
        int fd = accept4(cl.lfd, (struct sockaddr *)&ss, &sl,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            /* Out of descriptors, the listener would stay readable and
             * spin the thread: stop watching it until the next tick. */
            if (errno == EMFILE || errno == ENFILE) {
                struct epoll_event ev = { .events = 0 };

                ev.data.ptr = &listen_tag;
                epoll_ctl(cl.epfd, EPOLL_CTL_MOD, cl.lfd, &ev);
                cl.accept_paused = 1;
                report(PS_LOG_ERROR, "NODE-NO-FDS", "cannot accept: %s",
                       strerror(errno));
            }
            return;
        }
        addr_numeric((struct sockaddr *)&ss, sl, &a);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 },
                   sizeof(int));
        p = peer_new(fd, 0, &a);
        if (p == NULL) {
            close(fd);
            continue;
        }
        p->state = CONN_WAIT_HELLO;
        if (ep_add(fd, p, EPOLLIN) != 0)
            peer_close(p, 1);
    }
}

/* Woken: pick up connect requests, drop overflowed links, flush. */
static void
on_wake(void)
{
    uint64_t v;
    peer *next;

    if (read(cl.wakefd, &v, sizeof v) < 0) {
        /* EAGAIN: a spurious wake-up */
    }
    dial_take_pending();
    for (peer *p = cl.peers; p != NULL; p = next) {
        next = p->next;
        if (atomic_load(&p->overflow)) {
            COUNT(queue_overflows, 1);
            peer_drop(p, PS_LOG_WARNING, "PEER-QUEUE-OVERFLOW",
                      "output queue passed max_queue (slow peer)");
            continue;
        }
        peer_flush_or_drop(p);
    }
}

static void
on_peer_event(peer *p, uint32_t events)
{
    if (p->state == CONN_DEAD)
        return;
    if (p->state == CONN_DIALING) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
            ep_want_out(p, 0);
            dial_done(p);
            peer_flush_or_drop(p);
        }
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        peer_read(p);
    if (p->state == CONN_CLOSING && p->w.len == p->woff) {
        shutdown(p->fd, SHUT_WR);
        return;
    }
    peer_flush_or_drop(p);
}

/*
 * Has p taken none of our bytes for the timeout while some wait for it?
 * last_send is the time of the last write that made progress, so output
 * still pending since then means the peer stopped reading.  Such a peer
 * may well keep sending (its heartbeats keep last_recv fresh), and below
 * max_queue nothing else would ever release what is queued to it.
 */
static int
output_stalled(const peer *p, uint64_t now)
{
    return p->woff < p->w.len && now - p->last_send > cl.timeout_ns;
}

/*
 * Send PEERS again to every established link that is not behind on its
 * output.  It goes out at link-up too; repeating it is what lets two
 * nodes whose own link was cut find each other once the path heals,
 * when both kept their links to a third: each forgets a learned target
 * after a few failed dials, and nothing else would name it again.
 */
static void
gossip_peers(void)
{
    ps_registry_lock();
    for (peer *p = cl.peers; p != NULL; p = p->next) {
        if (p->state != CONN_UP || !p->synced || p->woff < p->w.len)
            continue;
        pthread_mutex_lock(&p->mu);
        queue_peers(p);     /* out of memory: the next round retries */
        pthread_mutex_unlock(&p->mu);
    }
    ps_registry_unlock();
    wake_io();              /* on_wake flushes every link */
}

/* Per-tick duties: deadlines, silence, heartbeats, dialling. */
static void
tick(uint64_t now)
{
    static const uint8_t none[1];
    peer *next;

    for (peer *p = cl.peers; p != NULL; p = next) {
        next = p->next;
        if (p->state == CONN_UP) {
            if (now - p->last_recv > cl.timeout_ns) {
                COUNT(timeouts, 1);
                peer_drop(p, PS_LOG_WARNING, "PEER-TIMEOUT",
                          "silent for longer than the timeout");
            } else if (output_stalled(p, now)) {
                COUNT(timeouts, 1);
                peer_drop(p, PS_LOG_WARNING, "PEER-STALLED",
                          "has read nothing of ours for longer than the "
                          "timeout");
            } else if (p->woff == p->w.len &&
                       now - p->last_send >= cl.heartbeat_ns) {
                /* Not behind unwritten output: a heartbeat there would
                 * only grow the queue of a peer that is not reading. */
                queue_small(p, PS_FT_HEARTBEAT, none, 0);
                peer_flush_or_drop(p);
            }
        } else if (p->state == CONN_CLOSING && now > p->deadline) {
            peer_close(p, 0);
        } else if (p->state != CONN_DEAD && now > p->deadline) {
            if (p->state == CONN_DIALING)
                peer_close(p, 1);
            else
                peer_drop(p, PS_LOG_WARNING, "PEER-HANDSHAKE-TIMEOUT",
                          "handshake not finished in time");
        }
    }
    if (now >= cl.gossip_at) {
        gossip_peers();
        cl.gossip_at = now + cl.timeout_ns;
    }
    dial_tick(now);
    if (cl.accept_paused) {
        struct epoll_event ev = { .events = EPOLLIN };

        ev.data.ptr = &listen_tag;
        epoll_ctl(cl.epfd, EPOLL_CTL_MOD, cl.lfd, &ev);
        cl.accept_paused = 0;
    }
}

/* Close everything at the end of the thread. */
static void
io_teardown(void)
{
    while (cl.peers != NULL)
        peer_close(cl.peers, 0);
    reap_dead();
    while (cl.dials != NULL) {
        dial *d = cl.dials;

        cl.dials = d->next;
        free(d);
    }
}

static void *
io_main(void *arg)
{
    struct epoll_event evs[MAX_EVENTS];
    uint64_t step = cl.heartbeat_ns / 4, last_tick = 0;
    int ms;

    if (step > 100000000ull)
        step = 100000000ull;
    if (step < 5000000ull)
        step = 5000000ull;
    ms = (int)(step / 1000000);

    /* Dial the seeds now, not after the first wait: that would leave a
     * starting node alone for up to a whole step (100 ms). */
    last_tick = ps_now_ns();
    tick(last_tick);
    while (atomic_load(&cl.running)) {
        int n = epoll_wait(cl.epfd, evs, MAX_EVENTS, ms);
        uint64_t now;

        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;

            if (tag == &listen_tag)
                on_accept();
            else if (tag == &wake_tag)
                on_wake();
            else
                on_peer_event(tag, evs[i].events);
        }
        now = ps_now_ns();
        if (now - last_tick >= step) {
            tick(now);
            last_tick = now;
        }
        reap_dead();
    }
    io_teardown();
    return NULL;
}

/* ---- the registry's hook ---- */

/* Registry lock held: queue a DELTA to every peer receiving deltas. */
static void
on_local_change(void *arg, ps_registry *reg, const char *ch, uint32_t len,
                uint64_t mb_id, int delta)
{
    ps_wire_entry e;
    uint32_t slen;
    size_t body;
    int wake = 0;

    e.scope.p = (const uint8_t *)ps_registry_name(reg, &slen);
    e.scope.len = slen;
    e.channel = (ps_span){ (const uint8_t *)ch, len };
    e.id = mb_id;
    e.count = delta;
    body = 4 + ps_wire_entry_size(slen, len);

    for (peer *p = cl.peers; p != NULL; p = p->next) {
        uint8_t *out;

        if (!p->synced)
            continue;
        pthread_mutex_lock(&p->mu);
        out = queue_reserve(p, PS_WIRE_HDR + body, 1, &wake);
        if (out != NULL) {
            out = ps_wire_hdr_put(out, PS_FT_DELTA, (uint32_t)body);
            ps_wire_entry_put(ps_wire_put32(out, 1), &e);
        }
        pthread_mutex_unlock(&p->mu);
    }
    if (wake)
        wake_io();
}

/* ---- the broadcast path ---- */

int
ps_cluster_running(void)
{
    return atomic_load_explicit(&cl.running, memory_order_acquire);
}

size_t
ps_cluster_max_payload(void)
{
    size_t fixed = ps_wire_bcast_body(PS_MAX_CHANNEL, PS_MAX_CHANNEL, 0, 0);

    if (!ps_cluster_running())
        return 0;
    return cl.max_frame - fixed;
}

int
ps_cluster_broadcast(ps_registry *reg, const char *ch, size_t chlen,
                     uint64_t sender_id, const void *topic, size_t tlen,
                     int topic_is_bytes, const void *payload, size_t plen)
{
    ps_wire_bcast b;
    uint32_t slen;
    size_t body;
    ps_channel *c;
    int wake = 0, rc = 0;

    if (!ps_cluster_running())
        return PS_ENOPEER;
    b.scope.p = (const uint8_t *)ps_registry_name(reg, &slen);
    b.scope.len = slen;
    b.channel = (ps_span){ (const uint8_t *)ch, chlen };
    b.sender_id = sender_id;
    b.flags = topic_is_bytes ? PS_WIRE_TOPIC_BYTES : 0;
    b.topic = (ps_span){ topic, tlen };
    b.payload = (ps_span){ payload, plen };
    body = ps_wire_bcast_body(slen, chlen, tlen, plen);
    if (body == 0 || body > cl.max_frame)
        return PS_ETOOBIG;

    ps_registry_lock();
    c = ps_registry_find_remote(reg, ch, chlen);
    for (uint32_t i = 0; c != NULL && i < c->nrnodes; i++) {
        peer *p = c->rnodes[i].node->link;
        int queued = 0;
        uint8_t *out;

        if (p == NULL || !p->synced)
            continue;
        pthread_mutex_lock(&p->mu);
        out = queue_reserve(p, PS_WIRE_HDR + body, 1, &queued);
        if (out != NULL) {
            ps_wire_bcast_put(out, &b, body);
            if (send_direct(p, PS_WIRE_HDR + body))
                queued = 0;
        } else if (!atomic_load(&p->overflow)) {
            rc = PS_ENOMEM;
        }
        pthread_mutex_unlock(&p->mu);
        wake |= queued;
    }
    ps_registry_unlock();
    if (wake)
        wake_io();
    return rc;
}

int
ps_cluster_send(ps_node *node, uint64_t target_id, uint64_t sender_id,
                const void *topic, size_t tlen, int topic_is_bytes,
                const void *payload, size_t plen)
{
    ps_wire_send s;
    size_t body = ps_wire_send_body(tlen, plen);
    peer *p;
    uint8_t *out = NULL;
    int wake = 0;

    if (!ps_cluster_running())
        return PS_ENOPEER;
    if (body == 0 || body > cl.max_frame)
        return PS_ETOOBIG;
    s.target_id = target_id;
    s.target_inc = node->incarnation;
    s.sender_id = sender_id;
    s.flags = topic_is_bytes ? PS_WIRE_TOPIC_BYTES : 0;
    s.topic = (ps_span){ topic, tlen };
    s.payload = (ps_span){ payload, plen };

    ps_registry_lock();
    p = node->link;
    if (p != NULL && p->synced) {
        pthread_mutex_lock(&p->mu);
        out = queue_reserve(p, PS_WIRE_HDR + body, 1, &wake);
        if (out != NULL) {
            ps_wire_send_put(out, &s, body);
            if (send_direct(p, PS_WIRE_HDR + body))
                wake = 0;
        }
        pthread_mutex_unlock(&p->mu);
    }
    ps_registry_unlock();
    if (wake)
        wake_io();
    if (p == NULL || !out) {
        COUNT(nopeer_drops, 1);
        return PS_ENOPEER;
    }
    return 0;
}

/* ---- start and stop ---- */

static int
check_config(const ps_cluster_config *cfg)
{
    if (cfg->name_len == 0 || cfg->name_len > PS_MAX_NODENAME ||
        memchr(cfg->name, '\0', cfg->name_len) != NULL)
        return PS_EINVAL;
    if (cfg->cookie_len == 0 || cfg->cookie_len > sizeof cl.cookie)
        return PS_EINVAL;
    if (cfg->max_frame < PS_WIRE_MIN_FRAME ||
        cfg->max_frame > (1u << 30) || cfg->heartbeat_ns == 0 ||
        cfg->timeout_ns <= cfg->heartbeat_ns || cfg->max_queue == 0)
        return PS_EINVAL;
    return 0;
}

/* Bind and listen on the configured address; fills cl.lfd/cl.listen. */
static int
open_listener(const ps_cluster_config *cfg)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd, one = 1;

    if (addr_resolve(cfg->host, cfg->port, 0, &ss, &sl) != 0)
        return PS_EINVAL;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                0);
    if (fd < 0)
        return PS_ESYS;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* The deepest accept queue the system allows: a burst of
     * connections (a flood, or a whole cluster restarting) that
     * overflows it has its handshakes retried by the kernel seconds
     * later, honest dials among them. */
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 ||
        listen(fd, SOMAXCONN) != 0)
        goto fail;
    sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 ||
        addr_numeric((struct sockaddr *)&ss, sl, &cl.listen) != 0)
        goto fail;
    cl.lfd = fd;
    return 0;

fail:
    {
        int e = errno;

        close(fd);
        errno = e;
    }
    return PS_ESYS;
}

/*
 * The eventfd stays open for the life of the process: a thread that
 * queued a frame just as the node stopped may still write to it, and a
 * closed number could by then name another file.
 */
static void
close_fds(void)
{
    if (cl.lfd >= 0)
        close(cl.lfd);
    if (cl.epfd >= 0)
        close(cl.epfd);
    cl.lfd = cl.epfd = -1;
}

/* Resolve and enter the seeds in the dial list. */
static int
add_seeds(const ps_cluster_config *cfg)
{
    for (size_t i = 0; i < cfg->nseeds; i++) {
        ps_cluster_addr a;

        if (addr_canon(cfg->seeds[i].host, cfg->seeds[i].port, &a) != 0)
            return PS_EINVAL;
        if (dial_add(&a, 1) == NULL)
            return PS_ENOMEM;
    }
    return 0;
}

static void
take_settings(const ps_cluster_config *cfg)
{
    memcpy(cl.cookie, cfg->cookie, cfg->cookie_len);
    cl.cookie_len = cfg->cookie_len;
    cl.heartbeat_ns = cfg->heartbeat_ns;
    cl.timeout_ns = cfg->timeout_ns;
    cl.max_frame = cfg->max_frame;
    cl.max_queue = cfg->max_queue;
    cl.log = cfg->log;
    cl.log_arg = cfg->log_arg;
    memset(&stats, 0, sizeof stats);
}

int
ps_cluster_start(const ps_cluster_config *cfg)
{
    static const ps_registry_hooks hooks = { on_local_change, NULL };
    int rc;

    if (ps_cluster_running())
        return PS_EBUSY;
    pthread_once(&atfork_once, atfork_register);
    /* A child that starts a node of its own owns that node's sockets. */
    atomic_store(&forked_child, 0);
    if ((rc = check_config(cfg)) != 0)
        return rc;
    if (ps_node_init() != 0)
        return PS_ESYS;
    take_settings(cfg);
    if ((rc = open_listener(cfg)) != 0)
        return rc;
    cl.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (cl.wakefd < 0)
        cl.wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (cl.epfd < 0 || cl.wakefd < 0 ||
        ep_add(cl.lfd, &listen_tag, EPOLLIN) != 0 ||
        ep_add(cl.wakefd, &wake_tag, EPOLLIN) != 0) {
        rc = PS_ESYS;
        goto fail;
    }
    if ((rc = add_seeds(cfg)) != 0)
        goto fail;
    ps_node_set_local_name(cfg->name, cfg->name_len);

    ps_registry_set_hooks(&hooks);
    atomic_store(&cl.running, 1);
    if (pthread_create(&cl.thread, NULL, io_main, NULL) != 0) {
        atomic_store(&cl.running, 0);
        ps_registry_set_hooks(NULL);
        rc = PS_ESYS;
        goto fail;
    }
    report(PS_LOG_INFO, "NODE-STARTED", "node %.*s listening on %s:%u",
           (int)cfg->name_len, cfg->name, cl.listen.host, cl.listen.port);
    return 0;

fail:
    io_teardown();
    close_fds();
    return rc;
}

void
ps_cluster_stop(void)
{
    if (!ps_cluster_running())
        return;
    ps_registry_set_hooks(NULL);
    atomic_store(&cl.running, 0);
    wake_io();
    pthread_join(cl.thread, NULL);
    close_fds();
    pthread_mutex_lock(&cl.pending_mu);
    while (cl.pending != NULL) {
        dial *d = cl.pending;

        cl.pending = d->next;
        free(d);
    }
    pthread_mutex_unlock(&cl.pending_mu);
    report(PS_LOG_INFO, "NODE-STOPPED", "node stopped");
    OPENSSL_cleanse(cl.cookie, sizeof cl.cookie);
}

int
ps_cluster_listen_address(ps_cluster_addr *out)
{
    if (!ps_cluster_running())
        return PS_ENOPEER;
    *out = cl.listen;
    return 0;
}

int
ps_cluster_connect(const char *host, uint16_t port)
{
    dial *d;

    if (!ps_cluster_running())
        return PS_ENOPEER;
    d = calloc(1, sizeof *d);
    if (d == NULL)
        return PS_ENOMEM;
    if (addr_canon(host, port, &d->addr) != 0) {
        free(d);
        return PS_EINVAL;
    }
    pthread_mutex_lock(&cl.pending_mu);
    d->next = cl.pending;
    cl.pending = d;
    pthread_mutex_unlock(&cl.pending_mu);
    wake_io();
    return 0;
}

size_t
ps_cluster_nodes(ps_node **out, size_t max)
{
    size_t n = 0;

    ps_registry_lock();
    for (peer *p = cl.peers; p != NULL; p = p->next) {
        if (!p->synced)
            continue;
        if (n < max)
            out[n] = p->node;
        n++;
    }
    ps_registry_unlock();
    return n;
}

void
ps_cluster_stats_get(ps_cluster_stats *out)
{
#define PS_X_LOAD(name, doc) out->name = atomic_load(&stats.name);
    PS_CLUSTER_STATS(PS_X_LOAD)
#undef PS_X_LOAD
}
