/*
 * ps_codec.c: the output buffer, the reader's get helpers, strict UTF-8
 * checking and the validator of the payload format (see ps_codec.h).
 *
 * No state, no locks: every function works on the buffer or reader it is
 * given, so any thread (the I/O thread included) may call them.
 */
#include "ps_codec.h"

#include <stdlib.h>
#include <string.h>

/* ---- output buffer ---- */

void
ps_buf_init(ps_buf *b, void *mem, size_t cap)
{
    b->data = mem;
    b->len = 0;
    b->cap = mem ? cap : 0;
    b->owned = 0;
}

void
ps_buf_fini(ps_buf *b)
{
    if (b->owned)
        free(b->data);
    ps_buf_init(b, NULL, 0);
}

int
ps_buf_grow(ps_buf *b, size_t n)
{
    size_t need, cap;
    uint8_t *p;

    if (b->cap - b->len >= n)
        return 0;
    if (n > SIZE_MAX / 2 - b->len)
        return PS_ENOMEM;
    need = b->len + n;

    /* Doubling keeps a long run of small appends linear. */
    cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need)
        cap *= 2;

    if (b->owned) {
        p = realloc(b->data, cap);
        if (p == NULL)
            return PS_ENOMEM;
    } else {
        p = malloc(cap);
        if (p == NULL)
            return PS_ENOMEM;
        if (b->len > 0)
            memcpy(p, b->data, b->len);
        b->owned = 1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

uint8_t *
ps_buf_detach(ps_buf *b, size_t *len)
{
    uint8_t *p = malloc(b->len ? b->len : 1);

    if (p == NULL)
        return NULL;
    if (b->len > 0)
        memcpy(p, b->data, b->len);
    *len = b->len;
    ps_buf_fini(b);
    return p;
}

int
ps_buf_put_bytes(ps_buf *b, const void *p, size_t n)
{
    if (ps_buf_reserve(b, n) < 0)
        return PS_ENOMEM;
    if (n > 0)
        memcpy(ps_buf_end(b), p, n);
    b->len += n;
    return 0;
}

/* ---- reader ---- */

int
ps_reader_get_varint(ps_reader *r, uint64_t *v)
{
    uint64_t acc = 0;
    size_t pos = r->pos;

    for (unsigned shift = 0; ; shift += 7) {
        uint8_t c;

        if (pos >= r->len)
            return PS_ETRUNC;
        c = r->data[pos++];

        /* The tenth byte carries bit 63 only. */
        if (shift == 63 && c > 1)
            return PS_EBADDATA;
        acc |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            /* A zero last group after the first is a second spelling. */
            if (c == 0 && shift > 0)
                return PS_EBADDATA;
            break;
        }
    }
    r->pos = pos;
    *v = acc;
    return 0;
}

int
ps_reader_get_le64(ps_reader *r, uint64_t *v)
{
    if (ps_reader_left(r) < 8)
        return PS_ETRUNC;
    *v = ps_le64_load(r->data + r->pos);
    r->pos += 8;
    return 0;
}

int
ps_reader_get_bytes(ps_reader *r, size_t n, const uint8_t **p)
{
    if (ps_reader_left(r) < n)
        return PS_ETRUNC;
    *p = r->data + r->pos;
    r->pos += n;
    return 0;
}

int
ps_reader_get_blob(ps_reader *r, const uint8_t **p, size_t *n)
{
    size_t start = r->pos;
    uint64_t u;
    int rc = ps_reader_get_varint(r, &u);

    if (rc < 0)
        return rc;
    if (u > ps_reader_left(r)) {
        r->pos = start;
        return PS_ETRUNC;
    }
    *p = r->data + r->pos;
    *n = (size_t)u;
    r->pos += (size_t)u;
    return 0;
}

int
ps_reader_get_count(ps_reader *r, size_t min_size, size_t *count)
{
    size_t start = r->pos;
    uint64_t u;
    int rc = ps_reader_get_varint(r, &u);

    if (rc < 0)
        return rc;
    if (u > ps_reader_left(r) / min_size) {
        r->pos = start;
        return PS_ETRUNC;
    }
    *count = (size_t)u;
    return 0;
}

/* ---- UTF-8 ---- */

/* Length of the sequence led by c, 0 when c cannot lead one. */
static unsigned
utf8_lead_len(uint8_t c)
{
    if (c < 0x80)
        return 1;
    if (c < 0xc2)
        return 0;               /* continuation byte or overlong lead */
    if (c < 0xe0)
        return 2;
    if (c < 0xf0)
        return 3;
    if (c < 0xf5)
        return 4;
    return 0;                   /* beyond U+10FFFF */
}

int
ps_utf8_valid(const uint8_t *p, size_t n)
{
    return ps_utf8_valid_sp(p, n, 0);
}

int
ps_utf8_valid_sp(const uint8_t *p, size_t n, int surrogates)
{
    size_t i = 0;

    while (i < n) {
        uint8_t c = p[i];
        unsigned len;
        uint8_t lo = 0x80, hi = 0xbf;

        /* Text is mostly ASCII: skip it eight bytes at a time. */
        if (c < 0x80) {
            uint64_t w;

            while (n - i >= 8) {
                memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ULL)
                    break;
                i += 8;
            }
            while (i < n && p[i] < 0x80)
                i++;
            continue;
        }

        len = utf8_lead_len(c);
        if (len == 0 || n - i < len)
            return 0;

        /* The second byte's range rules out overlongs and surrogates. */
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed && !surrogates)
            hi = 0x9f;
        else if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
        if (p[i + 1] < lo || p[i + 1] > hi)
            return 0;
        for (unsigned k = 2; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
        }
        i += len;
    }
    return 1;
}

/* ---- validation ---- */

static int skip_value(ps_reader *r, unsigned depth, unsigned max_depth,
                      int key);

/* A blob that must be a canonical big-int magnitude. */
static int
skip_magnitude(ps_reader *r, size_t start)
{
    const uint8_t *p;
    size_t n;
    int rc = ps_reader_get_blob(r, &p, &n);

    if (rc < 0)
        return rc;
    if (n == 0 || p[n - 1] == 0) {
        r->pos = start;
        return PS_EBADDATA;
    }
    return 0;
}

static int
skip_str(ps_reader *r, size_t start)
{
    const uint8_t *p;
    size_t n;
    int rc = ps_reader_get_blob(r, &p, &n);

    if (rc < 0)
        return rc;
    if (!ps_utf8_valid(p, n)) {
        r->pos = start;
        return PS_EBADDATA;
    }
    return 0;
}

/*
 * The items of a container whose tag and count header starts at start.
 * depth is the container's own depth.
 */
static int
skip_container(ps_reader *r, uint8_t tag, unsigned depth,
               unsigned max_depth, int key)
{
    size_t count;
    int member_key = key || tag == PS_TAG_SET || tag == PS_TAG_FROZENSET;
    int rc;

    rc = ps_reader_get_count(r, tag == PS_TAG_DICT ? 2 : 1, &count);
    if (rc < 0)
        return rc;

    for (size_t i = 0; i < count; i++) {
        if (tag == PS_TAG_DICT) {
            rc = skip_value(r, depth, max_depth, 1);
            if (rc == 0)
                rc = skip_value(r, depth, max_depth, 0);
        } else {
            rc = skip_value(r, depth, max_depth, member_key);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/*
 * One value at r.  depth counts the containers around it; key is set when
 * the value must be hashable.
 */
static int
skip_value(ps_reader *r, unsigned depth, unsigned max_depth, int key)
{
    size_t start = r->pos;
    const uint8_t *p;
    uint64_t u;
    size_t n;
    uint8_t tag;
    int rc = ps_reader_get_u8(r, &tag);

    if (rc < 0)
        return rc;

    switch (tag) {
    case PS_TAG_NONE: case PS_TAG_FALSE: case PS_TAG_TRUE:
        return 0;
    case PS_TAG_INT:
        return ps_reader_get_varint(r, &u);
    case PS_TAG_BIGPOS: case PS_TAG_BIGNEG:
        return skip_magnitude(r, start);
    case PS_TAG_FLOAT:
        return ps_reader_get_le64(r, &u);
    case PS_TAG_STR:
        return skip_str(r, start);
    case PS_TAG_BYTES: case PS_TAG_EXT:
        return ps_reader_get_blob(r, &p, &n);
    case PS_TAG_LIST: case PS_TAG_TUPLE: case PS_TAG_DICT:
    case PS_TAG_SET: case PS_TAG_FROZENSET:
        break;
    default:
        r->pos = start;
        return PS_EBADDATA;
    }

    if (key && !ps_codec_tag_hashable(tag)) {
        r->pos = start;
        return PS_EBADDATA;
    }
    if (depth >= max_depth) {
        r->pos = start;
        return PS_EDEPTH;
    }
    return skip_container(r, tag, depth + 1, max_depth, key);
}

int
ps_codec_skip(ps_reader *r, unsigned max_depth)
{
    if (max_depth > PS_CODEC_MAX_DEPTH)
        max_depth = PS_CODEC_MAX_DEPTH;
    return skip_value(r, 0, max_depth, 0);
}

int
ps_codec_validate(const uint8_t *p, size_t len, unsigned max_depth)
{
    ps_reader r;
    int rc;

    ps_reader_init(&r, p, len);
    rc = ps_codec_skip(&r, max_depth);
    if (rc < 0)
        return rc;
    return ps_reader_left(&r) == 0 ? 0 : PS_EBADDATA;
}
