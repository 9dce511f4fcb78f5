/*
 * codec.c: Python objects to the payload format of ps_codec.h and back,
 * and the module functions encode(), decode() and set_codec_hooks().
 *
 * Everything here runs with the GIL held.  Exact built-in types are
 * tested first, by pointer comparison; a subclass of a supported type is
 * then encoded as its base type, read through the base type's C API
 * (PyDict_Next, the set iterator of the set type itself, the str's own
 * characters), so no method a subclass overrides is ever called: an
 * OrderedDict arrives as a dict, a namedtuple as a tuple, an IntEnum as an
 * int.  Anything else goes to the application's encoder hook, when one is
 * installed, and travels as an EXT value.
 *
 * Only the hooks run Python code during a walk, and they may mutate the
 * containers being walked; the walkers hold a reference to each item they
 * visit and refuse a container whose size changed under them.
 */
#include "glue.h"

#include <stdarg.h>
#include <string.h>

#include "ps_codec.h"

/* Room on the C stack for a typical payload before the buffer mallocs. */
#define ENCODE_STACK_BYTES 512

static int enc_value(ps_state *st, PyObject *obj, ps_buf *out,
                     unsigned depth, int key);

/* ---- encoding: scalars ---- */

static int
no_memory(void)
{
    PyErr_NoMemory();
    return -1;
}

static int
put_u8(ps_buf *out, uint8_t tag)
{
    return ps_buf_put_u8(out, tag) < 0 ? no_memory() : 0;
}

static int
put_tagged(ps_buf *out, uint8_t tag, uint64_t v)
{
    return ps_buf_put_tagged(out, tag, v) < 0 ? no_memory() : 0;
}

/* A tag, a varint length and n bytes, reserved in one step. */
static int
put_blob(ps_buf *out, uint8_t tag, const void *p, size_t n)
{
    if (n > SIZE_MAX - 1 - PS_VARINT_MAX
        || ps_buf_reserve(out, 1 + PS_VARINT_MAX + n) < 0)
        return no_memory();
    out->data[out->len++] = tag;
    out->len += ps_varint_store(ps_buf_end(out), n);
    memcpy(ps_buf_end(out), p, n);
    out->len += n;
    return 0;
}

/* Two's complement negation of an n-byte little-endian number. */
static void
negate_le(uint8_t *p, size_t n)
{
    unsigned carry = 1;

    for (size_t i = 0; i < n; i++) {
        unsigned v = (uint8_t)~p[i] + carry;

        p[i] = (uint8_t)v;
        carry = v >> 8;
    }
}

/*
 * Bytes enough to hold obj (an int) in two's complement, or -1 with an
 * exception set.
 */
static Py_ssize_t
long_width(PyObject *obj)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyLong_AsNativeBytes(obj, NULL, 0,
                                Py_ASNATIVEBYTES_LITTLE_ENDIAN);
#else
    size_t bits = _PyLong_NumBits(obj);

    if (bits == (size_t)-1 && PyErr_Occurred())
        return -1;
    if (bits / 8 >= (size_t)PY_SSIZE_T_MAX - 1) {
        PyErr_SetString(PyExc_OverflowError, "int too large to encode");
        return -1;
    }
    return (Py_ssize_t)(bits / 8 + 1);     /* + room for the sign bit */
#endif
}

/* Write obj as n bytes of little-endian two's complement at p. */
static int
long_store(PyObject *obj, uint8_t *p, size_t n)
{
#if PY_VERSION_HEX >= 0x030D0000
    Py_ssize_t need = PyLong_AsNativeBytes(obj, p, (Py_ssize_t)n,
                                           Py_ASNATIVEBYTES_LITTLE_ENDIAN);

    if (need < 0)
        return -1;
    if ((size_t)need > n) {
        PyErr_SetString(PyExc_SystemError, "int changed width");
        return -1;
    }
    return 0;
#else
    return _PyLong_AsByteArray((PyLongObject *)obj, p, n, 1, 1);
#endif
}

/*
 * An int outside int64 as BIGPOS/BIGNEG.  The magnitude is built past
 * the room for the header, whose length is known only once the magnitude
 * is trimmed, and then moved into place.
 */
static int
enc_bigint(PyObject *obj, int negative, ps_buf *out)
{
    Py_ssize_t width = long_width(obj);
    size_t hdr = 1 + PS_VARINT_MAX, n;
    uint8_t *mag;

    if (width < 0)
        return -1;
    if ((size_t)width > SIZE_MAX - hdr
        || ps_buf_reserve(out, hdr + (size_t)width) < 0)
        return no_memory();

    mag = ps_buf_end(out) + hdr;
    if (long_store(obj, mag, (size_t)width) < 0)
        return -1;
    if (negative)
        negate_le(mag, (size_t)width);
    n = (size_t)width;
    while (n > 0 && mag[n - 1] == 0)
        n--;

    out->data[out->len++] = negative ? PS_TAG_BIGNEG : PS_TAG_BIGPOS;
    out->len += ps_varint_store(ps_buf_end(out), n);
    memmove(ps_buf_end(out), mag, n);
    out->len += n;
    return 0;
}

static int
enc_int(PyObject *obj, ps_buf *out)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);

    if (overflow)
        return enc_bigint(obj, overflow < 0, out);
    if (v == -1 && PyErr_Occurred())
        return -1;
    return put_tagged(out, PS_TAG_INT, ps_zigzag_encode(v));
}

static int
enc_float(PyObject *obj, ps_buf *out)
{
    double d = PyFloat_AS_DOUBLE(obj);
    uint64_t bits;

    /* The bit pattern travels as is: -0.0 and NaN payloads survive. */
    memcpy(&bits, &d, sizeof bits);
    if (ps_buf_reserve(out, 9) < 0)
        return no_memory();
    out->data[out->len++] = PS_TAG_FLOAT;
    ps_le64_store(ps_buf_end(out), bits);
    out->len += 8;
    return 0;
}

/* Replace the UnicodeEncodeError of a str with lone surrogates. */
static int
str_not_utf8(PyObject *obj)
{
    Py_ssize_t start = -1;
    PyObject *exc;

    if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
        return -1;
#if PY_VERSION_HEX >= 0x030C0000
    exc = PyErr_GetRaisedException();
#else
    {
        PyObject *type, *tb;

        PyErr_Fetch(&type, &exc, &tb);
        PyErr_NormalizeException(&type, &exc, &tb);
        Py_XDECREF(type);
        Py_XDECREF(tb);
    }
#endif
    if (exc == NULL || PyUnicodeEncodeError_GetStart(exc, &start) < 0)
        PyErr_Clear();
    Py_XDECREF(exc);
    PyErr_Format(PyExc_ValueError,
                 "cannot encode str: it holds a lone surrogate at index "
                 "%zd, which has no UTF-8 form", start);
    return -1;
}

static int
enc_str(PyObject *obj, ps_buf *out)
{
    const char *s;
    Py_ssize_t n;

    if (PyUnicode_IS_COMPACT_ASCII(obj)) {
        s = PyUnicode_DATA(obj);
        n = PyUnicode_GET_LENGTH(obj);
    } else {
        /* CPython keeps this UTF-8 copy with the str. */
        s = PyUnicode_AsUTF8AndSize(obj, &n);
        if (s == NULL)
            return str_not_utf8(obj);
    }
    return put_blob(out, PS_TAG_STR, s, (size_t)n);
}

/* ---- encoding: containers ---- */

static int
changed_size(const char *what)
{
    PyErr_Format(PyExc_RuntimeError, "%s changed size during encoding",
                 what);
    return -1;
}

static int
enc_list(ps_state *st, PyObject *obj, ps_buf *out, unsigned depth)
{
    Py_ssize_t n = PyList_GET_SIZE(obj);

    if (put_tagged(out, PS_TAG_LIST, (uint64_t)n) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item;
        int rc;

        if (PyList_GET_SIZE(obj) != n)
            return changed_size("list");
        /* A hook may drop the list's own reference to the item. */
        item = PyList_GET_ITEM(obj, i);
        Py_INCREF(item);
        rc = enc_value(st, item, out, depth, 0);
        Py_DECREF(item);
        if (rc < 0)
            return -1;
    }
    return PyList_GET_SIZE(obj) == n ? 0 : changed_size("list");
}

static int
enc_tuple(ps_state *st, PyObject *obj, ps_buf *out, unsigned depth,
          int key)
{
    Py_ssize_t n = PyTuple_GET_SIZE(obj);

    if (put_tagged(out, PS_TAG_TUPLE, (uint64_t)n) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (enc_value(st, PyTuple_GET_ITEM(obj, i), out, depth, key) < 0)
            return -1;
    }
    return 0;
}

static int
enc_dict(ps_state *st, PyObject *obj, ps_buf *out, unsigned depth)
{
    Py_ssize_t n = PyDict_GET_SIZE(obj), pos = 0, seen = 0;
    PyObject *k, *v;

    if (put_tagged(out, PS_TAG_DICT, (uint64_t)n) < 0)
        return -1;
    while (PyDict_Next(obj, &pos, &k, &v)) {
        int rc;

        if (seen++ == n)
            return changed_size("dict");
        Py_INCREF(k);
        Py_INCREF(v);
        rc = enc_value(st, k, out, depth, 1);
        if (rc == 0)
            rc = enc_value(st, v, out, depth, 0);
        Py_DECREF(k);
        Py_DECREF(v);
        if (rc < 0)
            return -1;
    }
    if (seen != n || PyDict_GET_SIZE(obj) != n)
        return changed_size("dict");
    return 0;
}

static int
enc_set(ps_state *st, PyObject *obj, ps_buf *out, unsigned depth,
        uint8_t tag)
{
    Py_ssize_t n = PySet_GET_SIZE(obj), seen = 0;
    PyObject *it, *item;

    if (put_tagged(out, tag, (uint64_t)n) < 0)
        return -1;

    /* The set type's own iterator: a subclass's __iter__ is not called. */
    it = PySet_Type.tp_iter(obj);
    if (it == NULL)
        return -1;
    while ((item = PyIter_Next(it)) != NULL) {
        int rc = seen++ == n ? changed_size("set")
                             : enc_value(st, item, out, depth, 1);

        Py_DECREF(item);
        if (rc < 0) {
            Py_DECREF(it);
            return -1;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return -1;
    return seen == n ? 0 : changed_size("set");
}

/*
 * A container with tag, depth containers deep already.  Checks the depth
 * limit and the C stack, then walks the items.
 */
static int
enc_container(ps_state *st, PyObject *obj, ps_buf *out, unsigned depth,
              uint8_t tag, int key)
{
    int rc;

    if (depth >= PS_CODEC_MAX_DEPTH) {
        PyErr_Format(PyExc_ValueError,
                     "cannot encode: containers nested more than %d deep "
                     "(the codec's depth limit)", PS_CODEC_MAX_DEPTH);
        return -1;
    }
    if (Py_EnterRecursiveCall(" while encoding a payload"))
        return -1;

    switch (tag) {
    case PS_TAG_LIST:
        rc = enc_list(st, obj, out, depth + 1);
        break;
    case PS_TAG_TUPLE:
        rc = enc_tuple(st, obj, out, depth + 1, key);
        break;
    case PS_TAG_DICT:
        rc = enc_dict(st, obj, out, depth + 1);
        break;
    default:
        rc = enc_set(st, obj, out, depth + 1, tag);
        break;
    }
    Py_LeaveRecursiveCall();
    return rc;
}

/* ---- encoding: dispatch ---- */

/* Any other type: the encoder hook's bytes as EXT, or TypeError. */
static int
enc_ext(ps_state *st, PyObject *obj, ps_buf *out)
{
    PyObject *hook = st->enc_hook, *res;
    int rc;

    if (hook == NULL) {
        PyErr_Format(PyExc_TypeError,
                     "cannot encode object of type %.200s for another "
                     "node; install an encoder with "
                     "pubsub.set_codec_hooks(encode=...)",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }

    /* The hook may replace itself while it runs. */
    Py_INCREF(hook);
    res = PyObject_CallOneArg(hook, obj);
    Py_DECREF(hook);
    if (res == NULL)
        return -1;
    if (!PyBytes_Check(res)) {
        PyErr_Format(PyExc_TypeError,
                     "the encoder hook returned %.200s for a %.200s; "
                     "it must return bytes",
                     Py_TYPE(res)->tp_name, Py_TYPE(obj)->tp_name);
        Py_DECREF(res);
        return -1;
    }
    rc = put_blob(out, PS_TAG_EXT, PyBytes_AS_STRING(res),
                  (size_t)PyBytes_GET_SIZE(res));
    Py_DECREF(res);
    return rc;
}

/*
 * Subclasses of the supported types, as their base type, then the hook.
 * A list, dict or set subclass with a __hash__ of its own can be a key,
 * but would arrive as an unhashable list, dict or set: refused.
 */
static int
enc_subclass(ps_state *st, PyObject *obj, ps_buf *out, unsigned depth,
             int key)
{
    uint8_t tag;
    const char *base;

    if (PyLong_Check(obj))
        return enc_int(obj, out);
    if (PyFloat_Check(obj))
        return enc_float(obj, out);
    if (PyUnicode_Check(obj))
        return enc_str(obj, out);
    if (PyBytes_Check(obj))
        return put_blob(out, PS_TAG_BYTES, PyBytes_AS_STRING(obj),
                        (size_t)PyBytes_GET_SIZE(obj));
    if (PyTuple_Check(obj))
        return enc_container(st, obj, out, depth, PS_TAG_TUPLE, key);
    if (PyFrozenSet_Check(obj))
        return enc_container(st, obj, out, depth, PS_TAG_FROZENSET, key);

    if (PyList_Check(obj)) {
        tag = PS_TAG_LIST;
        base = "list";
    } else if (PyDict_Check(obj)) {
        tag = PS_TAG_DICT;
        base = "dict";
    } else if (PySet_Check(obj)) {
        tag = PS_TAG_SET;
        base = "set";
    } else {
        return enc_ext(st, obj, out);
    }

    if (key) {
        PyErr_Format(PyExc_TypeError,
                     "cannot encode a dict key or set member of type "
                     "%.200s: it would decode as an unhashable %s",
                     Py_TYPE(obj)->tp_name, base);
        return -1;
    }
    return enc_container(st, obj, out, depth, tag, 0);
}

/*
 * obj, inside depth containers; key is set when it is a dict key or a
 * set member (or inside a tuple that is).
 */
static int
enc_value(ps_state *st, PyObject *obj, ps_buf *out, unsigned depth, int key)
{
    PyTypeObject *t = Py_TYPE(obj);

    if (t == &PyUnicode_Type)
        return enc_str(obj, out);
    if (t == &PyLong_Type)
        return enc_int(obj, out);
    if (obj == Py_None)
        return put_u8(out, PS_TAG_NONE);
    if (t == &PyBool_Type)
        return put_u8(out, obj == Py_True ? PS_TAG_TRUE : PS_TAG_FALSE);
    if (t == &PyFloat_Type)
        return enc_float(obj, out);
    if (t == &PyBytes_Type)
        return put_blob(out, PS_TAG_BYTES, PyBytes_AS_STRING(obj),
                        (size_t)PyBytes_GET_SIZE(obj));
    if (t == &PyDict_Type)
        return enc_container(st, obj, out, depth, PS_TAG_DICT, 0);
    if (t == &PyList_Type)
        return enc_container(st, obj, out, depth, PS_TAG_LIST, 0);
    if (t == &PyTuple_Type)
        return enc_container(st, obj, out, depth, PS_TAG_TUPLE, key);
    if (t == &PySet_Type)
        return enc_container(st, obj, out, depth, PS_TAG_SET, 0);
    if (t == &PyFrozenSet_Type)
        return enc_container(st, obj, out, depth, PS_TAG_FROZENSET, 0);
    return enc_subclass(st, obj, out, depth, key);
}

int
psg_encode(ps_state *st, PyObject *obj, ps_buf *out)
{
    return enc_value(st, obj, out, 0, 0);
}

/* ---- decoding ---- */

typedef struct dec {
    ps_state *st;
    ps_reader r;
} dec;

static PyObject *dec_value(dec *d, unsigned depth, int key);

/*
 * Raise CodecError "<what code means> at byte offset <off>: <detail>".
 * Always returns NULL.
 */
static PyObject *
dec_fail(dec *d, int code, size_t off, const char *fmt, ...)
{
    PyObject *detail;
    va_list va;

    if (code == PS_ENOMEM)
        return PyErr_NoMemory();
    va_start(va, fmt);
    detail = PyUnicode_FromFormatV(fmt, va);
    va_end(va);
    if (detail == NULL)
        return NULL;
    PyErr_Format(d->st->CodecError, "%s at byte offset %zu: %U",
                 ps_strerror(code), off, detail);
    Py_DECREF(detail);
    return NULL;
}

/* The name of a tag in messages. */
static const char *
tag_name(uint8_t tag)
{
    static const char *const names[PS_TAG_COUNT_] = {
        "None", "False", "True", "int", "int", "int", "float", "str",
        "bytes", "list", "tuple", "dict", "set", "frozenset", "EXT value",
    };

    return tag < PS_TAG_COUNT_ ? names[tag] : "value";
}

/* A length-prefixed body for tag; fails with an error naming it. */
static int
dec_blob(dec *d, uint8_t tag, const uint8_t **p, size_t *n)
{
    size_t at = d->r.pos;
    int rc = ps_reader_get_blob(&d->r, p, n);

    if (rc == PS_ETRUNC) {
        dec_fail(d, rc, at, "the %s's length exceeds the %zu bytes left",
                 tag_name(tag), ps_reader_left(&d->r));
        return -1;
    }
    if (rc < 0) {
        dec_fail(d, rc, at, "bad length varint of a %s", tag_name(tag));
        return -1;
    }
    return 0;
}

/* Keys up to this many bytes go through the key cache. */
#define KEY_CACHE_MAXLEN 32

static PyObject *dec_str(dec *d);

/*
 * A str that is a dict key (or set member).  Payloads of one kind repeat
 * their keys, so a short ASCII key comes from a small table of the keys
 * decoded lately, by a hash of its bytes: the same str each time, its
 * hash already computed for the dict insert.  Other keys, and a miss,
 * decode as any str; a miss then takes the slot.
 */
static PyObject *
dec_key_str(dec *d)
{
    size_t start = d->r.pos;
    const uint8_t *p;
    size_t n;
    uint32_t h = 2166136261u;
    PyObject **slot, *s;

    if (dec_blob(d, PS_TAG_STR, &p, &n) < 0)
        return NULL;
    if (n == 0 || n > KEY_CACHE_MAXLEN)
        goto plain;
    for (size_t i = 0; i < n; i++) {
        if (p[i] & 0x80)
            goto plain;
        h = (h ^ p[i]) * 16777619u;
    }
    slot = &d->st->key_cache[h & (PSG_KEY_CACHE - 1)];
    s = *slot;
    if (psg_ascii_is(s, p, n))
        return Py_NewRef(s);
    s = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, p, (Py_ssize_t)n);
    if (s == NULL || PyObject_Hash(s) == -1) {
        Py_XDECREF(s);
        return NULL;
    }
    Py_XSETREF(*slot, Py_NewRef(s));
    return s;

plain:
    d->r.pos = start;
    return dec_str(d);
}

static PyObject *
dec_int(dec *d)
{
    size_t at = d->r.pos;
    uint64_t u;
    int rc = ps_reader_get_varint(&d->r, &u);

    if (rc < 0)
        return dec_fail(d, rc, at, "bad int varint");
    return PyLong_FromLongLong(ps_zigzag_decode(u));
}

static PyObject *
dec_bigint(dec *d, uint8_t tag, size_t start)
{
    const uint8_t *p;
    size_t n;
    PyObject *v, *neg;

    if (dec_blob(d, tag, &p, &n) < 0)
        return NULL;
    if (n == 0 || p[n - 1] == 0)
        return dec_fail(d, PS_EBADDATA, start,
                        "big int magnitude is empty or has a zero top byte");
#if PY_VERSION_HEX >= 0x030D0000
    v = PyLong_FromUnsignedNativeBytes(p, n, Py_ASNATIVEBYTES_LITTLE_ENDIAN);
#else
    v = _PyLong_FromByteArray(p, n, 1, 0);
#endif
    if (v == NULL || tag == PS_TAG_BIGPOS)
        return v;
    neg = PyNumber_Negative(v);
    Py_DECREF(v);
    return neg;
}

static PyObject *
dec_float(dec *d)
{
    size_t at = d->r.pos;
    uint64_t bits;
    double x;

    if (ps_reader_get_le64(&d->r, &bits) < 0)
        return dec_fail(d, PS_ETRUNC, at, "a float needs 8 bytes, %zu left",
                        ps_reader_left(&d->r));
    memcpy(&x, &bits, sizeof x);
    return PyFloat_FromDouble(x);
}

static PyObject *
dec_str(dec *d)
{
    const uint8_t *p;
    size_t n;
    PyObject *s;
    Py_ssize_t bad = 0;

    if (dec_blob(d, PS_TAG_STR, &p, &n) < 0)
        return NULL;
    s = PyUnicode_DecodeUTF8((const char *)p, (Py_ssize_t)n, "strict");
    if (s != NULL || !PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
        return s;

    /* Point at the offending byte of the input rather than of the str. */
#if PY_VERSION_HEX >= 0x030C0000
    {
        PyObject *exc = PyErr_GetRaisedException();

        if (PyUnicodeDecodeError_GetStart(exc, &bad) < 0)
            PyErr_Clear();
        Py_DECREF(exc);
    }
#else
    {
        PyObject *type, *exc, *tb;

        PyErr_Fetch(&type, &exc, &tb);
        PyErr_NormalizeException(&type, &exc, &tb);
        if (exc == NULL || PyUnicodeDecodeError_GetStart(exc, &bad) < 0)
            PyErr_Clear();
        Py_XDECREF(type);
        Py_XDECREF(exc);
        Py_XDECREF(tb);
    }
#endif
    return dec_fail(d, PS_EBADDATA, (size_t)(p - d->r.data) + (size_t)bad,
                    "a str holds invalid UTF-8");
}

static PyObject *
dec_bytes(dec *d)
{
    const uint8_t *p;
    size_t n;

    if (dec_blob(d, PS_TAG_BYTES, &p, &n) < 0)
        return NULL;
    return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
}

static PyObject *
dec_ext(dec *d, size_t start)
{
    PyObject *hook = d->st->dec_hook, *raw, *res;
    const uint8_t *p;
    size_t n;

    if (dec_blob(d, PS_TAG_EXT, &p, &n) < 0)
        return NULL;
    if (hook == NULL)
        return dec_fail(d, PS_EBADDATA, start,
                        "an EXT value needs a decoder hook; install one "
                        "with pubsub.set_codec_hooks(decode=...)");
    raw = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
    if (raw == NULL)
        return NULL;

    /* The hook may replace itself while it runs. */
    Py_INCREF(hook);
    res = PyObject_CallOneArg(hook, raw);
    Py_DECREF(hook);
    Py_DECREF(raw);
    return res;
}

/* Turn an unhashable key's TypeError into CodecError; -1 either way. */
static int
dec_unhashable(dec *d, size_t at)
{
    if (PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        dec_fail(d, PS_EBADDATA, at, "unhashable dict key or set member");
    }
    return -1;
}

static int
dec_list_items(dec *d, PyObject *seq, size_t n, unsigned depth, int key)
{
    int is_list = PyList_CheckExact(seq);

    for (size_t i = 0; i < n; i++) {
        PyObject *item = dec_value(d, depth, key);

        if (item == NULL)
            return -1;
        if (is_list)
            PyList_SET_ITEM(seq, (Py_ssize_t)i, item);
        else
            PyTuple_SET_ITEM(seq, (Py_ssize_t)i, item);
    }
    return 0;
}

static int
dec_dict_items(dec *d, PyObject *dict, size_t n, unsigned depth)
{
    for (size_t i = 0; i < n; i++) {
        size_t at = d->r.pos;
        PyObject *k = dec_value(d, depth, 1), *v;
        int rc;

        if (k == NULL)
            return -1;
        v = dec_value(d, depth, 0);
        if (v == NULL) {
            Py_DECREF(k);
            return -1;
        }
        rc = PyDict_SetItem(dict, k, v);
        Py_DECREF(k);
        Py_DECREF(v);
        if (rc < 0)
            return dec_unhashable(d, at);
    }
    return 0;
}

static int
dec_set_items(dec *d, PyObject *set, size_t n, unsigned depth)
{
    for (size_t i = 0; i < n; i++) {
        size_t at = d->r.pos;
        PyObject *item = dec_value(d, depth, 1);
        int rc;

        if (item == NULL)
            return -1;
        rc = PySet_Add(set, item);
        Py_DECREF(item);
        if (rc < 0)
            return dec_unhashable(d, at);
    }
    return 0;
}

/* A container's count and items; depth is the container's own depth. */
static PyObject *
dec_container(dec *d, uint8_t tag, unsigned depth, int key)
{
    size_t at = d->r.pos, n;
    PyObject *c;
    int rc = ps_reader_get_count(&d->r, tag == PS_TAG_DICT ? 2 : 1, &n);

    if (rc == PS_ETRUNC)
        return dec_fail(d, rc, at, "a %s claims more items than the %zu "
                        "bytes left can hold", tag_name(tag),
                        ps_reader_left(&d->r));
    if (rc < 0)
        return dec_fail(d, rc, at, "bad count varint of a %s",
                        tag_name(tag));

    switch (tag) {
    case PS_TAG_LIST:
        c = PyList_New((Py_ssize_t)n);
        rc = c ? dec_list_items(d, c, n, depth, 0) : -1;
        break;
    case PS_TAG_TUPLE:
        c = PyTuple_New((Py_ssize_t)n);
        rc = c ? dec_list_items(d, c, n, depth, key) : -1;
        break;
    case PS_TAG_DICT:
        c = PyDict_New();
        rc = c ? dec_dict_items(d, c, n, depth) : -1;
        break;
    case PS_TAG_SET:
        c = PySet_New(NULL);
        rc = c ? dec_set_items(d, c, n, depth) : -1;
        break;
    default:
        /* Filling a frozenset nobody else has seen yet is allowed. */
        c = PyFrozenSet_New(NULL);
        rc = c ? dec_set_items(d, c, n, depth) : -1;
        break;
    }
    if (rc < 0) {
        Py_XDECREF(c);
        return NULL;
    }
    return c;
}

/*
 * One value, inside depth containers; key is set when it must be
 * hashable (a dict key, a set member, or inside a tuple that is one).
 */
static PyObject *
dec_value(dec *d, unsigned depth, int key)
{
    size_t start = d->r.pos;
    PyObject *res;
    uint8_t tag;

    if (ps_reader_get_u8(&d->r, &tag) < 0)
        return dec_fail(d, PS_ETRUNC, start, "expected a value");

    switch (tag) {
    case PS_TAG_NONE:
        Py_RETURN_NONE;
    case PS_TAG_FALSE:
        Py_RETURN_FALSE;
    case PS_TAG_TRUE:
        Py_RETURN_TRUE;
    case PS_TAG_INT:
        return dec_int(d);
    case PS_TAG_BIGPOS: case PS_TAG_BIGNEG:
        return dec_bigint(d, tag, start);
    case PS_TAG_FLOAT:
        return dec_float(d);
    case PS_TAG_STR:
        return key ? dec_key_str(d) : dec_str(d);
    case PS_TAG_BYTES:
        return dec_bytes(d);
    case PS_TAG_EXT:
        return dec_ext(d, start);
    case PS_TAG_LIST: case PS_TAG_TUPLE: case PS_TAG_DICT:
    case PS_TAG_SET: case PS_TAG_FROZENSET:
        break;
    default:
        return dec_fail(d, PS_EBADDATA, start, "unknown tag 0x%02x",
                        (unsigned)tag);
    }

    if (key && !ps_codec_tag_hashable(tag))
        return dec_fail(d, PS_EBADDATA, start,
                        "a %s cannot be a dict key or set member",
                        tag_name(tag));
    if (depth >= PS_CODEC_MAX_DEPTH)
        return dec_fail(d, PS_EDEPTH, start,
                        "more than %d containers nested",
                        PS_CODEC_MAX_DEPTH);
    if (Py_EnterRecursiveCall(" while decoding a payload"))
        return NULL;
    res = dec_container(d, tag, depth + 1, key);
    Py_LeaveRecursiveCall();
    return res;
}

PyObject *
psg_decode(ps_state *st, const uint8_t *data, size_t len)
{
    dec d = {st, {0}};
    PyObject *v;

    ps_reader_init(&d.r, data, len);
    v = dec_value(&d, 0, 0);
    if (v == NULL || ps_reader_left(&d.r) == 0)
        return v;
    Py_DECREF(v);
    return dec_fail(&d, PS_EBADDATA, d.r.pos,
                    "%zu trailing bytes after the value",
                    ps_reader_left(&d.r));
}

/* ---- module functions ---- */

static PyObject *
codec_encode(PyObject *module, PyObject *obj)
{
    uint8_t stack[ENCODE_STACK_BYTES];
    ps_buf b;
    PyObject *res = NULL;

    ps_buf_init(&b, stack, sizeof stack);
    if (psg_encode(psg_state(module), obj, &b) == 0)
        res = PyBytes_FromStringAndSize((const char *)b.data,
                                        (Py_ssize_t)b.len);
    ps_buf_fini(&b);
    return res;
}

static PyObject *
codec_decode(PyObject *module, PyObject *data)
{
    Py_buffer view;
    PyObject *res;

    if (PyBytes_CheckExact(data))
        return psg_decode(psg_state(module),
                          (const uint8_t *)PyBytes_AS_STRING(data),
                          (size_t)PyBytes_GET_SIZE(data));

    /* The export pins a bytearray's storage while hooks run. */
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    res = psg_decode(psg_state(module), view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return res;
}

/* Private, for the tests: ps_codec_validate's code for data (0 is ok). */
static PyObject *
codec_validate(PyObject *module, PyObject *data)
{
    Py_buffer view;
    int rc;

    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    rc = ps_codec_validate(view.buf, (size_t)view.len, PS_CODEC_MAX_DEPTH);
    PyBuffer_Release(&view);
    return PyLong_FromLong(rc);
}

static int
check_hook(PyObject *hook, const char *name)
{
    if (hook == Py_None || PyCallable_Check(hook))
        return 0;
    PyErr_Format(PyExc_TypeError,
                 "set_codec_hooks(): %s must be callable or None, not "
                 "%.200s", name, Py_TYPE(hook)->tp_name);
    return -1;
}

static PyObject *
codec_set_hooks(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"encode", "decode", NULL};
    PyObject *enc = Py_None, *dec = Py_None;
    ps_state *st = psg_state(module);

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OO:set_codec_hooks",
                                     kwlist, &enc, &dec))
        return NULL;
    if (check_hook(enc, "encode") < 0 || check_hook(dec, "decode") < 0)
        return NULL;

    /* Both are checked before either is replaced: all or nothing. */
    Py_XSETREF(st->enc_hook, enc == Py_None ? NULL : Py_NewRef(enc));
    Py_XSETREF(st->dec_hook, dec == Py_None ? NULL : Py_NewRef(dec));
    Py_RETURN_NONE;
}

PyDoc_STRVAR(encode_doc,
"encode(obj, /) -> bytes\n\n"
"Encode obj in the payload format that carries messages between nodes.\n"
"Supported: None, bool, int (any size), float, str, bytes, list, tuple,\n"
"dict, set, frozenset, nested at most 64 containers deep.  A subclass of\n"
"these is encoded as its base type.  Other types go to the encoder hook\n"
"(see set_codec_hooks); without one they raise TypeError.  A str with a\n"
"lone surrogate, or nesting too deep, raises ValueError.");

PyDoc_STRVAR(decode_doc,
"decode(data, /) -> object\n\n"
"Decode one value from a bytes-like object made by encode().  Malformed,\n"
"truncated or too deeply nested data, trailing bytes, and an EXT value\n"
"without a decoder hook raise CodecError naming the byte offset.\n"
"Nothing is ever unpickled.");

PyDoc_STRVAR(set_hooks_doc,
"set_codec_hooks(encode=None, decode=None)\n\n"
"Replace both codec hooks.  encode(obj) -> bytes is called for an object\n"
"of a type the codec does not know; decode(data: bytes) -> object turns\n"
"those bytes back into an object on the receiving node.  None removes a\n"
"hook; anything else that is not callable raises TypeError and changes\n"
"nothing.");

PyMethodDef psg_codec_methods[] = {
    {"encode", codec_encode, METH_O, encode_doc},
    {"decode", codec_decode, METH_O, decode_doc},
    {"set_codec_hooks", (PyCFunction)(void (*)(void))codec_set_hooks,
     METH_VARARGS | METH_KEYWORDS, set_hooks_doc},
    {"_codec_validate", codec_validate, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};
