/*
 * ps_wire.h: the node-to-node protocol's frames, as bytes.
 *
 * Every frame is an 8-byte header followed by a body:
 *
 *   offset  size  field
 *   0       2     magic "pS" (0x70 0x53)
 *   2       1     protocol version (PS_WIRE_VERSION)
 *   3       1     frame type (ps_frame_type)
 *   4       4     body length in bytes, big-endian
 *
 * The header's layout, and the REFUSE body, never change between
 * versions, so a node can always tell a peer why it was turned away.
 * Integers are big-endian and written through the put/get helpers below;
 * nothing is read through a struct cast.  A "str8"/"str16"/"str32" is a
 * length of that many bits followed by the bytes.
 *
 * Bodies:
 *   HELLO, CHALLENGE  u32 max_frame, u64 incarnation, str8 name,
 *                     str8 listen host, u16 listen port, 32-byte nonce
 *   RESPONSE          32-byte HMAC-SHA256 proof
 *   REFUSE            u16 reason code, str16 reason text
 *   PEERS             u16 count, then per peer: str8 name,
 *                     u64 incarnation, str8 host, u16 port
 *   SYNC, DELTA       u32 count, then per entry: str16 scope,
 *                     str16 channel, u64 pid id, i32 count (a join count
 *                     in SYNC, +1 or -1 in DELTA)
 *   BCAST             str16 scope, str16 channel, u64 sender id (0: no
 *                     sender), u8 flags, str32 topic, payload (the rest)
 *   SEND              u64 target id, u64 target incarnation, u64 sender
 *                     id, u8 flags, str32 topic, payload (the rest)
 *   HEARTBEAT         empty
 *
 * Nothing here allocates or keeps state; every decoder checks each length
 * against what remains of the body and fails with PS_EPROTO.  Safe from
 * any thread.
 */
#ifndef PS_WIRE_H
#define PS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "ps_common.h"

#define PS_WIRE_MAGIC0 0x70
#define PS_WIRE_MAGIC1 0x53
#define PS_WIRE_VERSION 1
#define PS_WIRE_HDR 8
#define PS_WIRE_NONCE 32
#define PS_WIRE_MAC 32
/* Largest body accepted before a peer has authenticated. */
#define PS_WIRE_MAX_PREAUTH 1024
/* Smallest and default max_frame a node may be started with. */
#define PS_WIRE_MIN_FRAME 4096
#define PS_WIRE_DEFAULT_FRAME (16u << 20)
/* BCAST flags. */
#define PS_WIRE_TOPIC_BYTES 0x01

typedef enum ps_frame_type {
    PS_FT_HELLO = 1,
    PS_FT_CHALLENGE = 2,
    PS_FT_RESPONSE = 3,
    PS_FT_REFUSE = 4,
    PS_FT_PEERS = 5,
    PS_FT_SYNC = 6,
    PS_FT_DELTA = 7,
    PS_FT_BCAST = 8,
    PS_FT_SEND = 9,
    PS_FT_HEARTBEAT = 10,
} ps_frame_type;

/* Reasons carried by REFUSE. */
typedef enum ps_refuse_code {
    PS_REFUSE_VERSION = 1,
    PS_REFUSE_SETTINGS = 2,
    PS_REFUSE_AUTH = 3,
    PS_REFUSE_NAME = 4,
    PS_REFUSE_PROTO = 5,
} ps_refuse_code;

/* A view of bytes inside a frame; not NUL-terminated. */
typedef struct ps_span {
    const uint8_t *p;
    size_t len;
} ps_span;

/* ---- put helpers: write v at p, return the byte after it ---- */

static inline uint8_t *
ps_wire_put8(uint8_t *p, uint8_t v)
{
    p[0] = v;
    return p + 1;
}

static inline uint8_t *
ps_wire_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static inline uint8_t *
ps_wire_put32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
    return p + 4;
}

static inline uint8_t *
ps_wire_put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
    return p + 8;
}

/* Copy len bytes (len may be 0 with data NULL). */
uint8_t *ps_wire_putbytes(uint8_t *p, const void *data, size_t len);

/* ---- bounds-checked reader ---- */

/*
 * A cursor over one body.  Every get on a short body sets bad, returns 0
 * or an empty span, and leaves the cursor where it was; a decoder checks
 * bad once at the end.
 */
typedef struct ps_rd {
    const uint8_t *p;
    size_t left;
    int bad;
} ps_rd;

static inline void
ps_rd_init(ps_rd *r, const uint8_t *p, size_t len)
{
    r->p = p;
    r->left = len;
    r->bad = 0;
}

uint8_t ps_rd_u8(ps_rd *r);
uint16_t ps_rd_u16(ps_rd *r);
uint32_t ps_rd_u32(ps_rd *r);
uint64_t ps_rd_u64(ps_rd *r);
/* The next len bytes as a span. */
ps_span ps_rd_bytes(ps_rd *r, size_t len);
/* A length of bits (8, 16 or 32) then that many bytes. */
ps_span ps_rd_str(ps_rd *r, int bits);

/* ---- header ---- */

typedef struct ps_frame_hdr {
    uint8_t version;
    uint8_t type;
    uint32_t len;
} ps_frame_hdr;

/*
 * Parse the header at p (avail bytes there).  Returns 1 with *h filled
 * when a header is complete, 0 when more bytes are needed, PS_EPROTO on
 * a wrong magic, PS_ETOOBIG when the body would exceed limit.  The
 * version is reported, not judged: the handshake decides.
 */
int ps_wire_hdr_get(const uint8_t *p, size_t avail, uint32_t limit,
                    ps_frame_hdr *h);

/* Write a header for a body of len bytes; returns p + PS_WIRE_HDR. */
uint8_t *ps_wire_hdr_put(uint8_t *p, ps_frame_type type, uint32_t len);

/* ---- handshake frames ---- */

typedef struct ps_wire_hello {
    uint32_t max_frame;
    uint64_t incarnation;
    ps_span name;               /* 1..PS_MAX_NODENAME bytes */
    ps_span host;               /* at most 255 bytes */
    uint16_t port;
    uint8_t nonce[PS_WIRE_NONCE];
} ps_wire_hello;

/* Whole frame size (header included) of a HELLO or CHALLENGE. */
size_t ps_wire_hello_size(const ps_wire_hello *h);
/* Write the whole frame; returns the byte after it. */
uint8_t *ps_wire_hello_put(uint8_t *p, ps_frame_type type,
                           const ps_wire_hello *h);
/* Decode a body.  0 or PS_EPROTO (short, trailing bytes, empty name). */
int ps_wire_hello_get(const uint8_t *body, size_t len, ps_wire_hello *h);

/*
 * Decode a REFUSE body: 0 with *code and *reason set, or PS_EPROTO.
 * The frame itself is written with ps_wire_refuse_put, PS_WIRE_HDR + 4 +
 * reason_len bytes (reason_len is cut to 512).
 */
int ps_wire_refuse_get(const uint8_t *body, size_t len, uint16_t *code,
                       ps_span *reason);
size_t ps_wire_refuse_size(size_t reason_len);
uint8_t *ps_wire_refuse_put(uint8_t *p, uint16_t code, const char *reason,
                            size_t reason_len);

/* ---- membership entries (SYNC and DELTA) ---- */

typedef struct ps_wire_entry {
    ps_span scope;
    ps_span channel;
    uint64_t id;
    int32_t count;
} ps_wire_entry;

/* Bytes one entry takes in a body. */
size_t ps_wire_entry_size(size_t scope_len, size_t ch_len);
uint8_t *ps_wire_entry_put(uint8_t *p, const ps_wire_entry *e);
/* Read one entry; check r->bad afterwards. */
void ps_wire_entry_get(ps_rd *r, ps_wire_entry *e);

/* ---- peer list entries (PEERS) ---- */

typedef struct ps_wire_peer {
    ps_span name;
    uint64_t incarnation;
    ps_span host;
    uint16_t port;
} ps_wire_peer;

size_t ps_wire_peer_size(size_t name_len, size_t host_len);
uint8_t *ps_wire_peer_put(uint8_t *p, const ps_wire_peer *e);
void ps_wire_peer_get(ps_rd *r, ps_wire_peer *e);

/*
 * 1 when s is fit to be a node name or a host: printable ASCII, no
 * spaces.  Both are logged and compared as they are, so nothing else is
 * accepted from a peer (start_node refuses other names too).
 */
int ps_wire_name_ok(ps_span s);

/* ---- messages ---- */

typedef struct ps_wire_bcast {
    ps_span scope;
    ps_span channel;
    uint64_t sender_id;
    uint8_t flags;
    ps_span topic;
    ps_span payload;
} ps_wire_bcast;

/* Body size of a BCAST, or 0 when it would not fit 32 bits. */
size_t ps_wire_bcast_body(size_t scope_len, size_t ch_len, size_t tlen,
                          size_t plen);
/* Write header and body (body_len from ps_wire_bcast_body). */
uint8_t *ps_wire_bcast_put(uint8_t *p, const ps_wire_bcast *b,
                           size_t body_len);
int ps_wire_bcast_get(const uint8_t *body, size_t len, ps_wire_bcast *b);

typedef struct ps_wire_send {
    uint64_t target_id;
    uint64_t target_inc;
    uint64_t sender_id;
    uint8_t flags;
    ps_span topic;
    ps_span payload;
} ps_wire_send;

size_t ps_wire_send_body(size_t tlen, size_t plen);
uint8_t *ps_wire_send_put(uint8_t *p, const ps_wire_send *s,
                          size_t body_len);
int ps_wire_send_get(const uint8_t *body, size_t len, ps_wire_send *s);

/* Short name of a frame type for logs ("HELLO"); never NULL. */
const char *ps_wire_type_name(int type);

#endif
