/*
 * ps_cluster.c: placeholder until the transport lands: no node is ever
 * running, so the broadcast path never reaches the functions below.
 */
#include "ps_cluster.h"

int
ps_cluster_running(void)
{
    return 0;
}

size_t
ps_cluster_max_payload(void)
{
    return 0;
}

int
ps_cluster_broadcast(ps_registry *reg, const char *ch, size_t chlen,
                     uint64_t sender_id, const void *topic, size_t tlen,
                     int topic_is_bytes, const void *payload, size_t plen)
{
    return PS_ENOPEER;
}

int
ps_cluster_send(ps_node *node, uint64_t target_id, uint64_t sender_id,
                const void *topic, size_t tlen, int topic_is_bytes,
                const void *payload, size_t plen)
{
    return PS_ENOPEER;
}
