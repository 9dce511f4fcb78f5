/*
 * codec_fuzz.c: libFuzzer harness for the payload codec's core (no
 * Python).  Build and run from the repository root:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc/core \
 *       fuzz/codec_fuzz.c csrc/core/ps_codec.c csrc/core/ps_common.c \
 *       -o codec_fuzz
 *   ./codec_fuzz -max_total_time=30 fuzz/corpus/codec
 *
 * Each input is validated at full and at reduced depth limits, and the
 * answers must agree with one another; then it is copied through a
 * ps_buf with the put helpers, and every varint it starts with is read
 * back and re-encoded to the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ps_codec.h"

static void
check(int cond)
{
    if (!cond)
        abort();
}

/* Validation answers one of the documented codes, consistently. */
static void
fuzz_validate(const uint8_t *data, size_t size)
{
    int full = ps_codec_validate(data, size, PS_CODEC_MAX_DEPTH);
    int shallow = ps_codec_validate(data, size, 2);

    check(full == 0 || full == PS_ETRUNC || full == PS_EBADDATA
          || full == PS_EDEPTH);

    /* A lower limit can only add a depth error. */
    check(shallow == full || shallow == PS_EDEPTH);

    /* Above the format's limit, the limit is clamped. */
    check(ps_codec_validate(data, size, 1000) == full);

    /* A valid value stays valid with one more byte refused. */
    if (full == 0 && size > 0)
        check(ps_codec_validate(data, size - 1, PS_CODEC_MAX_DEPTH) != 0);
}

/* The buffer reproduces the input through every kind of put. */
static void
fuzz_buf(const uint8_t *data, size_t size)
{
    uint8_t stack[16];
    ps_buf b;
    size_t i = 0, len;
    uint8_t *copy;

    ps_buf_init(&b, stack, sizeof stack);
    while (i < size) {
        size_t n = data[i] % 7 + 1;

        if (n > size - i)
            n = size - i;
        if (n == 1)
            check(ps_buf_put_u8(&b, data[i]) == 0);
        else
            check(ps_buf_put_bytes(&b, data + i, n) == 0);
        i += n;
    }
    check(b.len == size && (size == 0 || !memcmp(b.data, data, size)));

    copy = ps_buf_detach(&b, &len);
    check(copy != NULL && len == size);
    free(copy);
    ps_buf_fini(&b);
}

/* A varint read back from the input re-encodes to the same bytes. */
static void
fuzz_varint(const uint8_t *data, size_t size)
{
    ps_reader r;
    uint64_t v;
    uint8_t out[PS_VARINT_MAX];

    ps_reader_init(&r, data, size);
    if (ps_reader_get_varint(&r, &v) != 0) {
        check(r.pos == 0);
        return;
    }
    check(ps_varint_store(out, v) == r.pos);
    check(memcmp(out, data, r.pos) == 0);
    check(ps_zigzag_encode(ps_zigzag_decode(v)) == v);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_validate(data, size);
    fuzz_buf(data, size);
    fuzz_varint(data, size);
    return 0;
}
