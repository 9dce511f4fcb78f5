/*
 * ps_wire.c: encoders and bounds-checked decoders of the frames described
 * in ps_wire.h.  Pure functions over caller-owned bytes: no state, no
 * locks, no allocation; any thread may call them.
 */
#include "ps_wire.h"

#include <string.h>

#include "ps_msg.h"

uint8_t *
ps_wire_putbytes(uint8_t *p, const void *data, size_t len)
{
    if (len > 0)
        memcpy(p, data, len);
    return p + len;
}

/* ---- reader ---- */

/* Consume n bytes, or mark the cursor bad and return NULL. */
static const uint8_t *
take(ps_rd *r, size_t n)
{
    const uint8_t *p;

    if (r->bad || n > r->left) {
        r->bad = 1;
        return NULL;
    }
    p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

uint8_t
ps_rd_u8(ps_rd *r)
{
    const uint8_t *p = take(r, 1);

    return p ? p[0] : 0;
}

uint16_t
ps_rd_u16(ps_rd *r)
{
    const uint8_t *p = take(r, 2);

    return p ? (uint16_t)((p[0] << 8) | p[1]) : 0;
}

uint32_t
ps_rd_u32(ps_rd *r)
{
    const uint8_t *p = take(r, 4);
    uint32_t v = 0;

    for (int i = 0; p && i < 4; i++)
        v = (v << 8) | p[i];
    return v;
}

uint64_t
ps_rd_u64(ps_rd *r)
{
    const uint8_t *p = take(r, 8);
    uint64_t v = 0;

    for (int i = 0; p && i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

ps_span
ps_rd_bytes(ps_rd *r, size_t len)
{
    const uint8_t *p = take(r, len);

    return p ? (ps_span){ p, len } : (ps_span){ NULL, 0 };
}

ps_span
ps_rd_str(ps_rd *r, int bits)
{
    size_t len;

    if (bits == 8)
        len = ps_rd_u8(r);
    else if (bits == 16)
        len = ps_rd_u16(r);
    else
        len = ps_rd_u32(r);
    return ps_rd_bytes(r, len);
}

/* ---- header ---- */

int
ps_wire_hdr_get(const uint8_t *p, size_t avail, uint32_t limit,
                ps_frame_hdr *h)
{
    ps_rd r;

    /* Judge the magic as soon as its bytes are in: garbage is refused
     * without waiting for a whole header. */
    if ((avail >= 1 && p[0] != PS_WIRE_MAGIC0) ||
        (avail >= 2 && p[1] != PS_WIRE_MAGIC1))
        return PS_EPROTO;
    if (avail < PS_WIRE_HDR)
        return 0;

    ps_rd_init(&r, p + 2, PS_WIRE_HDR - 2);
    h->version = ps_rd_u8(&r);
    h->type = ps_rd_u8(&r);
    h->len = ps_rd_u32(&r);
    if (h->len > limit)
        return PS_ETOOBIG;
    return 1;
}

uint8_t *
ps_wire_hdr_put(uint8_t *p, ps_frame_type type, uint32_t len)
{
    p = ps_wire_put8(p, PS_WIRE_MAGIC0);
    p = ps_wire_put8(p, PS_WIRE_MAGIC1);
    p = ps_wire_put8(p, PS_WIRE_VERSION);
    p = ps_wire_put8(p, (uint8_t)type);
    return ps_wire_put32(p, len);
}

/* ---- handshake ---- */

static size_t
hello_body(const ps_wire_hello *h)
{
    return 4 + 8 + 1 + h->name.len + 1 + h->host.len + 2 + PS_WIRE_NONCE;
}

size_t
ps_wire_hello_size(const ps_wire_hello *h)
{
    return PS_WIRE_HDR + hello_body(h);
}

uint8_t *
ps_wire_hello_put(uint8_t *p, ps_frame_type type, const ps_wire_hello *h)
{
    p = ps_wire_hdr_put(p, type, (uint32_t)hello_body(h));
    p = ps_wire_put32(p, h->max_frame);
    p = ps_wire_put64(p, h->incarnation);
    p = ps_wire_put8(p, (uint8_t)h->name.len);
    p = ps_wire_putbytes(p, h->name.p, h->name.len);
    p = ps_wire_put8(p, (uint8_t)h->host.len);
    p = ps_wire_putbytes(p, h->host.p, h->host.len);
    p = ps_wire_put16(p, h->port);
    return ps_wire_putbytes(p, h->nonce, PS_WIRE_NONCE);
}

int
ps_wire_hello_get(const uint8_t *body, size_t len, ps_wire_hello *h)
{
    ps_rd r;
    ps_span nonce;

    ps_rd_init(&r, body, len);
    h->max_frame = ps_rd_u32(&r);
    h->incarnation = ps_rd_u64(&r);
    h->name = ps_rd_str(&r, 8);
    h->host = ps_rd_str(&r, 8);
    h->port = ps_rd_u16(&r);
    nonce = ps_rd_bytes(&r, PS_WIRE_NONCE);
    if (r.bad || r.left != 0 || h->name.len == 0 || h->incarnation == 0 ||
        !ps_wire_name_ok(h->name) || !ps_wire_name_ok(h->host))
        return PS_EPROTO;
    memcpy(h->nonce, nonce.p, PS_WIRE_NONCE);
    return 0;
}

#define REFUSE_MAX_REASON 512

size_t
ps_wire_refuse_size(size_t reason_len)
{
    if (reason_len > REFUSE_MAX_REASON)
        reason_len = REFUSE_MAX_REASON;
    return PS_WIRE_HDR + 4 + reason_len;
}

uint8_t *
ps_wire_refuse_put(uint8_t *p, uint16_t code, const char *reason,
                   size_t reason_len)
{
    if (reason_len > REFUSE_MAX_REASON)
        reason_len = REFUSE_MAX_REASON;
    p = ps_wire_hdr_put(p, PS_FT_REFUSE, (uint32_t)(4 + reason_len));
    p = ps_wire_put16(p, code);
    p = ps_wire_put16(p, (uint16_t)reason_len);
    return ps_wire_putbytes(p, reason, reason_len);
}

int
ps_wire_refuse_get(const uint8_t *body, size_t len, uint16_t *code,
                   ps_span *reason)
{
    ps_rd r;

    ps_rd_init(&r, body, len);
    *code = ps_rd_u16(&r);
    *reason = ps_rd_str(&r, 16);
    return (r.bad || r.left != 0) ? PS_EPROTO : 0;
}

/* ---- membership and peer entries ---- */

size_t
ps_wire_entry_size(size_t scope_len, size_t ch_len)
{
    return 2 + scope_len + 2 + ch_len + 8 + 4;
}

uint8_t *
ps_wire_entry_put(uint8_t *p, const ps_wire_entry *e)
{
    p = ps_wire_put16(p, (uint16_t)e->scope.len);
    p = ps_wire_putbytes(p, e->scope.p, e->scope.len);
    p = ps_wire_put16(p, (uint16_t)e->channel.len);
    p = ps_wire_putbytes(p, e->channel.p, e->channel.len);
    p = ps_wire_put64(p, e->id);
    return ps_wire_put32(p, (uint32_t)e->count);
}

void
ps_wire_entry_get(ps_rd *r, ps_wire_entry *e)
{
    e->scope = ps_rd_str(r, 16);
    e->channel = ps_rd_str(r, 16);
    e->id = ps_rd_u64(r);
    e->count = (int32_t)ps_rd_u32(r);
}

size_t
ps_wire_peer_size(size_t name_len, size_t host_len)
{
    return 1 + name_len + 8 + 1 + host_len + 2;
}

uint8_t *
ps_wire_peer_put(uint8_t *p, const ps_wire_peer *e)
{
    p = ps_wire_put8(p, (uint8_t)e->name.len);
    p = ps_wire_putbytes(p, e->name.p, e->name.len);
    p = ps_wire_put64(p, e->incarnation);
    p = ps_wire_put8(p, (uint8_t)e->host.len);
    p = ps_wire_putbytes(p, e->host.p, e->host.len);
    return ps_wire_put16(p, e->port);
}

void
ps_wire_peer_get(ps_rd *r, ps_wire_peer *e)
{
    e->name = ps_rd_str(r, 8);
    e->incarnation = ps_rd_u64(r);
    e->host = ps_rd_str(r, 8);
    e->port = ps_rd_u16(r);
    if (e->name.len == 0 || !ps_wire_name_ok(e->name) ||
        !ps_wire_name_ok(e->host))
        r->bad = 1;
}

int
ps_wire_name_ok(ps_span s)
{
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < 0x21 || s.p[i] > 0x7e)
            return 0;
    }
    return 1;
}

/* ---- messages ---- */

size_t
ps_wire_bcast_body(size_t scope_len, size_t ch_len, size_t tlen,
                   size_t plen)
{
    uint64_t n = 2 + (uint64_t)scope_len + 2 + ch_len + 8 + 1 + 4 +
                 (uint64_t)tlen + plen;

    if (scope_len > UINT16_MAX || ch_len > UINT16_MAX || n > UINT32_MAX)
        return 0;
    return (size_t)n;
}

uint8_t *
ps_wire_bcast_put(uint8_t *p, const ps_wire_bcast *b, size_t body_len)
{
    p = ps_wire_hdr_put(p, PS_FT_BCAST, (uint32_t)body_len);
    p = ps_wire_put16(p, (uint16_t)b->scope.len);
    p = ps_wire_putbytes(p, b->scope.p, b->scope.len);
    p = ps_wire_put16(p, (uint16_t)b->channel.len);
    p = ps_wire_putbytes(p, b->channel.p, b->channel.len);
    p = ps_wire_put64(p, b->sender_id);
    p = ps_wire_put8(p, b->flags);
    p = ps_wire_put32(p, (uint32_t)b->topic.len);
    p = ps_wire_putbytes(p, b->topic.p, b->topic.len);
    return ps_wire_putbytes(p, b->payload.p, b->payload.len);
}

int
ps_wire_bcast_get(const uint8_t *body, size_t len, ps_wire_bcast *b)
{
    ps_rd r;

    ps_rd_init(&r, body, len);
    b->scope = ps_rd_str(&r, 16);
    b->channel = ps_rd_str(&r, 16);
    b->sender_id = ps_rd_u64(&r);
    b->flags = ps_rd_u8(&r);
    b->topic = ps_rd_str(&r, 32);
    b->payload = ps_rd_bytes(&r, r.left);
    if (r.bad || b->channel.len > PS_MAX_CHANNEL ||
        b->scope.len > PS_MAX_CHANNEL ||
        (b->flags & ~PS_WIRE_TOPIC_BYTES) != 0)
        return PS_EPROTO;
    return 0;
}

size_t
ps_wire_send_body(size_t tlen, size_t plen)
{
    uint64_t n = 8 + 8 + 8 + 1 + 4 + (uint64_t)tlen + plen;

    return n > UINT32_MAX ? 0 : (size_t)n;
}

uint8_t *
ps_wire_send_put(uint8_t *p, const ps_wire_send *s, size_t body_len)
{
    p = ps_wire_hdr_put(p, PS_FT_SEND, (uint32_t)body_len);
    p = ps_wire_put64(p, s->target_id);
    p = ps_wire_put64(p, s->target_inc);
    p = ps_wire_put64(p, s->sender_id);
    p = ps_wire_put8(p, s->flags);
    p = ps_wire_put32(p, (uint32_t)s->topic.len);
    p = ps_wire_putbytes(p, s->topic.p, s->topic.len);
    return ps_wire_putbytes(p, s->payload.p, s->payload.len);
}

int
ps_wire_send_get(const uint8_t *body, size_t len, ps_wire_send *s)
{
    ps_rd r;

    ps_rd_init(&r, body, len);
    s->target_id = ps_rd_u64(&r);
    s->target_inc = ps_rd_u64(&r);
    s->sender_id = ps_rd_u64(&r);
    s->flags = ps_rd_u8(&r);
    s->topic = ps_rd_str(&r, 32);
    s->payload = ps_rd_bytes(&r, r.left);
    if (r.bad || (s->flags & ~PS_WIRE_TOPIC_BYTES) != 0)
        return PS_EPROTO;
    return 0;
}

const char *
ps_wire_type_name(int type)
{
    static const char *const names[] = {
        "?", "HELLO", "CHALLENGE", "RESPONSE", "REFUSE", "PEERS", "SYNC",
        "DELTA", "BCAST", "SEND", "HEARTBEAT",
    };

    if (type < 0 || type > PS_FT_HEARTBEAT)
        return "?";
    return names[type];
}
