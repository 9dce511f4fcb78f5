/*
 * test_cluster_threads.c: two nodes of the real transport (ps_cluster.c,
 * with its I/O thread) on loopback, for ThreadSanitizer.  Built and run
 * by tests/test_core_threads.py; by hand:
 *
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=thread -Icsrc/core \
 *       tests/c/test_cluster_threads.c csrc/core/ps_cluster.c \
 *       csrc/core/ps_wire.c csrc/core/ps_registry.c csrc/core/ps_mailbox.c \
 *       csrc/core/ps_msg.c csrc/core/ps_common.c csrc/core/ps_codec.c \
 *       -lcrypto -lpthread \
 *       -o /tmp/t && /tmp/t
 *
 * The process forks before any thread exists: the child is node "b",
 * whose owner (the main thread) has a mailbox in channel "ch" and reads
 * what its I/O thread delivers; the parent is node "a", which dials b and
 * then broadcasts from several threads at once while its owner joins and
 * leaves another channel (membership deltas for its I/O thread to send).
 * The senders pause together now and then, so each burst starts on an
 * idle link: its first frame is written by a sender's own thread while
 * the others queue behind it and the I/O thread flushes.  b checks that
 * each of a's senders arrived complete and in order, and exits with the
 * verdict; a checks that some frames did go out directly.  Every wait is
 * bounded by a deadline that only turns a hang into a failure.
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ps_cluster.h"
#include "check.h"

#define SENDERS 4
#define PER_SENDER 5000
#define BURST 250               /* messages between two common pauses */
#define DEADLINE_NS (120ull * 1000000000ull)

static const uint8_t cookie[] = "tsan-cookie";
static ps_registry *scope;
static pthread_barrier_t pause_all;

static void
start_node(const char *name, const ps_cluster_addr *seed)
{
    ps_cluster_config cfg = {
        .name = name, .name_len = strlen(name),
        .host = "127.0.0.1", .port = 0,
        .cookie = cookie, .cookie_len = sizeof cookie - 1,
        .seeds = seed, .nseeds = seed != NULL,
        .heartbeat_ns = 100000000, .timeout_ns = 10000000000ull,
        .max_frame = 1 << 20, .max_queue = 64 << 20,
    };
    int rc = ps_cluster_start(&cfg);

    if (rc != 0) {
        printf("%s: ps_cluster_start: %s\n", name, ps_strerror(rc));
        exit(2);
    }
}

static void
nap(void)
{
    struct timespec ts = { 0, 2000000 };

    nanosleep(&ts, NULL);
}

/* ---- node b: receive and check ---- */

static int
run_b(int port_fd)
{
    ps_mailbox mb;
    ps_fanout f = { 0 };
    ps_cluster_addr self;
    uint64_t next[SENDERS + 1] = { 0 }, got = 0;
    uint64_t want = (uint64_t)SENDERS * PER_SENDER;
    uint64_t deadline = ps_now_ns() + DEADLINE_NS;
    int disorder = 0;

    start_node("b", NULL);
    ps_mailbox_init(&mb, 0, PS_OVERFLOW_DROP_OLDEST);
    CHECK(ps_registry_add_mailbox(&mb) == 0);
    CHECK(ps_registry_join(scope, "ch", 2, &mb, &f) == 0);
    CHECK(ps_cluster_listen_address(&self) == 0);
    if (write(port_fd, &self.port, sizeof self.port) < 0)
        return 2;
    close(port_fd);

    while (got < want && ps_now_ns() < deadline) {
        void *item = ps_mailbox_pop(&mb);
        ps_rmsg *m = item ? ps_item_rmsg(item) : NULL;
        uint32_t seq;

        if (item == NULL) {
            if (ps_mailbox_prepare_wait(&mb) == 1) {
                struct pollfd p = { ps_mailbox_fileno(&mb), POLLIN, 0 };

                poll(&p, 1, 100);
                ps_mailbox_clear_wake(&mb);
            }
            continue;
        }
        CHECK(m != NULL && m->payload_len == 4);
        if (m == NULL)
            continue;
        memcpy(&seq, m->payload, 4);
        if (m->sender_id == 0 || m->sender_id > SENDERS ||
            seq != next[m->sender_id])
            disorder++;
        else
            next[m->sender_id]++;
        got++;
        ps_rmsg_decref(m);
    }
    CHECK(got == want);
    CHECK(disorder == 0);

    ps_cluster_stop();
    ps_registry_remove_mailbox(&mb, &f);
    ps_fanout_fini(&f);
    ps_mailbox_fini(&mb, NULL);
    return failures != 0;
}

/* ---- node a: broadcast from threads while membership changes ---- */

static void *
broadcaster(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;

    for (uint32_t seq = 0; seq < PER_SENDER; seq++) {
        int rc;

        /* A full queue to b is not expected at this volume. */
        rc = ps_cluster_broadcast(scope, "ch", 2, id, "t", 1, 0, &seq, 4);
        if (rc != 0) {
            printf("a: broadcast: %s\n", ps_strerror(rc));
            abort();
        }
        /* All pause together: the link drains and goes idle. */
        if (seq % BURST == BURST - 1) {
            pthread_barrier_wait(&pause_all);
            nap();
        }
    }
    return NULL;
}

static int
run_a(pid_t child, int port_fd)
{
    ps_cluster_addr seed = { "127.0.0.1", 0 };
    ps_cluster_stats st;
    pthread_t threads[SENDERS];
    ps_mailbox churn;
    ps_fanout f = { 0 };
    uint64_t deadline = ps_now_ns() + DEADLINE_NS;
    int status = 0, linked = 0;

    if (read(port_fd, &seed.port, sizeof seed.port) != sizeof seed.port) {
        printf("a: node b did not start\n");
        return 2;
    }
    start_node("a", &seed);

    /* Wait until b's member of "ch" is known here: b's full membership
     * arrives right after the handshake. */
    while (!linked && ps_now_ns() < deadline) {
        ps_node *n;

        ps_registry_lock();
        linked = ps_registry_remote_nodes(scope, "ch", 2, &n, 1) == 1;
        ps_registry_unlock();
        if (!linked)
            nap();
    }
    CHECK(linked);

    ps_mailbox_init(&churn, 0, PS_OVERFLOW_DROP_OLDEST);
    CHECK(ps_registry_add_mailbox(&churn) == 0);
    pthread_barrier_init(&pause_all, NULL, SENDERS);
    for (uintptr_t k = 0; k < SENDERS; k++)
        pthread_create(&threads[k], NULL, broadcaster, (void *)(k + 1));
    for (int i = 0; i < 2000; i++) {
        CHECK(ps_registry_join(scope, "other", 5, &churn, &f) == 0);
        CHECK(ps_registry_leave(scope, "other", 5, &churn, &f) == 0);
    }
    for (int k = 0; k < SENDERS; k++)
        pthread_join(threads[k], NULL);
    pthread_barrier_destroy(&pause_all);
    ps_cluster_stats_get(&st);
    CHECK(st.direct_writes > 0);

    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        printf("a: node b failed (status %d)\n", status);
        failures++;
    }
    ps_cluster_stop();
    ps_registry_remove_mailbox(&churn, &f);
    ps_fanout_fini(&f);
    ps_mailbox_fini(&churn, NULL);
    return failures != 0;
}

int
main(void)
{
    int fds[2];
    pid_t child;
    int rc;

    if (ps_node_init() != 0 || pipe(fds) != 0)
        return 2;
    scope = ps_registry_scope_acquire("default", 7);
    if (scope == NULL)
        return 2;

    fflush(stdout);
    child = fork();
    if (child < 0)
        return 2;
    if (child == 0) {
        close(fds[0]);
        rc = run_b(fds[1]);
        fflush(stdout);
        _exit(rc);
    }
    close(fds[1]);
    rc = run_a(child, fds[0]);
    printf(rc ? "%d check(s) failed\n" : "ok\n", failures);
    return rc;
}
