/*
 * test_codec_core.c: unit tests of the codec core that Python cannot
 * reach: the buffer's move from caller storage to the heap, detach, the
 * reader's positions after failures, and the count guard.  Built and run
 * by tests/test_codec.py; by hand:
 *
 *   cc -std=c11 -D_GNU_SOURCE -Wall -Icsrc/core \
 *       tests/c/test_codec_core.c \
 *       csrc/core/ps_codec.c csrc/core/ps_common.c -o /tmp/t && /tmp/t
 *
 * Prints one line per failed check and exits non-zero if any failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_codec.h"

#include "check.h"

static void
test_buf_leaves_caller_storage(void)
{
    uint8_t stack[4];
    ps_buf b;
    size_t len;
    uint8_t *p;

    ps_buf_init(&b, stack, sizeof stack);
    CHECK(ps_buf_put_bytes(&b, "abc", 3) == 0);
    CHECK(b.data == stack && !b.owned);
    CHECK(ps_buf_put_le64(&b, 0x0807060504030201ULL) == 0);
    CHECK(b.data != stack && b.owned && b.len == 11);
    CHECK(memcmp(b.data, "abc\1\2\3\4\5\6\7\10", 11) == 0);

    p = ps_buf_detach(&b, &len);
    CHECK(p != NULL && len == 11 && memcmp(p, "abc\1", 4) == 0);
    CHECK(b.len == 0 && b.data == NULL);
    free(p);
    ps_buf_fini(&b);
    ps_buf_fini(&b);            /* idempotent */
}

static void
test_buf_refuses_overflowing_sizes(void)
{
    ps_buf b;

    ps_buf_init(&b, NULL, 0);
    CHECK(ps_buf_put_u8(&b, 1) == 0);
    CHECK(ps_buf_reserve(&b, SIZE_MAX) == PS_ENOMEM);
    CHECK(b.len == 1 && b.data[0] == 1);
    ps_buf_fini(&b);
}

static void
test_varint_edges(void)
{
    static const uint64_t vals[] = {0, 1, 127, 128, 16383, 16384,
                                    UINT32_MAX, UINT64_MAX};
    uint8_t out[PS_VARINT_MAX];

    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        ps_reader r;
        uint64_t v = 0;
        size_t n = ps_varint_store(out, vals[i]);

        ps_reader_init(&r, out, n);
        CHECK(ps_reader_get_varint(&r, &v) == 0);
        CHECK(v == vals[i] && r.pos == n);

        /* Cut short: truncated, and the position does not move. */
        ps_reader_init(&r, out, n - 1);
        CHECK(ps_reader_get_varint(&r, &v) == PS_ETRUNC && r.pos == 0);
    }
    CHECK(ps_zigzag_decode(ps_zigzag_encode(INT64_MIN)) == INT64_MIN);
    CHECK(ps_zigzag_encode(-1) == 1 && ps_zigzag_encode(1) == 2);
}

static void
test_count_guard(void)
{
    /* 2**32 items claimed, 4 bytes left. */
    static const uint8_t in[] = {0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0, 0};
    static const uint8_t two[] = {0x02, 0, 0, 0, 0};
    ps_reader r;
    size_t n;

    ps_reader_init(&r, in, sizeof in);
    CHECK(ps_reader_get_count(&r, 1, &n) == PS_ETRUNC && r.pos == 0);

    /* Two dict entries need four bytes: enough; a third would not be. */
    ps_reader_init(&r, two, sizeof two);
    CHECK(ps_reader_get_count(&r, 2, &n) == 0 && n == 2);
    ps_reader_init(&r, two, 4);
    CHECK(ps_reader_get_count(&r, 2, &n) == PS_ETRUNC);
}

static void
test_validate_reports_position(void)
{
    /* [None, <unknown tag 0x42>] */
    static const uint8_t in[] = {PS_TAG_LIST, 2, PS_TAG_NONE, 0x42};
    ps_reader r;

    ps_reader_init(&r, in, sizeof in);
    CHECK(ps_codec_skip(&r, PS_CODEC_MAX_DEPTH) == PS_EBADDATA);
    CHECK(r.pos == 3);
    CHECK(ps_codec_validate(in, 3, PS_CODEC_MAX_DEPTH) == PS_ETRUNC);
    CHECK(ps_codec_validate(in, 0, PS_CODEC_MAX_DEPTH) == PS_ETRUNC);
}

int
main(void)
{
    test_buf_leaves_caller_storage();
    test_buf_refuses_overflowing_sizes();
    test_varint_edges();
    test_count_guard();
    test_validate_reports_position();
    if (failures == 0)
        printf("ok\n");
    return failures ? 1 : 0;
}
