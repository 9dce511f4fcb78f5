/*
 * handshake_fuzz.c: libFuzzer harness for what a connection's bytes can
 * reach in the transport: the frame reader, the handshake states and,
 * for an established peer, the membership and message handlers with the
 * real registry behind them.  Build and run from the repository root:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
 *       -Icsrc/core fuzz/handshake_fuzz.c csrc/core/ps_wire.c \
 *       csrc/core/ps_registry.c csrc/core/ps_mailbox.c \
 *       csrc/core/ps_msg.c csrc/core/ps_common.c -lcrypto -lpthread \
 *       -o handshake_fuzz
 *   ./handshake_fuzz -max_total_time=30 fuzz/corpus/handshake
 *
 * The transport's file is included whole to reach its static functions.
 * The first input byte picks the state the connection starts in (an
 * acceptor waiting for HELLO, an initiator waiting for CHALLENGE, or an
 * established link); the rest arrives through a socketpair, followed by
 * EOF.  Nothing is ever dialled: PEERS only fills the dial list, which is
 * emptied after each input.
 */
#include "../csrc/core/ps_cluster.c"

static void
fuzz_setup(void)
{
    static int done;
    static const char cookie[] = "fuzz-cookie";

    if (done)
        return;
    done = 1;
    ps_node_init();
    ps_node_set_local_name("fuzzer", 6);
    cl.epfd = epoll_create1(EPOLL_CLOEXEC);
    cl.max_frame = 1 << 16;
    cl.max_queue = 1 << 20;
    cl.timeout_ns = UINT64_MAX / 4;
    cl.heartbeat_ns = 1;
    memcpy(cl.cookie, cookie, sizeof cookie - 1);
    cl.cookie_len = sizeof cookie - 1;
    snprintf(cl.listen.host, sizeof cl.listen.host, "127.0.0.1");
}

/* A peer on one end of a socketpair, in the state mode asks for. */
static peer *
fuzz_peer(int fd, uint8_t mode)
{
    static const ps_cluster_addr other = { "fuzz", 1 };
    peer *p = peer_new(fd, mode == 1, &other);

    if (p == NULL)
        return NULL;
    ep_add(fd, p, EPOLLIN);
    if (mode == 0) {
        p->state = CONN_WAIT_HELLO;
    } else if (mode == 1) {
        p->state = CONN_WAIT_CHALLENGE;
        send_hello(p, PS_FT_HELLO);
    } else {
        ps_node *node = ps_node_intern("peer", 4, 7);

        snprintf(p->rname, sizeof p->rname, "peer");
        p->rname_len = 4;
        p->rinc = 7;
        ps_registry_lock();
        p->node = node;
        node->link = p;
        p->state = CONN_UP;
        p->synced = 1;
        ps_registry_unlock();
    }
    return p;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    peer *p;

    if (size < 1 || size > (1 << 16))
        return 0;
    fuzz_setup();
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
        return 0;
    p = fuzz_peer(sv[0], data[0] % 3);
    if (p == NULL) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    if (size > 1 && write(sv[1], data + 1, size - 1) < 0)
        abort();
    close(sv[1]);

    for (int i = 0; i < 64 && p->state != CONN_DEAD; i++) {
        peer_read(p);
        peer_flush_or_drop(p);
    }
    if (p->state != CONN_DEAD)
        peer_close(p, 0);
    reap_dead();
    while (cl.dials != NULL) {
        dial *d = cl.dials;

        cl.dials = d->next;
        free(d);
    }
    return 0;
}
