/*
 * ps_cluster.h: the cluster transport seen from the broadcast path.
 * (Interface only; the transport itself arrives with the cluster work.)
 */
#ifndef PS_CLUSTER_H
#define PS_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "ps_msg.h"
#include "ps_registry.h"

/* Non-zero while a node is started.  An atomic load. */
int ps_cluster_running(void);

/* The largest encoded payload one frame can carry. */
size_t ps_cluster_max_payload(void);

/*
 * Queue one broadcast frame to every connected node with members of the
 * channel.  Takes the registry lock.  sender_id 0: no sender.
 * 0, PS_ETOOBIG or PS_ENOMEM.
 */
int ps_cluster_broadcast(ps_registry *reg, const char *ch, size_t chlen,
                         uint64_t sender_id, const void *topic, size_t tlen,
                         int topic_is_bytes, const void *payload,
                         size_t plen);

/*
 * Queue a direct message to pid (node, target_id).  0, PS_ENOPEER (not
 * connected or a past incarnation: dropped and counted), PS_ETOOBIG.
 */
int ps_cluster_send(ps_node *node, uint64_t target_id, uint64_t sender_id,
                    const void *topic, size_t tlen, int topic_is_bytes,
                    const void *payload, size_t plen);

#endif
