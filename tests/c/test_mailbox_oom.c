/*
 * test_mailbox_oom.c: the mailbox and the fan-out bag when memory runs
 * out.  malloc and realloc are wrapped (-Wl,--wrap) so a test can make
 * the next ones fail.  Built and run by tests/test_core_threads.py; by
 * hand:
 *
 *   cc -std=c11 -D_GNU_SOURCE -Icsrc/core tests/c/test_mailbox_oom.c \
 *       csrc/core/ps_registry.c csrc/core/ps_mailbox.c csrc/core/ps_msg.c \
 *       csrc/core/ps_common.c -lpthread \
 *       -Wl,--wrap=malloc,--wrap=realloc -o /tmp/t && /tmp/t
 *
 * What they pin down: a push that dropped an item for the new one never
 * then fails to store it (the caller would hold two items to release and
 * no way to tell), a push that fails for memory counts the loss, and
 * after ps_fanout_reserve the next add_dropped/add_slow cannot fail.  The
 * glue's fan-out relies on all three (it once released the wrong object
 * when the bag could not grow).
 *
 * Prints one line per failed check and exits non-zero if any failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_mailbox.h"
#include "ps_msg.h"
#include "ps_registry.h"
#include "check.h"

/* Allocation failure injection: while failing is set, allocations fail. */
static int failing;

void *__real_malloc(size_t size);
void *__real_realloc(void *p, size_t size);

void *
__wrap_malloc(size_t size)
{
    return failing ? NULL : __real_malloc(size);
}

void *
__wrap_realloc(void *p, size_t size)
{
    return failing ? NULL : __real_realloc(p, size);
}

static void
release(void *item)
{
    PS_UNUSED(item);
}

static ps_rmsg *
remote_msg(void)
{
    ps_rmsg *m = ps_rmsg_new(0, NULL, 0, "c", 1, "t", 1, "p", 1);

    if (m == NULL)
        abort();
    return m;
}

/* Capacity reached with only remote items queued and no owner ring yet:
 * the push needs a ring to store into.  Without memory it must fail
 * before dropping anything. */
static void
test_drop_oldest_remote_backlog_without_memory(void)
{
    ps_mailbox mb;
    ps_rmsg *m = remote_msg();
    static int item;
    void *dropped = &item;

    ps_mailbox_init(&mb, 1, PS_OVERFLOW_DROP_OLDEST);
    CHECK(ps_mailbox_push_remote(&mb, m) == 0);
    CHECK(mb.ring == NULL && ps_mailbox_len(&mb) == 1);

    failing = 1;
    CHECK(ps_mailbox_push(&mb, &item, &dropped) == PS_ENOMEM);
    failing = 0;
    CHECK(dropped == NULL);
    CHECK(ps_mailbox_len(&mb) == 1);    /* the remote item is still there */
    CHECK(atomic_load(&mb.dropped) == 1);

    /* With memory the same push drops the remote item and stores. */
    CHECK(ps_mailbox_push(&mb, &item, &dropped) == 0);
    CHECK(dropped == ps_item_from_rmsg(m));
    ps_rmsg_decref(m);                  /* the one handed back */
    CHECK(ps_mailbox_pop(&mb) == &item);
    ps_rmsg_decref(m);                  /* ours */
    CHECK(ps_rmsg_live() == 0);
    ps_mailbox_fini(&mb, release);
}

/* An unbounded mailbox whose ring cannot grow counts what it lost. */
static void
test_unbounded_push_without_memory_is_counted(void)
{
    ps_mailbox mb;
    static int item;
    void *dropped;

    ps_mailbox_init(&mb, 0, PS_OVERFLOW_DROP_OLDEST);
    failing = 1;
    CHECK(ps_mailbox_push(&mb, &item, &dropped) == PS_ENOMEM);
    failing = 0;
    CHECK(dropped == NULL);
    CHECK(atomic_load(&mb.dropped) == 1);
    CHECK(ps_mailbox_pop(&mb) == NULL);
    ps_mailbox_fini(&mb, release);
}

/* After a reservation the bag takes one item and one mailbox without
 * allocating. */
static void
test_reserved_fanout_cannot_fail(void)
{
    ps_fanout f = { 0 };
    ps_mailbox mb;
    static int items[64];

    ps_mailbox_init(&mb, 1, PS_OVERFLOW_CLOSE);
    for (int i = 0; i < 64; i++) {
        CHECK(ps_fanout_reserve(&f) == 0);
        failing = 1;
        CHECK(ps_fanout_add_dropped(&f, &items[i]) == 0);
        CHECK(ps_fanout_add_slow(&f, &mb) == 0);
        failing = 0;
    }
    CHECK(f.ndropped == 64 && f.nslow == 1);
    for (int i = 0; i < 64; i++)
        CHECK(f.dropped[i] == &items[i]);

    failing = 1;
    /* Full again: without memory the reservation itself says so. */
    while (f.ndropped < f.capdropped)
        f.ndropped++;
    CHECK(ps_fanout_reserve(&f) == PS_ENOMEM);
    failing = 0;
    ps_fanout_fini(&f);
    ps_mailbox_fini(&mb, release);
}

int
main(void)
{
    test_drop_oldest_remote_backlog_without_memory();
    test_unbounded_push_without_memory_is_counted();
    test_reserved_fanout_cannot_fail();

    if (failures)
        printf("%d check(s) failed\n", failures);
    else
        printf("ok\n");
    return failures != 0;
}
