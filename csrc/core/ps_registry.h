/*
 * ps_registry.h: channels and their members, per scope.
 *
 * A scope (ps_registry) has two tables of channels:
 *
 *  - the local table: this node's members (mailboxes, one entry per join)
 *    and the mailboxes watching the channel.  Written by the owner (GIL
 *    holder) with the registry lock held; read by the owner without the
 *    lock (the GIL orders it against every writer) and by the I/O thread
 *    with the lock.
 *  - the remote table: other nodes' members as (node, id, count).  Written
 *    by the I/O thread, read by anyone, always under the registry lock.
 *
 * Memberships are indexed both ways: a channel lists its members and a
 * mailbox lists its memberships (ps_mship), each entry knowing the other's
 * slot, so a leave or a close costs no scan of a channel.  A channel whose
 * last member and watcher leave is freed at once: dynamic names leave
 * nothing behind.
 *
 * Scopes are found through a hash table of their names and live while
 * something uses them: a holder (the glue's Scope objects, counted with
 * ps_registry_scope_acquire/release), a local or remote channel, or a
 * watcher of the whole scope.  The default scope is permanent.  A scope
 * that loses its last use is freed at once, under the registry lock, so
 * names chosen by remote peers or by the app leave nothing behind.  The
 * scope table is read and written only under the registry lock; a
 * ps_registry pointer stays valid without the lock only while its user
 * holds a reference (or the scope is the default one).
 *
 * One mutex (the registry lock) serves every scope.  Lock order: registry
 * lock, then the cluster's peer locks, then a mailbox's remote spin lock.
 */
#ifndef PS_REGISTRY_H
#define PS_REGISTRY_H

#include <stdint.h>

#include "ps_common.h"
#include "ps_mailbox.h"
#include "ps_msg.h"

typedef struct ps_registry ps_registry;

typedef struct ps_member {
    ps_mailbox *mb;
    uint32_t back;              /* slot in mb->mships */
} ps_member;

typedef struct ps_rmember {
    ps_node *node;              /* NULL: a free slot */
    uint64_t id;
    uint32_t count;             /* joins of that pid */
} ps_rmember;

typedef struct ps_rnode {
    ps_node *node;
    uint64_t count;             /* sum of its pids' join counts */
} ps_rnode;

/* A link in one of the registry's hash tables (channels, scopes). */
typedef struct ps_hlink {
    struct ps_hlink *next;      /* hash chain */
    uint64_t hash;
} ps_hlink;

typedef struct ps_channel {
    ps_hlink link;              /* first: the tables cast it back */
    ps_registry *reg;
    ps_member *members;         /* local table: one entry per join */
    uint32_t n, cap;
    ps_mailbox **watchers;      /* local table: monitors of the channel */
    uint32_t nwatch, capwatch;
    ps_rmember *rmembers;       /* remote table: open-addressed by pid */
    uint32_t rn, rcap;          /* pids present, slots (power of two) */
    ps_rnode *rnodes;           /* remote table: nodes with members */
    uint32_t nrnodes, caprnodes;
    uint32_t name_len;
    char name[];
} ps_channel;

/*
 * What a delivery leaves for its caller to finish once no member array is
 * being walked: items dropped by full mailboxes (owner items must be
 * released by the glue, since that may run code) and mailboxes that turned
 * slow and must be closed.  Zero-initialise; ps_fanout_fini frees arrays.
 */
/*
 * What a fan-out leaves to finish once the lock is released.  The first
 * few entries live in the bag itself: a broadcast to bounded mailboxes
 * reserves room before every push, and must not pay an allocation for
 * it.  Used in place (never copied), and ps_fanout_fini'd.
 */
#define PS_FANOUT_INLINE 4

typedef struct ps_fanout {
    void **dropped;
    uint32_t ndropped, capdropped;
    ps_mailbox **slow;
    uint32_t nslow, capslow;
    void *dropped_inline[PS_FANOUT_INLINE];
    ps_mailbox *slow_inline[PS_FANOUT_INLINE];
} ps_fanout;

void ps_fanout_fini(ps_fanout *f);

/*
 * Record what ps_mailbox_push handed back: a dropped item, and the
 * mailbox when the push returned PS_ESLOW.  0 or PS_ENOMEM (then the
 * caller must finish that one at once).
 */
int ps_fanout_add_dropped(ps_fanout *f, void *item);
int ps_fanout_add_slow(ps_fanout *f, ps_mailbox *mb);

/*
 * Make room for one more dropped item and one more slow mailbox, so that
 * the next ps_fanout_add_dropped and ps_fanout_add_slow cannot fail.  Call
 * it before pushing to a bounded mailbox: what a push hands back must
 * never be released in the middle of a walk.  0 or PS_ENOMEM.
 */
int ps_fanout_reserve(ps_fanout *f);

/* Hooks the cluster installs; called with the registry lock held. */
typedef struct ps_registry_hooks {
    /* A local membership changed by delta (+1 join, -1 leave). */
    void (*local_change)(void *arg, ps_registry *reg, const char *ch,
                         uint32_t len, uint64_t mb_id, int delta);
    void *arg;
} ps_registry_hooks;

/* The lock every writer and the I/O thread take. */
void ps_registry_lock(void);
void ps_registry_unlock(void);

/* Install (or with NULL remove) the cluster's hooks.  Takes the lock. */
void ps_registry_set_hooks(const ps_registry_hooks *hooks);

/* The name of the default scope, which is never freed. */
#define PS_DEFAULT_SCOPE "default"

/*
 * The scope named name, made on first use, with one more reference held
 * by the caller, who must give it back with ps_registry_scope_release.
 * NULL when out of memory or the name is longer than PS_MAX_CHANNEL.
 * Both take the lock.
 */
ps_registry *ps_registry_scope_acquire(const char *name, size_t len);
void ps_registry_scope_release(ps_registry *reg);

/*
 * Lock held: the scope named name, or NULL.  With create set, a missing
 * scope is made; a scope made so is unused, and only
 * ps_registry_remote_change may be called on it (that frees it again when
 * it stays empty).  The result is valid until the lock is released.
 */
ps_registry *ps_registry_scope_find(const char *name, size_t len,
                                    int create);

/* The scope's name (not NUL-terminated) and its length. */
const char *ps_registry_name(const ps_registry *reg, uint32_t *len);

/*
 * Owner side: enter a new mailbox in the pid table (so ps_registry_mailbox
 * finds it) / remove it, leaving every channel and watch on the way.
 * add: 0 or PS_ENOMEM.  remove: events to watchers go through f.
 */
int ps_registry_add_mailbox(ps_mailbox *mb);
void ps_registry_remove_mailbox(ps_mailbox *mb, ps_fanout *f);

/* The live mailbox with that id, or NULL.  Owner, or lock held. */
ps_mailbox *ps_registry_mailbox(uint64_t id);

/*
 * Owner side: one more membership of mb in channel.  0, PS_ENOMEM or
 * PS_ENAMETOOLONG.  Watchers' events go through f.
 */
int ps_registry_join(ps_registry *reg, const char *ch, size_t len,
                     ps_mailbox *mb, ps_fanout *f);

/* Owner side: one membership fewer.  0, or PS_ENOTJOINED. */
int ps_registry_leave(ps_registry *reg, const char *ch, size_t len,
                      ps_mailbox *mb, ps_fanout *f);

/*
 * Bumped (owner side) whenever a local channel is made or freed, so a
 * caller may cache a ps_registry_find result until it changes.
 */
extern uint64_t ps_registry_generation;

/* Owner (lock-free) or lock held: the local channel, or NULL. */
ps_channel *ps_registry_find(ps_registry *reg, const char *ch, size_t len);

/* Lock held: the remote entry of the channel, or NULL. */
ps_channel *ps_registry_find_remote(ps_registry *reg, const char *ch,
                                    size_t len);

/*
 * Owner side: watch a channel (ch != NULL) or the whole scope (ch == NULL)
 * for joins and leaves; unwatch returns PS_ENOTJOINED when mb was not
 * watching.  0 or PS_ENOMEM/PS_ENAMETOOLONG.
 */
int ps_registry_watch(ps_registry *reg, const char *ch, size_t len,
                      ps_mailbox *mb);
int ps_registry_unwatch(ps_registry *reg, const char *ch, size_t len,
                        ps_mailbox *mb);

/*
 * Lock held: call fn for every channel of the scope that has a member,
 * local or remote, once per name.  Stops early when fn returns non-zero
 * and returns that value.
 */
int ps_registry_foreach_name(ps_registry *reg,
                             int (*fn)(void *arg, const char *ch,
                                       uint32_t len),
                             void *arg);

/*
 * Lock held: call fn once per local join, every channel of every scope,
 * with count 1; entries for the same pid and channel add up.  For the
 * full exchange on connect.
 */
int ps_registry_foreach_local(int (*fn)(void *arg, ps_registry *reg,
                                        const char *ch, uint32_t len,
                                        uint64_t id, uint32_t count),
                              void *arg);

/*
 * Lock held, I/O thread: change a remote pid's join count by delta (the
 * count never goes below 0).  Watchers get events through their remote
 * side.  0, PS_ENOMEM or PS_ENAMETOOLONG.  May free reg when it is left
 * unused: the caller must not touch reg afterwards unless it holds a
 * reference.
 */
int ps_registry_remote_change(ps_registry *reg, const char *ch, size_t len,
                              ps_node *node, uint64_t id, int32_t delta);

/* Lock held: forget every membership of node, in every scope (freeing
 * the scopes left unused). */
void ps_registry_remote_drop_node(ps_node *node);

/*
 * Lock held: the distinct nodes with members of the channel, at most max
 * of them, into out.  Returns how many.
 */
uint32_t ps_registry_remote_nodes(ps_registry *reg, const char *ch,
                                  size_t len, ps_node **out, uint32_t max);

/*
 * Lock held, I/O thread: deliver m to every member of local channel c
 * (found with ps_registry_find; NULL delivers nothing) through their
 * remote side.  Returns how many received it.
 */
uint32_t ps_registry_deliver_remote(ps_channel *c, ps_rmsg *m);

/*
 * Owner side: watch node up/down events (ps_registry_node_event) / stop.
 * watch: 0 or PS_ENOMEM; unwatch: 0 or PS_ENOTJOINED.
 */
int ps_registry_watch_nodes(ps_mailbox *mb);
int ps_registry_unwatch_nodes(ps_mailbox *mb);

/*
 * Lock held, I/O thread: tell every node watcher that node came up (up=1)
 * or went down (up=0).  The event is a ps_rmsg with PS_RMSG_EVENT, topic
 * "nodeup" or "nodedown", no channel, sender_node = node, sender_id 0.
 */
void ps_registry_node_event(ps_node *node, int up);

/* Statistics: channels in the local and remote tables of every scope;
 * scopes.  Take the lock. */
uint64_t ps_registry_channel_count(void);
uint64_t ps_registry_scope_count(void);

/* Statistics: mailboxes in the pid table (open, not yet removed). */
uint64_t ps_registry_mailbox_count(void);

#endif
