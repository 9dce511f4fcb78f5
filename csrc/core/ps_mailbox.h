/*
 * ps_mailbox.h: a mailbox is the FIFO one consumer reads, with its
 * overflow policy and its wake-up descriptor.
 *
 * Two ways in, because they are guarded differently:
 *
 *  - the owner side (ps_mailbox_push, _pop, _close, ...) is for threads
 *    that hold the owner lock, which in the extension is the GIL.  It takes
 *    no lock of its own: a push is a store into a ring and a counter bump.
 *  - the remote side (ps_mailbox_push_remote) is for the cluster's I/O
 *    thread, which never holds the GIL.  It appends to a second ring under
 *    a spin lock; the owner splices that ring into its own when it reads.
 *
 * The wake-up descriptor (an eventfd) is made only when a consumer wants to
 * wait.  It is written only when a consumer has "armed" the mailbox, that
 * is, found it empty and decided to wait, so a busy consumer costs no
 * system call per message.
 */
#ifndef PS_MAILBOX_H
#define PS_MAILBOX_H

#include <stdatomic.h>
#include <stdint.h>

#include "ps_common.h"
#include "ps_msg.h"

typedef enum ps_overflow {
    PS_OVERFLOW_DROP_OLDEST = 0,
    PS_OVERFLOW_DROP_NEWEST = 1,
    PS_OVERFLOW_CLOSE = 2,
} ps_overflow;

typedef enum ps_mbstate {
    PS_MB_OPEN = 0,
    PS_MB_SLOW = 1,     /* overflowed under the "close" policy */
    PS_MB_CLOSED = 2,
} ps_mbstate;

struct ps_channel;

/* One membership of this mailbox, owned by the registry. */
typedef struct ps_mship {
    struct ps_channel *ch;
    uint32_t idx;               /* this mailbox's slot in ch->members */
} ps_mship;

/*
 * Release function for the owner's items (not remote ones): called with
 * the owner lock held, from the functions that say so.
 */
typedef void (*ps_release_fn)(void *item);

typedef struct ps_mailbox {
    /* Owner side. */
    void **ring;
    uint32_t ring_mask;         /* capacity - 1, ring is a power of two */
    uint32_t head;
    _Atomic uint32_t len;       /* read by the I/O thread for the bound */
    uint32_t until_splice;      /* pops left before the next splice */

    /* Remote side, under rlock. */
    atomic_flag rlock;
    void **rring;
    uint32_t rring_mask;
    uint32_t rhead;
    _Atomic uint32_t rlen;

    uint32_t capacity;          /* 0: unbounded */
    uint8_t policy;             /* ps_overflow */
    _Atomic uint8_t state;      /* ps_mbstate */
    _Atomic uint8_t armed;
    _Atomic uint8_t signaled;
    _Atomic int wakefd;         /* -1 until a consumer waits */
    _Atomic uint64_t dropped;
    uint64_t id;                /* unique on this node, never reused */

    /* Memberships, maintained by ps_registry (owner lock + registry). */
    ps_mship *mships;
    uint32_t nmships, cap_mships;
    uint32_t nmonitors;         /* watches of channels/scopes/nodes */
} ps_mailbox;

/*
 * Initialise an embedded mailbox.  capacity 0 means unbounded.  Draws a
 * fresh id.  Cannot fail; allocates nothing until the first push.
 */
void ps_mailbox_init(ps_mailbox *mb, uint32_t capacity, ps_overflow policy);

/*
 * Release every queued item (owner items through release), close the
 * wake descriptor.  The mailbox must have left the registry already.
 */
void ps_mailbox_fini(ps_mailbox *mb, ps_release_fn release);

/* Items queued on both sides; a racy but never-torn read. */
static inline uint32_t
ps_mailbox_len(const ps_mailbox *mb)
{
    return atomic_load_explicit(&mb->len, memory_order_relaxed) +
           atomic_load_explicit(&mb->rlen, memory_order_relaxed);
}

/*
 * Owner side.  Append item, taking over the caller's reference.
 *
 * Returns 0 when queued.  On overflow the policy decides:
 *   drop newest: returns PS_EFULL and *dropped = item (not queued);
 *   drop oldest: returns 0 and *dropped = the oldest item;
 *   close:       returns PS_ESLOW, *dropped = item, the mailbox is now in
 *                state PS_MB_SLOW; the caller must close it (after any
 *                fan-out in progress, since closing leaves channels).
 * Returns PS_ECLOSED (item not taken) on a mailbox that is not open, and
 * PS_ENOMEM (item not taken, counted as dropped, nothing else dropped)
 * when the ring cannot grow.
 * *dropped is set to NULL when nothing was dropped; the caller releases
 * what it gets back, outside any fan-out, since a release may run code.
 */
int ps_mailbox_push(ps_mailbox *mb, void *item, void **dropped);

/*
 * Owner side, the common case of ps_mailbox_push inlined: an open mailbox
 * under its bound with room in its ring.  Returns 1 when item was queued,
 * 0 when the caller must use ps_mailbox_push (nothing was done).
 */
static inline int
ps_mailbox_push_fast(ps_mailbox *mb, void *item)
{
    uint32_t len = atomic_load_explicit(&mb->len, memory_order_relaxed);

    if (mb->ring == NULL || len > mb->ring_mask || mb->capacity ||
        atomic_load_explicit(&mb->state, memory_order_relaxed) != PS_MB_OPEN
        || atomic_load_explicit(&mb->armed, memory_order_relaxed))
        return 0;
    mb->ring[(mb->head + len) & mb->ring_mask] = item;
    atomic_store_explicit(&mb->len, len + 1, memory_order_relaxed);
    return 1;
}

/*
 * Owner side.  Take the oldest item, or NULL when both sides are empty.
 * The caller owns the returned reference.
 */
void *ps_mailbox_pop(ps_mailbox *mb);

/*
 * Remote side, for the I/O thread.  Queue one reference to m (the caller's
 * reference stays the caller's).  Returns 0, PS_EFULL (dropped, counted),
 * PS_ESLOW (dropped, the mailbox turned slow and its consumer is woken),
 * PS_ECLOSED or PS_ENOMEM (not queued, counted as dropped).
 */
int ps_mailbox_push_remote(ps_mailbox *mb, ps_rmsg *m);

/*
 * Owner side.  Mark the mailbox closed, wake any waiter, and return the
 * state it had (PS_MB_OPEN, PS_MB_SLOW or PS_MB_CLOSED).  Queued items stay
 * until ps_mailbox_fini or ps_mailbox_drain.
 */
int ps_mailbox_close(ps_mailbox *mb);

/* Owner side.  Release every queued item, leaving the mailbox empty. */
void ps_mailbox_drain(ps_mailbox *mb, ps_release_fn release);

/*
 * Owner side.  The wake descriptor, made on first call.  Returns the fd,
 * or PS_ESYS when eventfd() failed (errno says why).
 */
int ps_mailbox_fileno(ps_mailbox *mb);

/*
 * Owner side.  Get ready to wait: clear a pending wake-up, arm the
 * mailbox, then look again.  Returns 1 when it is safe to sleep on the
 * descriptor (empty and armed), 0 when something is queued or the mailbox
 * is not open (do not sleep), PS_ESYS when the descriptor cannot be made.
 */
int ps_mailbox_prepare_wait(ps_mailbox *mb);

/* Any thread.  Consume the wake-up descriptor's count, if any. */
void ps_mailbox_clear_wake(ps_mailbox *mb);

#endif
