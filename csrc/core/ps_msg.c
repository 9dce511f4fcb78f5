/*
 * ps_msg.c: the node intern table and remote messages.  The table has its
 * own mutex; a remote message is immutable once made, and only its count
 * changes, atomically.
 */
#include "ps_msg.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t node_lock = PTHREAD_MUTEX_INITIALIZER;
static ps_node *nodes;
static ps_node local_node = { .name_len = 6, .name = "nonode" };
static int local_ready;

int
ps_node_init(void)
{
    uint64_t inc = 0;

    if (local_ready)
        return 0;
    /* Zero is kept free so that "no incarnation" can be spelt. */
    while (inc == 0) {
        if (ps_random(&inc, sizeof inc) != 0)
            return PS_ESYS;
    }
    pthread_mutex_lock(&node_lock);
    local_node.incarnation = inc;
    local_node.next = nodes;
    nodes = &local_node;
    local_ready = 1;
    pthread_mutex_unlock(&node_lock);
    return 0;
}

ps_node *
ps_node_local(void)
{
    return &local_node;
}

int
ps_node_set_local_name(const char *name, size_t len)
{
    if (len == 0 || len > PS_MAX_NODENAME)
        return PS_EINVAL;

    pthread_mutex_lock(&node_lock);
    memcpy(local_node.name, name, len);
    local_node.name[len] = '\0';
    local_node.name_len = (uint16_t)len;
    pthread_mutex_unlock(&node_lock);
    return 0;
}

ps_node *
ps_node_intern(const char *name, size_t len, uint64_t incarnation)
{
    ps_node *n;

    if (len == 0 || len > PS_MAX_NODENAME)
        return NULL;

    pthread_mutex_lock(&node_lock);
    for (n = nodes; n != NULL; n = n->next) {
        if (n->incarnation == incarnation && n->name_len == len &&
            memcmp(n->name, name, len) == 0)
            goto out;
    }
    n = calloc(1, sizeof *n);
    if (n != NULL) {
        memcpy(n->name, name, len);
        n->name_len = (uint16_t)len;
        n->incarnation = incarnation;
        n->next = nodes;
        nodes = n;
    }
out:
    pthread_mutex_unlock(&node_lock);
    return n;
}

/* Counted so that a leak test can see a message nobody freed. */
static _Atomic uint64_t rmsg_live;

uint64_t
ps_rmsg_live(void)
{
    return atomic_load_explicit(&rmsg_live, memory_order_relaxed);
}

ps_rmsg *
ps_rmsg_new(uint32_t flags, ps_node *sender_node, uint64_t sender_id,
            const void *channel, uint32_t channel_len,
            const void *topic, uint32_t topic_len,
            const void *payload, uint32_t payload_len)
{
    size_t total = (size_t)channel_len + topic_len + payload_len;
    ps_rmsg *m = malloc(sizeof *m + total);
    uint8_t *p;

    if (m == NULL)
        return NULL;

    atomic_init(&m->refcnt, 1);
    atomic_fetch_add_explicit(&rmsg_live, 1, memory_order_relaxed);
    m->flags = flags;
    m->sender_node = sender_node;
    m->sender_id = sender_id;
    m->channel_len = channel_len;
    m->topic_len = topic_len;
    m->payload_len = payload_len;

    p = m->data;
    m->channel = p;
    if (channel_len)
        memcpy(p, channel, channel_len);
    p += channel_len;
    m->topic = p;
    if (topic_len)
        memcpy(p, topic, topic_len);
    p += topic_len;
    m->payload = p;
    if (payload_len)
        memcpy(p, payload, payload_len);
    return m;
}

void
ps_rmsg_decref(ps_rmsg *m)
{
    if (atomic_fetch_sub_explicit(&m->refcnt, 1, memory_order_acq_rel)
            == 1) {
        atomic_fetch_sub_explicit(&rmsg_live, 1, memory_order_relaxed);
        free(m);
    }
}
