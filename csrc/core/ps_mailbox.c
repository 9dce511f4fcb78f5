/*
 * ps_mailbox.c: the owner ring, the remote ring and the wake-up protocol.
 *
 * Lock-free for the owner: its ring and head are touched only under the
 * owner lock (the GIL).  len is atomic only so that the I/O thread can read
 * it when it checks the bound.  The remote ring is guarded by rlock, a spin
 * lock held for a few stores; the owner takes it only when rlen says there
 * is something to splice.
 *
 * Wake-up: a consumer that wants to sleep sets armed and then looks at both
 * lengths again; a pusher stores its item and then looks at armed.  With a
 * sequentially consistent fence on both sides at least one of them sees
 * the other, so a wake-up is never lost.  Owner pushers are ordered with
 * the consumer by the GIL and need no fence.
 */
#include "ps_mailbox.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static _Atomic uint64_t next_id = 1;

/* Rings stay small when idle: a drained ring above this size is freed. */
#define RING_KEEP 256

void
ps_mailbox_init(ps_mailbox *mb, uint32_t capacity, ps_overflow policy)
{
    memset(mb, 0, sizeof *mb);
    atomic_flag_clear(&mb->rlock);
    atomic_init(&mb->wakefd, -1);
    mb->capacity = capacity;
    mb->policy = (uint8_t)policy;
    mb->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
}

static void
spin_lock(ps_mailbox *mb)
{
    unsigned spins = 0;

    while (atomic_flag_test_and_set_explicit(&mb->rlock,
                                             memory_order_acquire)) {
        if (++spins > 64)
            sched_yield();
    }
}

static void
spin_unlock(ps_mailbox *mb)
{
    atomic_flag_clear_explicit(&mb->rlock, memory_order_release);
}

/*
 * Grow a ring (items in [head, head+len)) to twice its size, unwrapping it
 * so the items start at 0.  0 or PS_ENOMEM (the old ring is kept).
 */
static int
ring_grow(void ***ring, uint32_t *mask, uint32_t *head, uint32_t len)
{
    uint32_t size = *ring ? *mask + 1 : 0;
    uint32_t nsize = size ? size * 2 : 8;
    void **nring;

    if (nsize == 0)
        return PS_ENOMEM;
    nring = malloc(sizeof(void *) * nsize);
    if (nring == NULL)
        return PS_ENOMEM;
    for (uint32_t i = 0; i < len; i++)
        nring[i] = (*ring)[(*head + i) & *mask];
    free(*ring);
    *ring = nring;
    *mask = nsize - 1;
    *head = 0;
    return 0;
}

static void
wake(ps_mailbox *mb)
{
    int fd = atomic_load(&mb->wakefd);
    uint64_t one = 1;

    if (fd < 0)
        return;
    /* EAGAIN means the counter is already non-zero: the waiter will see
     * it.  Nothing else can fail on an eventfd we own. */
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
    /* Only after the write: ps_mailbox_clear_wake stores 0 and then
     * reads, so a count on the descriptor always has signaled set
     * behind it, or was consumed by that read.  Set before the write, a
     * clear between the two left the count with signaled at 0, and
     * prepare_wait, which reads only when signaled says so, never took
     * it: a blocking recv (which leaves the count for prepare_wait)
     * found the descriptor readable on every wait, and spun. */
    atomic_store(&mb->signaled, 1);
}

static inline void
wake_if_armed(ps_mailbox *mb)
{
    if (atomic_load_explicit(&mb->armed, memory_order_relaxed) &&
        atomic_exchange(&mb->armed, 0))
        wake(mb);
}

static void
count_drop(ps_mailbox *mb)
{
    atomic_fetch_add_explicit(&mb->dropped, 1, memory_order_relaxed);
}

/* Remove and return the oldest item of a ring holding *len > 0 items. */
static inline void *
ring_pop(void **ring, uint32_t *head, uint32_t mask, _Atomic uint32_t *len)
{
    void *item = ring[*head];

    *head = (*head + 1) & mask;
    atomic_store_explicit(len, atomic_load_explicit(len,
                          memory_order_relaxed) - 1, memory_order_relaxed);
    return item;
}

/* Owner: the oldest owner-ring item; len must be > 0. */
static void *
take_front(ps_mailbox *mb)
{
    return ring_pop(mb->ring, &mb->head, mb->ring_mask, &mb->len);
}

/* Remote ring: the oldest item; rlock held, rlen > 0. */
static void *
rtake_front(ps_mailbox *mb)
{
    return ring_pop(mb->rring, &mb->rhead, mb->rring_mask, &mb->rlen);
}

int
ps_mailbox_push(ps_mailbox *mb, void *item, void **dropped)
{
    uint32_t len = atomic_load_explicit(&mb->len, memory_order_relaxed);

    *dropped = NULL;
    if (atomic_load_explicit(&mb->state, memory_order_relaxed) != PS_MB_OPEN)
        return PS_ECLOSED;

    if (mb->capacity &&
        len + atomic_load_explicit(&mb->rlen, memory_order_relaxed)
            >= mb->capacity) {
        count_drop(mb);
        switch (mb->policy) {
        case PS_OVERFLOW_DROP_NEWEST:
            *dropped = item;
            return PS_EFULL;
        case PS_OVERFLOW_CLOSE:
            atomic_store(&mb->state, PS_MB_SLOW);
            *dropped = item;
            return PS_ESLOW;
        default:
            if (len > 0) {
                *dropped = take_front(mb);
                len--;
            } else {
                /* The backlog is all remote: drop its oldest, once the
                 * owner ring has room, so that what was dropped for the
                 * new item is never followed by a failure to store it. */
                if (mb->ring == NULL &&
                    ring_grow(&mb->ring, &mb->ring_mask, &mb->head, 0))
                    return PS_ENOMEM;
                spin_lock(mb);
                if (atomic_load_explicit(&mb->rlen, memory_order_relaxed))
                    *dropped = rtake_front(mb);
                spin_unlock(mb);
            }
        }
    }

    /* Not reached after a drop: that left a free slot. */
    if ((mb->ring == NULL || len > mb->ring_mask) &&
        ring_grow(&mb->ring, &mb->ring_mask, &mb->head, len) != 0) {
        count_drop(mb);
        return PS_ENOMEM;
    }

    mb->ring[(mb->head + len) & mb->ring_mask] = item;
    atomic_store_explicit(&mb->len, len + 1, memory_order_relaxed);
    wake_if_armed(mb);
    return 0;
}

/*
 * Owner: move the remote ring behind the owner ring.  An empty owner ring
 * (the usual case when the remote side is busy) trades places with the
 * remote ring: a pointer swap under the lock however long the backlog.
 */
static void
splice_remote(ps_mailbox *mb)
{
    uint32_t len = atomic_load_explicit(&mb->len, memory_order_relaxed);

    spin_lock(mb);
    if (len == 0) {
        void **ring = mb->ring;
        uint32_t mask = mb->ring_mask;

        len = atomic_load_explicit(&mb->rlen, memory_order_relaxed);
        mb->ring = mb->rring;
        mb->ring_mask = mb->rring_mask;
        mb->head = mb->rhead;
        mb->rring = ring;
        mb->rring_mask = ring ? mask : 0;
        mb->rhead = 0;
        atomic_store_explicit(&mb->rlen, 0, memory_order_relaxed);
    }
    while (atomic_load_explicit(&mb->rlen, memory_order_relaxed) > 0) {
        if ((mb->ring == NULL || len > mb->ring_mask) &&
            ring_grow(&mb->ring, &mb->ring_mask, &mb->head, len) != 0)
            break;  /* out of memory: they stay on the remote side */
        mb->ring[(mb->head + len) & mb->ring_mask] = rtake_front(mb);
        len++;
    }
    spin_unlock(mb);
    atomic_store_explicit(&mb->len, len, memory_order_relaxed);
    mb->until_splice = len;
}

/*
 * The remote ring is spliced in when the owner ring is empty, or once the
 * owner has popped everything that was queued at the previous splice:
 * remote items wait behind at most one owner ring's worth of local ones
 * (there is no order between senders to keep, only fairness), and a
 * consumer draining a remote backlog takes the lock once per backlog
 * instead of once per message while the I/O thread keeps pushing.
 */
void *
ps_mailbox_pop(ps_mailbox *mb)
{
    void *item;
    uint32_t len = atomic_load_explicit(&mb->len, memory_order_relaxed);

    if ((len == 0 || mb->until_splice == 0) &&
        atomic_load_explicit(&mb->rlen, memory_order_relaxed) > 0) {
        splice_remote(mb);
        len = atomic_load_explicit(&mb->len, memory_order_relaxed);
    }
    if (len == 0)
        return NULL;

    item = take_front(mb);
    if (mb->until_splice > 0)
        mb->until_splice--;
    /* A drained ring above RING_KEEP is freed so idle mailboxes stay
     * small, unless remote items are already waiting: the next splice
     * hands it to the remote side instead of growing one from nothing. */
    if (len == 1 && mb->ring_mask >= RING_KEEP &&
        atomic_load_explicit(&mb->rlen, memory_order_relaxed) == 0) {
        free(mb->ring);
        mb->ring = NULL;
        mb->ring_mask = 0;
        mb->head = 0;
    }
    return item;
}

int
ps_mailbox_push_remote(ps_mailbox *mb, ps_rmsg *m)
{
    void *dropped = NULL;
    uint32_t rlen;
    int rc = 0;

    spin_lock(mb);
    if (atomic_load_explicit(&mb->state, memory_order_relaxed)
            != PS_MB_OPEN) {
        spin_unlock(mb);
        return PS_ECLOSED;
    }
    rlen = atomic_load_explicit(&mb->rlen, memory_order_relaxed);

    if (mb->capacity &&
        atomic_load_explicit(&mb->len, memory_order_relaxed) + rlen
            >= mb->capacity) {
        count_drop(mb);
        if (mb->policy == PS_OVERFLOW_CLOSE) {
            atomic_store(&mb->state, PS_MB_SLOW);
            spin_unlock(mb);
            wake(mb);
            return PS_ESLOW;
        }
        if (mb->policy == PS_OVERFLOW_DROP_NEWEST || rlen == 0) {
            /* Drop-oldest with an all-local backlog also lands here: the
             * owner ring is not ours to touch without the GIL. */
            spin_unlock(mb);
            return PS_EFULL;
        }
        dropped = rtake_front(mb);
        rlen--;
    }

    if ((mb->rring == NULL || rlen > mb->rring_mask) &&
        ring_grow(&mb->rring, &mb->rring_mask, &mb->rhead, rlen) != 0) {
        rc = PS_ENOMEM;
        count_drop(mb);
    } else {
        ps_rmsg_incref(m);
        mb->rring[(mb->rhead + rlen) & mb->rring_mask] =
            ps_item_from_rmsg(m);
        atomic_store_explicit(&mb->rlen, rlen + 1, memory_order_release);
    }
    spin_unlock(mb);

    if (dropped)
        ps_rmsg_decref(ps_item_rmsg(dropped));
    atomic_thread_fence(memory_order_seq_cst);
    if (rc == 0 && atomic_load(&mb->armed) && atomic_exchange(&mb->armed, 0))
        wake(mb);
    return rc;
}

int
ps_mailbox_close(ps_mailbox *mb)
{
    int old;

    spin_lock(mb);
    old = atomic_exchange(&mb->state, PS_MB_CLOSED);
    spin_unlock(mb);
    if (old != PS_MB_CLOSED)
        wake(mb);
    return old;
}

static void
release_item(void *item, ps_release_fn release)
{
    ps_rmsg *m = ps_item_rmsg(item);

    if (m)
        ps_rmsg_decref(m);
    else
        release(item);
}

void
ps_mailbox_drain(ps_mailbox *mb, ps_release_fn release)
{
    void **ring, **rring;
    uint32_t head, mask, len, rhead, rmask, rlen;

    /* Detach both rings first: a release may run code that looks at this
     * mailbox, and it must find it empty and consistent. */
    spin_lock(mb);
    rring = mb->rring;
    rhead = mb->rhead;
    rmask = mb->rring_mask;
    rlen = atomic_load(&mb->rlen);
    mb->rring = NULL;
    mb->rhead = mb->rring_mask = 0;
    atomic_store(&mb->rlen, 0);
    spin_unlock(mb);

    ring = mb->ring;
    head = mb->head;
    mask = mb->ring_mask;
    len = atomic_load(&mb->len);
    mb->ring = NULL;
    mb->head = mb->ring_mask = 0;
    atomic_store(&mb->len, 0);

    for (uint32_t i = 0; i < len; i++)
        release_item(ring[(head + i) & mask], release);
    for (uint32_t i = 0; i < rlen; i++)
        release_item(rring[(rhead + i) & rmask], release);
    free(ring);
    free(rring);
}

void
ps_mailbox_fini(ps_mailbox *mb, ps_release_fn release)
{
    int fd;

    ps_mailbox_close(mb);
    ps_mailbox_drain(mb, release);
    fd = atomic_exchange(&mb->wakefd, -1);
    if (fd >= 0)
        close(fd);
    free(mb->mships);
    mb->mships = NULL;
    mb->nmships = mb->cap_mships = 0;
}

int
ps_mailbox_fileno(ps_mailbox *mb)
{
    int fd = atomic_load(&mb->wakefd);

    if (fd >= 0)
        return fd;
    fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return PS_ESYS;
    atomic_store(&mb->wakefd, fd);
    return fd;
}

void
ps_mailbox_clear_wake(ps_mailbox *mb)
{
    int fd = atomic_load(&mb->wakefd);
    uint64_t count;

    if (fd < 0)
        return;
    atomic_store(&mb->signaled, 0);
    while (read(fd, &count, sizeof count) < 0 && errno == EINTR)
        ;
}

int
ps_mailbox_prepare_wait(ps_mailbox *mb)
{
    if (ps_mailbox_fileno(mb) < 0)
        return PS_ESYS;
    if (atomic_load(&mb->signaled))
        ps_mailbox_clear_wake(mb);

    atomic_store(&mb->armed, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (ps_mailbox_len(mb) > 0 ||
        atomic_load(&mb->state) != PS_MB_OPEN) {
        atomic_store(&mb->armed, 0);
        return 0;
    }
    return 1;
}
