/*
 * test_mailbox.c: unit tests of the mailbox's two rings (ps_mailbox.c),
 * no Python.  Built and run by tests/test_cluster_wire.py; prints each
 * failure and exits non-zero if any.
 *
 * Owner items stand for the glue's objects: pointers into a static array
 * (aligned, so the remote bit is clear).  Remote items are real ps_rmsg
 * whose sender_id carries a sequence number.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ps_mailbox.h"
#include "ps_msg.h"

#include "check.h"

#define NLOCAL 300000
static long locals[NLOCAL];
static long released;

static void
release(void *item)
{
    (void)item;
    released++;
}

static void
push_local(ps_mailbox *mb, long i)
{
    void *dropped;

    locals[i] = i;
    CHECK(ps_mailbox_push(mb, &locals[i], &dropped) == 0);
}

static void
push_remote(ps_mailbox *mb, uint64_t seq)
{
    ps_rmsg *m = ps_rmsg_new(PS_RMSG_DIRECT, NULL, seq, NULL, 0, "t", 1,
                             NULL, 0);

    CHECK(m != NULL);
    CHECK(ps_mailbox_push_remote(mb, m) == 0);
    ps_rmsg_decref(m);          /* the mailbox holds its own reference */
}

/* Pop one item: 'L' with *n its index, 'R' with *n its sequence, or 0. */
static int
pop(ps_mailbox *mb, long *n)
{
    void *item = ps_mailbox_pop(mb);
    ps_rmsg *m;

    if (item == NULL)
        return 0;
    m = ps_item_rmsg(item);
    if (m == NULL) {
        *n = *(long *)item;
        return 'L';
    }
    *n = (long)m->sender_id;
    ps_rmsg_decref(m);
    return 'R';
}

/* A long remote backlog comes out whole and in order, however it is
 * interleaved with pushes made while it drains. */
static void
test_remote_backlog_in_order(void)
{
    ps_mailbox mb;
    long n, next = 0, pushed = 0;
    int kind;

    ps_mailbox_init(&mb, 0, PS_OVERFLOW_DROP_OLDEST);
    for (; pushed < 100000; pushed++)
        push_remote(&mb, (uint64_t)pushed);
    CHECK(ps_mailbox_len(&mb) == 100000);
    while ((kind = pop(&mb, &n)) != 0) {
        CHECK(kind == 'R' && n == next);
        next++;
        if (pushed < 200000 && next % 3 == 0)
            push_remote(&mb, (uint64_t)pushed++);
    }
    CHECK(next == pushed && ps_mailbox_len(&mb) == 0);
    ps_mailbox_fini(&mb, release);
}

/* Each ring keeps its order; remote items wait behind at most what the
 * owner ring held at the previous splice, never behind later local ones
 * for ever. */
static void
test_owner_and_remote_interleave_fairly(void)
{
    ps_mailbox mb;
    long n, next_local = 0, next_remote = 0, local = 0, remote = 0;
    long since_remote = 0, worst = 0;
    int kind;

    ps_mailbox_init(&mb, 0, PS_OVERFLOW_DROP_OLDEST);
    for (; local < 1000; local++)
        push_local(&mb, local);
    /* A consumer that keeps the owner ring non-empty: one local push and
     * one remote push per pop. */
    for (int round = 0; round < 100000; round++) {
        push_local(&mb, local++);
        push_remote(&mb, (uint64_t)remote++);
        kind = pop(&mb, &n);
        if (kind == 'L') {
            CHECK(n == next_local);
            next_local++;
            if (++since_remote > worst)
                worst = since_remote;
        } else {
            CHECK(kind == 'R' && n == next_remote);
            next_remote++;
            since_remote = 0;
        }
    }
    /* Remote items were not starved behind the endless local stream. */
    CHECK(next_remote > 0);
    CHECK(worst < 200000);
    while ((kind = pop(&mb, &n)) != 0) {
        if (kind == 'L')
            CHECK(n == next_local++);
        else
            CHECK(n == next_remote++);
    }
    CHECK(next_local == local && next_remote == remote);
    ps_mailbox_fini(&mb, release);
}

/* fini releases what is left on both rings, including a swapped one. */
static void
test_fini_releases_both_rings(void)
{
    ps_mailbox mb;
    long n;

    ps_mailbox_init(&mb, 0, PS_OVERFLOW_DROP_OLDEST);
    for (long i = 0; i < 1000; i++)
        push_remote(&mb, (uint64_t)i);
    CHECK(pop(&mb, &n) == 'R' && n == 0);      /* swapped in */
    for (long i = 0; i < 10; i++)
        push_local(&mb, i);
    for (long i = 0; i < 500; i++)
        push_remote(&mb, (uint64_t)(1000 + i));
    CHECK(ps_mailbox_len(&mb) == 999 + 10 + 500);
    released = 0;
    ps_mailbox_fini(&mb, release);
    CHECK(released == 10);      /* remote items are freed by the core */
}

int
main(void)
{
    test_remote_backlog_in_order();
    test_owner_and_remote_interleave_fairly();
    test_fini_releases_both_rings();
    if (failures)
        printf("%d failure(s)\n", failures);
    return failures != 0;
}
