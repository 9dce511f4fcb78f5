/*
 * wire_fuzz.c: libFuzzer harness for the frame decoders (ps_wire.c).
 * Build and run from the repository root:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc/core \
 *       fuzz/wire_fuzz.c csrc/core/ps_wire.c -o wire_fuzz
 *   ./wire_fuzz -max_total_time=30 fuzz/corpus/wire
 *
 * The input is read as a stream of frames, as a peer's bytes would be.
 * Every header is checked against a small and a large limit (the answers
 * must agree), and every body that decodes is written back with the put
 * helpers and must decode to the same fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ps_wire.h"

static void
check(int cond)
{
    if (!cond)
        abort();
}

static int
span_eq(ps_span a, ps_span b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* Every span a decoder returns lies inside the body. */
static void
check_inside(ps_span s, const uint8_t *body, size_t len)
{
    check(s.len == 0 || (s.p >= body && s.p + s.len <= body + len));
}

static void
fuzz_hello(const uint8_t *body, size_t len)
{
    ps_wire_hello h, h2;
    uint8_t out[PS_WIRE_HDR + PS_WIRE_MAX_PREAUTH + 600];
    ps_frame_hdr fh;

    if (ps_wire_hello_get(body, len, &h) != 0)
        return;
    check_inside(h.name, body, len);
    check_inside(h.host, body, len);
    check(ps_wire_hello_size(&h) == PS_WIRE_HDR + len);
    check(ps_wire_hello_put(out, PS_FT_HELLO, &h) ==
          out + PS_WIRE_HDR + len);
    check(ps_wire_hdr_get(out, PS_WIRE_HDR + len, UINT32_MAX, &fh) == 1);
    check(ps_wire_hello_get(out + PS_WIRE_HDR, fh.len, &h2) == 0);
    check(h.max_frame == h2.max_frame && h.incarnation == h2.incarnation);
    check(span_eq(h.name, h2.name) && span_eq(h.host, h2.host));
    check(memcmp(h.nonce, h2.nonce, PS_WIRE_NONCE) == 0);
}

static void
fuzz_bcast(const uint8_t *body, size_t len)
{
    ps_wire_bcast b, b2;
    size_t n;
    uint8_t *out;

    if (ps_wire_bcast_get(body, len, &b) != 0)
        return;
    check_inside(b.payload, body, len);
    n = ps_wire_bcast_body(b.scope.len, b.channel.len, b.topic.len,
                           b.payload.len);
    check(n == len);
    out = malloc(PS_WIRE_HDR + n);
    check(out != NULL);
    check(ps_wire_bcast_put(out, &b, n) == out + PS_WIRE_HDR + n);
    check(memcmp(out + PS_WIRE_HDR, body, len) == 0);
    check(ps_wire_bcast_get(out + PS_WIRE_HDR, n, &b2) == 0);
    check(span_eq(b.topic, b2.topic) && span_eq(b.payload, b2.payload));
    free(out);
}

static void
fuzz_send(const uint8_t *body, size_t len)
{
    ps_wire_send s;
    size_t n;
    uint8_t *out;

    if (ps_wire_send_get(body, len, &s) != 0)
        return;
    n = ps_wire_send_body(s.topic.len, s.payload.len);
    check(n == len);
    out = malloc(PS_WIRE_HDR + n);
    check(out != NULL);
    ps_wire_send_put(out, &s, n);
    check(memcmp(out + PS_WIRE_HDR, body, len) == 0);
    free(out);
}

/* SYNC/DELTA and PEERS: walk the entries as the node does. */
static void
fuzz_entries(const uint8_t *body, size_t len, int peers)
{
    ps_rd r;
    uint32_t n;

    ps_rd_init(&r, body, len);
    n = peers ? ps_rd_u16(&r) : ps_rd_u32(&r);
    for (uint32_t i = 0; i < n && !r.bad; i++) {
        if (peers) {
            ps_wire_peer e;

            ps_wire_peer_get(&r, &e);
            if (!r.bad)
                check_inside(e.host, body, len);
        } else {
            ps_wire_entry e;

            ps_wire_entry_get(&r, &e);
            if (!r.bad)
                check_inside(e.channel, body, len);
        }
    }
    check(r.left <= len);
}

static void
fuzz_body(const ps_frame_hdr *h, const uint8_t *body)
{
    uint16_t code;
    ps_span reason;

    switch (h->type) {
    case PS_FT_HELLO:
    case PS_FT_CHALLENGE:
        fuzz_hello(body, h->len);
        break;
    case PS_FT_REFUSE:
        if (ps_wire_refuse_get(body, h->len, &code, &reason) == 0)
            check(reason.len + 4 == h->len);
        break;
    case PS_FT_BCAST:
        fuzz_bcast(body, h->len);
        break;
    case PS_FT_SEND:
        fuzz_send(body, h->len);
        break;
    case PS_FT_SYNC:
    case PS_FT_DELTA:
        fuzz_entries(body, h->len, 0);
        break;
    case PS_FT_PEERS:
        fuzz_entries(body, h->len, 1);
        break;
    }
    (void)ps_wire_type_name(h->type);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    while (off < size) {
        ps_frame_hdr h, small;
        int rc = ps_wire_hdr_get(data + off, size - off, UINT32_MAX, &h);
        int rs = ps_wire_hdr_get(data + off, size - off,
                                 PS_WIRE_MAX_PREAUTH, &small);

        /* A lower limit can only add a size refusal. */
        check(rs == rc || (rs == PS_ETOOBIG && rc == 1));
        if (rc != 1 || size - off - PS_WIRE_HDR < h.len)
            break;
        fuzz_body(&h, data + off + PS_WIRE_HDR);
        off += PS_WIRE_HDR + (size_t)h.len;
    }
    return 0;
}
