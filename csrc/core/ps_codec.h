/*
 * ps_codec.h: the byte-level half of the payload codec: a growable output
 * buffer, a bounds-checked reader, the format's tags, and a validator
 * that walks a whole encoded value without Python.
 *
 * The glue (csrc/py/codec.c) turns Python objects into these bytes and
 * back.  Everything here is plain C11 and keeps no global state, so the
 * cluster's I/O thread may validate a payload without the GIL.
 *
 * Format
 * ------
 * A payload is exactly one value; bytes after it are an error.  A value
 * is a one-byte tag followed by what the tag says.  "varint" is an
 * unsigned LEB128 number: 7 bits per byte, least significant group first,
 * high bit set on every byte but the last, at most 10 bytes, no value
 * above 2^64-1 and no redundant trailing zero group.
 *
 *   tag   name       followed by                       Python value
 *   ----  ---------  --------------------------------  ----------------
 *   0x00  NONE       -                                 None
 *   0x01  FALSE      -                                 False
 *   0x02  TRUE       -                                 True
 *   0x03  INT        varint, zigzag-mapped             int in int64 range
 *   0x04  BIGPOS     varint n, n bytes magnitude (LE)  int > 0
 *   0x05  BIGNEG     varint n, n bytes magnitude (LE)  int < 0
 *   0x06  FLOAT      8 bytes, IEEE 754 binary64 (LE)   float
 *   0x07  STR        varint n, n bytes strict UTF-8    str
 *   0x08  BYTES      varint n, n bytes                 bytes
 *   0x09  LIST       varint count, count values        list
 *   0x0a  TUPLE      varint count, count values        tuple
 *   0x0b  DICT       varint count, count key/value     dict (order kept)
 *   0x0c  SET        varint count, count values        set
 *   0x0d  FROZENSET  varint count, count values        frozenset
 *   0x0e  EXT        varint n, n bytes                 the app's decoder
 *                                                      hook applied to
 *                                                      those bytes
 *
 * Zigzag maps 0, -1, 1, -2, ... to 0, 1, 2, 3, ... so small negative
 * numbers stay short.  A big magnitude has at least one byte and its last
 * (most significant) byte is not zero.  The encoder writes INT for every
 * int that fits in 64 signed bits and BIGPOS/BIGNEG for the others.
 *
 * Rules every reader enforces:
 *  - every length and count is checked against the bytes that remain
 *    before anything is allocated (a value needs at least one byte, a
 *    dict entry two), so a short input can never claim a large allocation;
 *  - containers nest at most PS_CODEC_MAX_DEPTH deep (the outermost
 *    container is depth 1; scalars and EXT add nothing);
 *  - STR holds strict UTF-8: no overlong forms, no surrogates, nothing
 *    above U+10FFFF;
 *  - a dict key or a set/frozenset member must be hashable: it may not be
 *    a LIST, DICT or SET, nor a TUPLE holding one at any depth;
 *  - unknown tags (0x0f and above) are malformed data.
 *
 * The format has no version byte of its own: it belongs to the cluster
 * protocol, whose handshake carries the version.
 */
#ifndef PS_CODEC_H
#define PS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "ps_common.h"

#define PS_CODEC_MAX_DEPTH 64

enum ps_codec_tag {
    PS_TAG_NONE = 0x00,
    PS_TAG_FALSE = 0x01,
    PS_TAG_TRUE = 0x02,
    PS_TAG_INT = 0x03,
    PS_TAG_BIGPOS = 0x04,
    PS_TAG_BIGNEG = 0x05,
    PS_TAG_FLOAT = 0x06,
    PS_TAG_STR = 0x07,
    PS_TAG_BYTES = 0x08,
    PS_TAG_LIST = 0x09,
    PS_TAG_TUPLE = 0x0a,
    PS_TAG_DICT = 0x0b,
    PS_TAG_SET = 0x0c,
    PS_TAG_FROZENSET = 0x0d,
    PS_TAG_EXT = 0x0e,
    PS_TAG_COUNT_ = 0x0f        /* first unused tag */
};

/* The longest varint: ceil(64 / 7) bytes. */
#define PS_VARINT_MAX 10

/* ---- byte order ---- */

/* Store v at p, least significant byte first. */
static inline void
ps_le64_store(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* The little-endian 64-bit number at p. */
static inline uint64_t
ps_le64_load(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Zigzag: signed to unsigned so that small magnitudes stay small. */
static inline uint64_t
ps_zigzag_encode(int64_t v)
{
    return v < 0 ? ~((uint64_t)v << 1) : (uint64_t)v << 1;
}

/* The inverse of ps_zigzag_encode; defined for every uint64_t. */
static inline int64_t
ps_zigzag_decode(uint64_t u)
{
    /* No conversion of an out-of-range unsigned value: u >> 1 fits. */
    if (u & 1)
        return -(int64_t)(u >> 1) - 1;
    return (int64_t)(u >> 1);
}

/* ---- output buffer ---- */

/*
 * A growable byte buffer.  It may start on caller storage (a stack
 * array), which it leaves as soon as it needs more room; it is on the heap
 * only then, and ps_buf_fini() frees only what it allocated.
 */
typedef struct ps_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    int owned;                  /* data is ours to free */
} ps_buf;

/*
 * Start an empty buffer on mem (cap bytes, may be NULL/0).  The buffer
 * borrows mem until it grows; the caller keeps mem alive until then or
 * until ps_buf_fini().  Cannot fail.
 */
void ps_buf_init(ps_buf *b, void *mem, size_t cap);

/* Free what the buffer allocated and leave it empty.  Idempotent. */
void ps_buf_fini(ps_buf *b);

/*
 * Make room for n more bytes past len.  0, or PS_ENOMEM (out of memory
 * or a size that would overflow), leaving the buffer as it was.
 */
int ps_buf_grow(ps_buf *b, size_t n);

/* As ps_buf_grow(), inline when the room is already there. */
static inline int
ps_buf_reserve(ps_buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return 0;
    return ps_buf_grow(b, n);
}

/*
 * Copy the contents to a new malloc'd block the caller owns and frees;
 * the buffer is left empty.  Returns NULL when out of memory (the buffer
 * is then unchanged).  *len receives the size; an empty buffer gives a
 * 1-byte block so that NULL always means failure.
 */
uint8_t *ps_buf_detach(ps_buf *b, size_t *len);

/* Where the next byte goes; valid for as many bytes as were reserved. */
static inline uint8_t *
ps_buf_end(ps_buf *b)
{
    return b->data + b->len;
}

/* Count n bytes written at ps_buf_end() after reserving them. */
static inline void
ps_buf_commit(ps_buf *b, size_t n)
{
    b->len += n;
}

/*
 * Write v as a varint at p, which has room for PS_VARINT_MAX bytes.
 * Returns the number of bytes written (1 to 10).
 */
static inline size_t
ps_varint_store(uint8_t *p, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Append one byte.  0 or PS_ENOMEM. */
static inline int
ps_buf_put_u8(ps_buf *b, uint8_t v)
{
    if (ps_buf_reserve(b, 1) < 0)
        return PS_ENOMEM;
    b->data[b->len++] = v;
    return 0;
}

/* Append v as a varint.  0 or PS_ENOMEM. */
static inline int
ps_buf_put_varint(ps_buf *b, uint64_t v)
{
    if (ps_buf_reserve(b, PS_VARINT_MAX) < 0)
        return PS_ENOMEM;
    b->len += ps_varint_store(ps_buf_end(b), v);
    return 0;
}

/* Append a tag and a varint (a length, a count or an INT).  0/PS_ENOMEM. */
static inline int
ps_buf_put_tagged(ps_buf *b, uint8_t tag, uint64_t v)
{
    if (ps_buf_reserve(b, 1 + PS_VARINT_MAX) < 0)
        return PS_ENOMEM;
    b->data[b->len++] = tag;
    b->len += ps_varint_store(ps_buf_end(b), v);
    return 0;
}

/* Append v as 8 bytes, little-endian.  0 or PS_ENOMEM. */
static inline int
ps_buf_put_le64(ps_buf *b, uint64_t v)
{
    if (ps_buf_reserve(b, 8) < 0)
        return PS_ENOMEM;
    ps_le64_store(ps_buf_end(b), v);
    b->len += 8;
    return 0;
}

/* Append n bytes copied from p.  0 or PS_ENOMEM. */
int ps_buf_put_bytes(ps_buf *b, const void *p, size_t n);

/* ---- reader ---- */

/*
 * A cursor over an encoded input it does not own.  On failure a get
 * helper leaves pos where it was, so pos names the offending byte.
 */
typedef struct ps_reader {
    const uint8_t *data;
    size_t len;
    size_t pos;
} ps_reader;

/* Start reading len bytes at data.  Cannot fail. */
static inline void
ps_reader_init(ps_reader *r, const void *data, size_t len)
{
    r->data = data;
    r->len = len;
    r->pos = 0;
}

/* Bytes not read yet. */
static inline size_t
ps_reader_left(const ps_reader *r)
{
    return r->len - r->pos;
}

/* One byte into *v.  0 or PS_ETRUNC. */
static inline int
ps_reader_get_u8(ps_reader *r, uint8_t *v)
{
    if (r->pos >= r->len)
        return PS_ETRUNC;
    *v = r->data[r->pos++];
    return 0;
}

/*
 * A varint into *v.  0, PS_ETRUNC (input ends inside it) or PS_EBADDATA
 * (longer than 10 bytes, above 2^64-1, or a redundant zero group).
 */
int ps_reader_get_varint(ps_reader *r, uint64_t *v);

/* 8 little-endian bytes into *v.  0 or PS_ETRUNC. */
int ps_reader_get_le64(ps_reader *r, uint64_t *v);

/*
 * Point *p at the next n bytes (inside the input; nothing is copied) and
 * step over them.  0 or PS_ETRUNC.
 */
int ps_reader_get_bytes(ps_reader *r, size_t n, const uint8_t **p);

/*
 * A varint length followed by that many bytes: *p points at them, *n is
 * the length.  0, PS_ETRUNC (fewer bytes left than claimed) or
 * PS_EBADDATA (bad varint).  On failure pos is unchanged.
 */
int ps_reader_get_blob(ps_reader *r, const uint8_t **p, size_t *n);

/*
 * A varint count of items that need at least min_size bytes each.  0,
 * PS_ETRUNC when count * min_size exceeds the bytes left (so the count is
 * safe to allocate for), or PS_EBADDATA (bad varint).  min_size >= 1.
 */
int ps_reader_get_count(ps_reader *r, size_t min_size, size_t *count);

/* ---- validation ---- */

/* 1 when p[0..n) is strict UTF-8 (as Python's decoder accepts), else 0. */
int ps_utf8_valid(const uint8_t *p, size_t n);

/*
 * The same, also accepting encoded lone surrogates when surrogates is
 * non-zero: what Python's "surrogatepass" encoder makes of any str.
 * Channel names and topics cross nodes in this form.
 */
int ps_utf8_valid_sp(const uint8_t *p, size_t n, int surrogates);

/*
 * Nonzero when a value with this tag can be a dict key or set member
 * given that its contents are (tuples are checked item by item).
 */
static inline int
ps_codec_tag_hashable(uint8_t tag)
{
    return tag != PS_TAG_LIST && tag != PS_TAG_DICT && tag != PS_TAG_SET;
}

/*
 * Step r over one encoded value, checking every rule of the format, with
 * at most max_depth containers nested (clamped to PS_CODEC_MAX_DEPTH,
 * which also bounds this function's recursion).  Returns 0 with r past
 * the value, or PS_ETRUNC / PS_EBADDATA / PS_EDEPTH with r->pos at the
 * offending byte (for a bad tag or length, the start of that value).
 * Bytes after the value are not looked at.  Never allocates.
 */
int ps_codec_skip(ps_reader *r, unsigned max_depth);

/*
 * Check that p[0..len) is exactly one well-formed value, nesting at most
 * max_depth containers (clamped to PS_CODEC_MAX_DEPTH).  Returns 0, or
 * PS_ETRUNC, PS_EBADDATA (also for trailing bytes) or PS_EDEPTH.  Never
 * allocates; safe from any thread.
 */
int ps_codec_validate(const uint8_t *p, size_t len, unsigned max_depth);

#endif
