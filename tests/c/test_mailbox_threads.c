/*
 * test_mailbox_threads.c: the core's two-sided mailbox and the registry
 * lock under real threads, for ThreadSanitizer (and AddressSanitizer with
 * its leak check).  Built and run by tests/test_core_threads.py; by hand:
 *
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=thread -Icsrc/core \
 *       tests/c/test_mailbox_threads.c csrc/core/ps_registry.c \
 *       csrc/core/ps_mailbox.c csrc/core/ps_msg.c csrc/core/ps_common.c \
 *       -lpthread -o /tmp/t && /tmp/t
 *
 * The main thread plays the owner (the GIL holder in the extension); the
 * other threads play the cluster's I/O thread, which never holds the GIL.
 * Every message carries (producer, sequence), and each scenario checks
 * what the consumer saw: nothing lost where nothing may be lost, nothing
 * duplicated, and each producer's messages in the order it sent them.
 *
 * Prints one line per failed check and exits non-zero if any failed.
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_mailbox.h"
#include "ps_msg.h"
#include "ps_registry.h"
#include "check.h"

#define PRODUCERS 4
#define PER_PRODUCER 20000

/* What one consumer saw of each producer's stream. */
typedef struct stream {
    uint64_t next[PRODUCERS + 1];   /* lowest sequence still allowed */
    uint64_t got[PRODUCERS + 1];
    int disorder;
} stream;

typedef struct producer {
    pthread_t thread;
    int index;
    ps_mailbox *mb;             /* direct pushes, or NULL */
    ps_registry *reg;           /* else deliveries to channel "c" */
    int closed_seen;
} producer;

static ps_node *peer_node;

static ps_rmsg *
make_msg(int index, uint32_t seq)
{
    uint8_t payload[4] = { seq, seq >> 8, seq >> 16, seq >> 24 };
    ps_rmsg *m = ps_rmsg_new(0, peer_node, (uint64_t)index, "c", 1,
                             "t", 1, payload, sizeof payload);

    if (m == NULL)
        abort();
    return m;
}

/* Account one item; gaps are allowed (drops), going back is not. */
static void
stream_take(stream *s, void *item)
{
    ps_rmsg *m = ps_item_rmsg(item);
    uint64_t who, seq;

    if (m == NULL) {            /* an owner item: a malloc'd sequence */
        who = 0;
        seq = *(uint32_t *)item;
        free(item);
    } else if (m->flags & PS_RMSG_EVENT) {
        ps_rmsg_decref(m);
        return;
    } else {
        who = m->sender_id;
        seq = (uint64_t)m->payload[0] | (uint64_t)m->payload[1] << 8 |
              (uint64_t)m->payload[2] << 16 | (uint64_t)m->payload[3] << 24;
        ps_rmsg_decref(m);
    }
    if (who > PRODUCERS || seq < s->next[who])
        s->disorder++;
    else
        s->next[who] = seq + 1;
    s->got[who <= PRODUCERS ? who : 0]++;
}

static void
release_owner_item(void *item)
{
    free(item);
}

static void *
produce(void *arg)
{
    producer *p = arg;

    for (uint32_t seq = 0; seq < PER_PRODUCER; seq++) {
        ps_rmsg *m = make_msg(p->index, seq);

        if (p->mb != NULL) {
            if (ps_mailbox_push_remote(p->mb, m) == PS_ECLOSED)
                p->closed_seen = 1;
        } else {
            ps_registry_lock();
            ps_registry_deliver_remote(ps_registry_find(p->reg, "c", 1), m);
            ps_registry_unlock();
        }
        ps_rmsg_decref(m);
    }
    return NULL;
}

static void
start(producer *ps, ps_mailbox *mb, ps_registry *reg)
{
    for (int i = 0; i < PRODUCERS; i++) {
        ps[i] = (producer){ .index = i + 1, .mb = mb, .reg = reg };
        if (pthread_create(&ps[i].thread, NULL, produce, &ps[i]) != 0)
            abort();
    }
}

static void
finish(producer *ps)
{
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(ps[i].thread, NULL);
}

/* Pop one item, sleeping on the wake descriptor when empty. */
static void *
pop_or_wait(ps_mailbox *mb)
{
    void *item;

    while ((item = ps_mailbox_pop(mb)) == NULL) {
        int rc = ps_mailbox_prepare_wait(mb);

        CHECK(rc >= 0);
        if (rc == 1) {
            struct pollfd pfd = { ps_mailbox_fileno(mb), POLLIN, 0 };

            /* The timeout only bounds a lost wake-up; it is not a check
             * of speed: a lost wake-up is caught by the count below. */
            poll(&pfd, 1, 1000);
            ps_mailbox_clear_wake(mb);
        }
    }
    return item;
}

/* Producers push straight into an unbounded mailbox; one owner pops and
 * sleeps when it runs dry.  Everything arrives, in order. */
static void
test_direct_push_remote(void)
{
    ps_mailbox mb;
    producer ps[PRODUCERS];
    stream s = { 0 };

    ps_mailbox_init(&mb, 0, PS_OVERFLOW_DROP_OLDEST);
    start(ps, &mb, NULL);
    for (uint64_t n = 0; n < (uint64_t)PRODUCERS * PER_PRODUCER; n++)
        stream_take(&s, pop_or_wait(&mb));
    finish(ps);

    CHECK(s.disorder == 0);
    for (int i = 1; i <= PRODUCERS; i++)
        CHECK(s.got[i] == PER_PRODUCER);
    CHECK(ps_mailbox_pop(&mb) == NULL);
    CHECK(atomic_load(&mb.dropped) == 0);
    ps_mailbox_fini(&mb, release_owner_item);
}

/* A bounded mailbox that drops its oldest, fed from both sides at once:
 * the owner pushes its own items while producers push remote ones.  What
 * arrives plus what was dropped is what was sent, and no stream goes
 * backwards. */
static void
test_bounded_both_sides(void)
{
    ps_mailbox mb;
    producer ps[PRODUCERS];
    stream s = { 0 };
    uint64_t total = 0, sent = (uint64_t)(PRODUCERS + 1) * PER_PRODUCER;
    void *item;

    ps_mailbox_init(&mb, 64, PS_OVERFLOW_DROP_OLDEST);
    start(ps, &mb, NULL);
    for (uint32_t seq = 0; seq < PER_PRODUCER; seq++) {
        uint32_t *own = malloc(sizeof *own);
        void *dropped;

        if (own == NULL)
            abort();
        *own = seq;
        CHECK(ps_mailbox_push(&mb, own, &dropped) == 0);
        if (dropped != NULL) {
            ps_rmsg *m = ps_item_rmsg(dropped);

            if (m)
                ps_rmsg_decref(m);
            else
                free(dropped);
        }
        if (seq % 3 == 0 && (item = ps_mailbox_pop(&mb)) != NULL)
            stream_take(&s, item);
    }
    finish(ps);
    while ((item = ps_mailbox_pop(&mb)) != NULL)
        stream_take(&s, item);

    for (int i = 0; i <= PRODUCERS; i++)
        total += s.got[i];
    CHECK(s.disorder == 0);
    CHECK(total + atomic_load(&mb.dropped) == sent);
    ps_mailbox_fini(&mb, release_owner_item);
}

/* The owner closes the mailbox while producers are pushing: pushes after
 * the close are refused, and fini releases whatever was queued (the leak
 * checker of an ASan build verifies that). */
static void
test_close_while_pushing(void)
{
    ps_mailbox mb;
    producer ps[PRODUCERS];
    stream s = { 0 };

    ps_mailbox_init(&mb, 0, PS_OVERFLOW_DROP_OLDEST);
    start(ps, &mb, NULL);
    for (int n = 0; n < 1000; n++)
        stream_take(&s, pop_or_wait(&mb));
    CHECK(ps_mailbox_close(&mb) == PS_MB_OPEN);
    finish(ps);

    /* Popping what was queued before the close stays safe. */
    for (int n = 0; n < 10; n++) {
        void *item = ps_mailbox_pop(&mb);

        if (item != NULL)
            stream_take(&s, item);
    }
    CHECK(s.disorder == 0);
    ps_mailbox_fini(&mb, release_owner_item);
}

/* Producers deliver through the registry (lock held, as the I/O thread
 * does) while the owner joins and leaves a second mailbox, makes and
 * frees other channels, and a remote node's membership changes under a
 * scope watcher.  The mailbox that stays joined gets every message in
 * order; the one that comes and goes gets an ordered subset. */
static void
test_registry_under_churn(void)
{
    ps_registry *reg = ps_registry_scope_acquire("threads", 7);
    ps_mailbox stay, churn, watcher;
    ps_fanout f = { 0 };
    producer ps[PRODUCERS];
    stream s_stay = { 0 }, s_churn = { 0 };
    uint64_t want = (uint64_t)PRODUCERS * PER_PRODUCER, got = 0;
    void *item;

    CHECK(reg != NULL);
    ps_mailbox_init(&stay, 0, PS_OVERFLOW_DROP_OLDEST);
    ps_mailbox_init(&churn, 0, PS_OVERFLOW_DROP_OLDEST);
    ps_mailbox_init(&watcher, 0, PS_OVERFLOW_DROP_OLDEST);
    CHECK(ps_registry_add_mailbox(&stay) == 0);
    CHECK(ps_registry_add_mailbox(&churn) == 0);
    CHECK(ps_registry_add_mailbox(&watcher) == 0);
    CHECK(ps_registry_join(reg, "c", 1, &stay, &f) == 0);
    CHECK(ps_registry_watch(reg, NULL, 0, &watcher) == 0);

    start(ps, NULL, reg);
    for (uint32_t round = 0; got < want; round++) {
        char name[32];
        int len = snprintf(name, sizeof name, "tmp-%u", round % 50);

        CHECK(ps_registry_join(reg, "c", 1, &churn, &f) == 0);
        CHECK(ps_registry_join(reg, name, (size_t)len, &churn, &f) == 0);

        /* The I/O thread's side of membership, under the lock. */
        ps_registry_lock();
        CHECK(ps_registry_remote_change(reg, name, (size_t)len, peer_node,
                                        round, 1) == 0);
        CHECK(ps_registry_remote_change(reg, name, (size_t)len, peer_node,
                                        round, -1) == 0);
        ps_registry_unlock();

        CHECK(ps_registry_leave(reg, name, (size_t)len, &churn, &f) == 0);
        CHECK(ps_registry_leave(reg, "c", 1, &churn, &f) == 0);

        while ((item = ps_mailbox_pop(&stay)) != NULL) {
            stream_take(&s_stay, item);
            got++;
        }
        while ((item = ps_mailbox_pop(&churn)) != NULL)
            stream_take(&s_churn, item);
        while ((item = ps_mailbox_pop(&watcher)) != NULL)
            stream_take(&s_churn, item);
    }
    finish(ps);

    CHECK(got == want);
    CHECK(s_stay.disorder == 0 && s_churn.disorder == 0);
    for (int i = 1; i <= PRODUCERS; i++)
        CHECK(s_stay.got[i] == PER_PRODUCER);

    ps_registry_remove_mailbox(&stay, &f);
    ps_registry_remove_mailbox(&churn, &f);
    ps_registry_remove_mailbox(&watcher, &f);
    for (uint32_t i = 0; i < f.ndropped; i++)
        release_owner_item(f.dropped[i]);
    ps_fanout_fini(&f);
    ps_mailbox_fini(&stay, release_owner_item);
    ps_mailbox_fini(&churn, release_owner_item);
    ps_mailbox_fini(&watcher, release_owner_item);
    CHECK(ps_registry_find(reg, "c", 1) == NULL);
}

int
main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : "";
    uint8_t key[16] = { 1, 2, 3 };

    ps_hash_seed(key);
    if (ps_node_init() != 0)
        return 2;
    peer_node = ps_node_intern("peer", 4, 42);
    if (peer_node == NULL)
        return 2;

    /* An argument names the one scenario to run (a letter a-d). */
    if (!*only || strchr(only, 'a'))
        test_direct_push_remote();
    if (!*only || strchr(only, 'b'))
        test_bounded_both_sides();
    if (!*only || strchr(only, 'c'))
        test_close_while_pushing();
    if (!*only || strchr(only, 'd'))
        test_registry_under_churn();

    if (failures)
        printf("%d check(s) failed\n", failures);
    else
        printf("ok\n");
    return failures != 0;
}
