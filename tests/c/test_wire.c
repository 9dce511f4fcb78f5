/*
 * test_wire.c: unit tests of the frame layer (ps_wire.c), no Python.
 * Built and run by tests/test_cluster_wire.py; prints each failure and
 * exits non-zero if any.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_wire.h"

#include "check.h"

#define SPAN(s) ((ps_span){ (const uint8_t *)(s), sizeof(s) - 1 })

static void
test_header(void)
{
    uint8_t buf[PS_WIRE_HDR];
    ps_frame_hdr h;

    ps_wire_hdr_put(buf, PS_FT_BCAST, 300);
    CHECK(buf[0] == 'p' && buf[1] == 'S' && buf[2] == PS_WIRE_VERSION);
    CHECK(buf[3] == PS_FT_BCAST && buf[6] == 1 && buf[7] == 44);
    for (size_t n = 0; n < PS_WIRE_HDR; n++)
        CHECK(ps_wire_hdr_get(buf, n, 1000, &h) == 0);
    CHECK(ps_wire_hdr_get(buf, PS_WIRE_HDR, 1000, &h) == 1);
    CHECK(h.type == PS_FT_BCAST && h.len == 300 && h.version == 1);
    CHECK(ps_wire_hdr_get(buf, PS_WIRE_HDR, 299, &h) == PS_ETOOBIG);

    /* A wrong first byte is refused at once, before a whole header. */
    buf[0] = 'x';
    CHECK(ps_wire_hdr_get(buf, 1, 1000, &h) == PS_EPROTO);
    /* A 4 GiB claim is refused by the limit, not allocated. */
    memcpy(buf, "pS\x01\x08\xff\xff\xff\xff", 8);
    CHECK(ps_wire_hdr_get(buf, 8, 16u << 20, &h) == PS_ETOOBIG);
}

static void
test_hello(void)
{
    ps_wire_hello h = { 0 }, g;
    uint8_t buf[600];
    size_t n;

    h.max_frame = 1234;
    h.incarnation = 0x0102030405060708ull;
    h.name = SPAN("node-a");
    h.host = SPAN("127.0.0.1");
    h.port = 4369;
    memset(h.nonce, 0xab, sizeof h.nonce);
    n = ps_wire_hello_size(&h);
    CHECK(ps_wire_hello_put(buf, PS_FT_HELLO, &h) == buf + n);
    CHECK(ps_wire_hello_get(buf + PS_WIRE_HDR, n - PS_WIRE_HDR, &g) == 0);
    CHECK(g.max_frame == 1234 && g.incarnation == h.incarnation);
    CHECK(g.port == 4369 && g.name.len == 6 &&
          memcmp(g.name.p, "node-a", 6) == 0);
    CHECK(memcmp(g.nonce, h.nonce, PS_WIRE_NONCE) == 0);

    /* Every truncation and one trailing byte are malformed. */
    for (size_t k = 0; k < n - PS_WIRE_HDR; k++)
        CHECK(ps_wire_hello_get(buf + PS_WIRE_HDR, k, &g) == PS_EPROTO);
    CHECK(ps_wire_hello_get(buf + PS_WIRE_HDR, n - PS_WIRE_HDR + 1, &g) ==
          PS_EPROTO);
}

static void
test_bcast(void)
{
    ps_wire_bcast b = { 0 }, g;
    size_t body = ps_wire_bcast_body(7, 4, 5, 3);
    uint8_t *buf = malloc(PS_WIRE_HDR + body);

    b.scope = SPAN("default");
    b.channel = SPAN("room");
    b.sender_id = 42;
    b.flags = PS_WIRE_TOPIC_BYTES;
    b.topic = SPAN("hello");
    b.payload = SPAN("\x07\x01x");
    CHECK(body == 2 + 7 + 2 + 4 + 8 + 1 + 4 + 5 + 3);
    CHECK(ps_wire_bcast_put(buf, &b, body) == buf + PS_WIRE_HDR + body);
    CHECK(ps_wire_bcast_get(buf + PS_WIRE_HDR, body, &g) == 0);
    CHECK(g.sender_id == 42 && g.flags == PS_WIRE_TOPIC_BYTES);
    CHECK(g.payload.len == 3 && memcmp(g.payload.p, "\x07\x01x", 3) == 0);
    /* Truncations that cut into the fixed fields or the topic fail; the
     * payload is "the rest", so shorter payloads are well-formed. */
    for (size_t k = 0; k < body - 3; k++)
        CHECK(ps_wire_bcast_get(buf + PS_WIRE_HDR, k, &g) == PS_EPROTO);
    /* Unknown flags are refused. */
    buf[PS_WIRE_HDR + 2 + 7 + 2 + 4 + 8] = 0x80;
    CHECK(ps_wire_bcast_get(buf + PS_WIRE_HDR, body, &g) == PS_EPROTO);
    /* A body that would not fit 32 bits is refused by the sizer. */
    CHECK(ps_wire_bcast_body(1, 1, 1, (size_t)UINT32_MAX) == 0);
    free(buf);
}

static void
test_send_and_refuse(void)
{
    ps_wire_send s = { 0 }, g;
    size_t body = ps_wire_send_body(1, 2);
    uint8_t buf[64];
    uint16_t code;
    ps_span why;

    s.target_id = 9;
    s.target_inc = 77;
    s.sender_id = 0;
    s.topic = SPAN("t");
    s.payload = SPAN("pp");
    ps_wire_send_put(buf, &s, body);
    CHECK(ps_wire_send_get(buf + PS_WIRE_HDR, body, &g) == 0);
    CHECK(g.target_id == 9 && g.target_inc == 77 && g.payload.len == 2);

    ps_wire_refuse_put(buf, PS_REFUSE_AUTH, "no", 2);
    CHECK(ps_wire_refuse_get(buf + PS_WIRE_HDR, 6, &code, &why) == 0);
    CHECK(code == PS_REFUSE_AUTH && why.len == 2);
    CHECK(ps_wire_refuse_get(buf + PS_WIRE_HDR, 5, &code, &why) ==
          PS_EPROTO);
}

static void
test_entries(void)
{
    ps_wire_entry e = { SPAN("s"), SPAN("ch"), 5, -1 }, g;
    uint8_t buf[64];
    ps_rd r;

    CHECK(ps_wire_entry_put(buf, &e) == buf + ps_wire_entry_size(1, 2));
    ps_rd_init(&r, buf, ps_wire_entry_size(1, 2));
    ps_wire_entry_get(&r, &g);
    CHECK(!r.bad && r.left == 0 && g.id == 5 && g.count == -1);
    ps_rd_init(&r, buf, ps_wire_entry_size(1, 2) - 1);
    ps_wire_entry_get(&r, &g);
    CHECK(r.bad);
}

int
main(void)
{
    test_header();
    test_hello();
    test_bcast();
    test_send_and_refuse();
    test_entries();
    if (failures)
        printf("%d failure(s)\n", failures);
    return failures != 0;
}
