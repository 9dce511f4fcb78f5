/*
 * ps_msg.h: node identities and the messages that arrive from other nodes.
 *
 * A node is named by (name, incarnation).  Node records are interned in
 * one table under their own mutex and never freed, so a ps_node pointer
 * stays valid for the life of the process; pids hold them without a
 * reference count.  A process meets at most a few records per peer
 * restart, so the table's growth is bounded by the cluster's history.
 *
 * A ps_rmsg is one message from another node, in its encoded form, shared
 * by every local mailbox it is delivered to.  Its count is atomic because
 * the I/O thread creates and drops references without the GIL; the
 * consumer decodes it when it is received.  Local messages never take this
 * path: they are the glue's own objects, counted by the GIL.
 */
#ifndef PS_MSG_H
#define PS_MSG_H

#include <stdatomic.h>
#include <stdint.h>

#include "ps_common.h"

#define PS_MAX_NODENAME 255

typedef struct ps_node {
    struct ps_node *next;       /* next in the intern table */
    uint64_t incarnation;
    void *link;                 /* the cluster's peer; registry lock */
    uint16_t name_len;
    char name[PS_MAX_NODENAME + 1];
} ps_node;

/*
 * The record of this process.  Until a cluster is started its name is
 * "nonode"; its incarnation is drawn at first use and never changes.
 * Never NULL after ps_node_init() succeeded.
 */
ps_node *ps_node_local(void);

/* Draw the local incarnation.  0, or PS_ESYS when no randomness. */
int ps_node_init(void);

/* Rename the local node (cluster start).  0 or PS_EINVAL (bad length). */
int ps_node_set_local_name(const char *name, size_t len);

/*
 * The record for (name, incarnation), created on first use.  Returns NULL
 * when out of memory or the name is longer than PS_MAX_NODENAME.
 */
ps_node *ps_node_intern(const char *name, size_t len, uint64_t incarnation);

/* What a ps_rmsg carries, in flags. */
enum {
    PS_RMSG_DIRECT = 1 << 0,    /* sent to one pid: no channel */
    PS_RMSG_TOPIC_BYTES = 1 << 1, /* topic is bytes, not UTF-8 str */
    PS_RMSG_EVENT = 1 << 2,     /* membership/node event made by the core */
};

typedef struct ps_rmsg {
    _Atomic uint32_t refcnt;
    uint32_t flags;
    ps_node *sender_node;       /* NULL: the sender is None */
    uint64_t sender_id;
    uint32_t channel_len, topic_len, payload_len;
    const uint8_t *channel;     /* all three point into data[] */
    const uint8_t *topic;
    const uint8_t *payload;
    uint8_t data[];
} ps_rmsg;

/*
 * A new message with one reference, copying the three byte strings.
 * Returns NULL when out of memory.  Safe without the GIL.
 */
ps_rmsg *ps_rmsg_new(uint32_t flags, ps_node *sender_node,
                     uint64_t sender_id,
                     const void *channel, uint32_t channel_len,
                     const void *topic, uint32_t topic_len,
                     const void *payload, uint32_t payload_len);

static inline void
ps_rmsg_incref(ps_rmsg *m)
{
    atomic_fetch_add_explicit(&m->refcnt, 1, memory_order_relaxed);
}

/* Drop one reference; frees the message with the last. */
void ps_rmsg_decref(ps_rmsg *m);

/*
 * Messages made by ps_rmsg_new and not freed yet, in the whole process.
 * For statistics and leak tests; any thread.
 */
uint64_t ps_rmsg_live(void);

/*
 * Mailbox items are opaque pointers.  A remote message is stored with the
 * low bit set, so the mailbox can release it without calling the glue;
 * every other item belongs to the glue.  malloc'd and Python objects are
 * at least 8-byte aligned, so the bit is free.
 */
#define PS_ITEM_REMOTE ((uintptr_t)1)

static inline void *
ps_item_from_rmsg(ps_rmsg *m)
{
    return (void *)((uintptr_t)m | PS_ITEM_REMOTE);
}

static inline ps_rmsg *
ps_item_rmsg(void *item)
{
    uintptr_t v = (uintptr_t)item;

    return (v & PS_ITEM_REMOTE) ? (ps_rmsg *)(v & ~PS_ITEM_REMOTE) : NULL;
}

#endif
