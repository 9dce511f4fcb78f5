/*
 * test_mailbox_wake.c: the wake-up descriptor's bookkeeping when a
 * pusher's wake-up runs concurrently with the consumer clearing the
 * descriptor.  Built and run by tests/test_core_threads.py with
 * -Wl,--wrap=write, so that the pusher can be held inside wake() at
 * the moment that matters:
 *
 *   1. the consumer arms an empty mailbox (recv_nowait or a recv that
 *      timed out leave it armed);
 *   2. the I/O thread pushes a message and, seeing the mailbox armed,
 *      wakes it -- and is held just before its write() to the eventfd;
 *   3. the consumer takes the message (it is queued before the wake-up)
 *      and, finding the mailbox empty, prepares to wait again, which
 *      clears the descriptor when the mailbox says it was signalled;
 *   4. the I/O thread's write() goes through.
 *
 * The count the write left is a stale wake-up: the consumer wakes once
 * for it, finds nothing, and prepares to wait again.  That preparation
 * must consume the count.  Were the count left with the mailbox saying
 * "not signalled", every later prepare_wait would skip the read and
 * a blocking recv() (which leaves the count on the descriptor for the
 * next prepare_wait) would poll, find it readable, and go round without
 * end until a message arrived.
 *
 * Prints one line per failed check and exits non-zero if any failed.
 */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ps_mailbox.h"
#include "ps_msg.h"
#include "check.h"

ssize_t __real_write(int fd, const void *buf, size_t n);

/* The eventfd whose writes are held, and the hand-shake with the test. */
static atomic_int hold_fd = -1;
static atomic_int in_write, go;

ssize_t
__wrap_write(int fd, const void *buf, size_t n)
{
    if (fd >= 0 && fd == atomic_load(&hold_fd)) {
        atomic_store(&in_write, 1);
        while (!atomic_load(&go))
            sched_yield();
    }
    return __real_write(fd, buf, n);
}

static ps_mailbox mb;
static ps_node *peer_node;

static void *
pusher(void *arg)
{
    ps_rmsg *m = ps_rmsg_new(0, peer_node, 1, "c", 1, "t", 1, "x", 1);

    if (m == NULL)
        abort();
    CHECK(ps_mailbox_push_remote(&mb, m) == 0);
    ps_rmsg_decref(m);
    return NULL;
}

static int
readable(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };

    return poll(&pfd, 1, 0) == 1;
}

static void
release_none(void *item)
{
    abort();                    /* only remote items in this test */
}

/* A push into the armed mailbox wakes it; the consumer takes it. */
static void
woken_and_taken(int fd)
{
    void *item;

    pusher(NULL);
    CHECK(readable(fd));
    item = ps_mailbox_pop(&mb);
    CHECK(item != NULL);
    if (item)
        ps_rmsg_decref(ps_item_rmsg(item));
}

static void
test_wake_during_clear(void)
{
    pthread_t t;
    void *item;
    int fd;

    ps_mailbox_init(&mb, 0, PS_OVERFLOW_DROP_OLDEST);
    fd = ps_mailbox_fileno(&mb);
    CHECK(fd >= 0);

    /* A first round trip, as a blocking recv leaves it: woken, the
     * message taken, the count still on the descriptor. */
    CHECK(ps_mailbox_prepare_wait(&mb) == 1);
    woken_and_taken(fd);

    /* 1. Armed again, empty (this prepare_wait clears the last count). */
    CHECK(ps_mailbox_prepare_wait(&mb) == 1);
    CHECK(!readable(fd));

    /* 2. The pusher queues a message and is held in its wake-up. */
    atomic_store(&hold_fd, fd);
    CHECK(pthread_create(&t, NULL, pusher, NULL) == 0);
    while (!atomic_load(&in_write))
        sched_yield();

    /* 3. The consumer takes it and prepares to wait again. */
    item = ps_mailbox_pop(&mb);
    CHECK(item != NULL);
    if (item)
        ps_rmsg_decref(ps_item_rmsg(item));
    CHECK(ps_mailbox_prepare_wait(&mb) == 1);

    /* 4. The write goes through. */
    atomic_store(&go, 1);
    pthread_join(t, NULL);
    atomic_store(&hold_fd, -1);

    /* The consumer wakes once for the stale count and finds nothing... */
    CHECK(readable(fd));
    CHECK(ps_mailbox_pop(&mb) == NULL);
    /* ...and the next preparation must leave nothing to wake it. */
    CHECK(ps_mailbox_prepare_wait(&mb) == 1);
    CHECK(!readable(fd));
    /* Once more, as a consumer going round would. */
    CHECK(ps_mailbox_prepare_wait(&mb) == 1);
    CHECK(!readable(fd));

    /* And a wake-up after all that still arrives. */
    woken_and_taken(fd);

    ps_mailbox_fini(&mb, release_none);
}

int
main(void)
{
    uint8_t key[16] = { 1, 2, 3 };

    ps_hash_seed(key);
    if (ps_node_init() != 0)
        return 2;
    peer_node = ps_node_intern("peer", 4, 42);
    if (peer_node == NULL)
        return 2;

    test_wake_during_clear();

    if (failures)
        printf("%d check(s) failed\n", failures);
    else
        printf("ok\n");
    return failures != 0;
}
