/*
 * ps_cluster.h: the cluster transport: a listener, one link per other
 * node, the cookie handshake, heartbeats and membership exchange, all
 * driven by one I/O thread that never takes the GIL.
 *
 * The broadcast path (ps_cluster_broadcast, ps_cluster_send) and the
 * registry's local_change hook append frames to a peer's output queue
 * under that peer's mutex, with the registry lock held; the I/O thread is
 * woken only when a queue goes from empty to non-empty and writes a whole
 * queue with one write().  A message to a link that is idle (nothing
 * queued, nothing written for a while) is instead written at once by the
 * thread that sends it, within the same locks; the I/O thread finishes
 * what such a write leaves.  Lock order: registry lock, then a peer's
 * mutex.  The core reports what happens through one log hook.
 */
#ifndef PS_CLUSTER_H
#define PS_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "ps_msg.h"
#include "ps_registry.h"

/* Levels of the log hook: the same numbers as Python's logging. */
enum {
    PS_LOG_DEBUG = 10,
    PS_LOG_INFO = 20,
    PS_LOG_WARNING = 30,
    PS_LOG_ERROR = 40,
};

/*
 * The log hook: level, a stable id ("PEER-BAD-COOKIE") and a one-line
 * message.  Called from the I/O thread and from ps_cluster_start's
 * caller, never with the registry lock held; it must not block on the
 * GIL.  msg is valid only during the call.
 */
typedef void (*ps_cluster_log_fn)(void *arg, int level, const char *id,
                                  const char *msg);

#define PS_CLUSTER_HOSTLEN 64

/* A numeric address; host is NUL-terminated. */
typedef struct ps_cluster_addr {
    char host[PS_CLUSTER_HOSTLEN];
    uint16_t port;
} ps_cluster_addr;

typedef struct ps_cluster_config {
    const char *name;           /* 1..PS_MAX_NODENAME bytes */
    size_t name_len;
    const char *host;           /* listen address, resolved at start */
    uint16_t port;              /* 0: any free port */
    const uint8_t *cookie;      /* at least one byte; copied */
    size_t cookie_len;
    const ps_cluster_addr *seeds;
    size_t nseeds;              /* seeds are resolved at start */
    uint64_t heartbeat_ns;      /* idle interval between heartbeats */
    uint64_t timeout_ns;        /* silence, or a stall in reading what
                                   we send, that drops a peer;
                                   handshakes must finish within it */
    uint32_t max_frame;         /* body limit; must match the peers' */
    size_t max_queue;           /* bytes queued to one peer, at most */
    ps_cluster_log_fn log;      /* may be NULL */
    void *log_arg;
} ps_cluster_config;

/*
 * Start the node: rename the local node, bind and listen (in the caller's
 * thread, so a busy port is reported here), install the registry hooks
 * and start the I/O thread.  Returns 0, PS_EBUSY (already running),
 * PS_EINVAL (a bad setting or address), PS_ESYS (errno says why) or
 * PS_ENOMEM.  Nothing is left behind on failure.
 */
int ps_cluster_start(const ps_cluster_config *cfg);

/*
 * Stop the node: remove the hooks, stop and join the I/O thread, close
 * every socket and forget every remote member (watchers get their leave
 * and nodedown events).  Blocks until the thread is gone; the caller must
 * not hold the registry lock (the glue releases the GIL around it).  A
 * no-op when not running.
 */
void ps_cluster_stop(void);

/* Non-zero while a node is started.  An atomic load. */
int ps_cluster_running(void);

/* The largest encoded payload one frame can carry (0: not running). */
size_t ps_cluster_max_payload(void);

/* The bound listen address.  0, or PS_ENOPEER when not running. */
int ps_cluster_listen_address(ps_cluster_addr *out);

/*
 * Ask the I/O thread to dial host:port and to keep redialling it with
 * backoff, like a seed.  The host is resolved here.  0, PS_ENOPEER (not
 * running), PS_EINVAL (unresolvable) or PS_ENOMEM.
 */
int ps_cluster_connect(const char *host, uint16_t port);

/*
 * The nodes with an established link, at most max of them, into out.
 * Returns how many there are in all (may exceed max).  Node records are
 * never freed, so the pointers stay valid.  Takes the registry lock.
 */
size_t ps_cluster_nodes(ps_node **out, size_t max);

/*
 * Queue one broadcast frame to every connected node with members of the
 * channel.  Takes the registry lock.  sender_id 0: no sender.
 * 0, PS_ETOOBIG (the frame would exceed max_frame; nothing queued) or
 * PS_ENOMEM.
 */
int ps_cluster_broadcast(ps_registry *reg, const char *ch, size_t chlen,
                         uint64_t sender_id, const void *topic, size_t tlen,
                         int topic_is_bytes, const void *payload,
                         size_t plen);

/*
 * Queue a direct message to pid (node, target_id).  0, PS_ENOPEER (not
 * connected or a past incarnation: dropped and counted), PS_ETOOBIG.
 */
int ps_cluster_send(ps_node *node, uint64_t target_id, uint64_t sender_id,
                    const void *topic, size_t tlen, int topic_is_bytes,
                    const void *payload, size_t plen);

/* Counters since the last start; each is read atomically. */
#define PS_CLUSTER_STATS(X)                                                 \
    X(frames_in, "frames received from established peers")               \
    X(frames_out, "frames queued to established peers")                  \
    X(bytes_in, "bytes read from every connection")                      \
    X(bytes_out, "bytes written to every connection")                    \
    X(reads, "read() calls that returned data")                          \
    X(writes, "send() calls that wrote data (frames are coalesced)")     \
    X(direct_writes, "of those, made by the sender on an idle link")    \
    X(links_up, "links established")                                     \
    X(links_dropped, "established links lost, for any reason")           \
    X(bad_handshakes, "connections closed before authenticating")        \
    X(bad_frames, "connections closed for a malformed frame")            \
    X(timeouts, "links dropped for silence or for not reading")          \
    X(queue_overflows, "links dropped because their queue was full")     \
    X(stale_drops, "direct messages for a past incarnation, dropped")    \
    X(dead_drops, "direct messages for a dead local pid, dropped")       \
    X(nopeer_drops, "direct messages to an unconnected node, dropped")   \
    X(dials, "outgoing connection attempts")

typedef struct ps_cluster_stats {
#define PS_X_FIELD(name, doc) uint64_t name;
    PS_CLUSTER_STATS(PS_X_FIELD)
#undef PS_X_FIELD
} ps_cluster_stats;

/* A snapshot of the counters.  Any thread. */
void ps_cluster_stats_get(ps_cluster_stats *out);

#endif
