/*
 * pydecode_fuzz.c: libFuzzer harness for the payload decoder that turns
 * bytes from the network into Python objects (csrc/py/codec.c), which
 * codec_fuzz.c cannot reach.  The extension's sources are compiled in and
 * run inside an embedded interpreter.  Build and run from the repository
 * root with
 *
 *   scripts/fuzz.sh 30 pydecode
 *
 * which compiles it with every .c file of csrc/core and csrc/py, links
 * libpython (python3-config --ldflags --embed gives the flags), and runs
 * it over a copy of fuzz/corpus/codec.
 *
 * Each input is decoded twice: with a decoder hook that makes every EXT
 * value hashable bytes, and without hooks.  The properties:
 *  - decoding returns a value or raises CodecError, nothing else;
 *  - with the hook, it returns a value exactly when ps_codec_validate
 *    accepts the bytes;
 *  - a value it returns encodes again, and that encoding decodes.
 * Python's allocator is switched to malloc so that ASan sees objects.
 * The leak checker is off: the interpreter keeps memory by design.
 */
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>

#include "ps_codec.h"

PyMODINIT_FUNC PyInit__core(void);

static PyObject *encode_fn, *decode_fn, *hooks_fn, *ext_hook;
static PyObject *codec_error;

const char *
__asan_default_options(void)
{
    return "detect_leaks=0";
}

static void
check(int cond, const char *what)
{
    if (!cond) {
        if (PyErr_Occurred())
            PyErr_Print();
        fprintf(stderr, "pydecode_fuzz: property failed: %s\n", what);
        abort();
    }
}

static PyObject *
attr(PyObject *m, const char *name)
{
    PyObject *v = PyObject_GetAttrString(m, name);

    check(v != NULL, name);
    return v;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    PyPreConfig pre;
    PyObject *m, *ns;

    PyPreConfig_InitIsolatedConfig(&pre);
    pre.allocator = PYMEM_ALLOCATOR_MALLOC;
    if (PyStatus_Exception(Py_PreInitialize(&pre)))
        abort();
    if (PyImport_AppendInittab("_core", PyInit__core) < 0)
        abort();
    Py_InitializeEx(0);

    m = PyImport_ImportModule("_core");
    check(m != NULL, "import the extension");
    encode_fn = attr(m, "encode");
    decode_fn = attr(m, "decode");
    hooks_fn = attr(m, "set_codec_hooks");
    codec_error = attr(m, "CodecError");

    /* The EXT hook: its payload as bytes, so the value stays hashable. */
    ns = PyDict_New();
    check(ns != NULL, "namespace");
    check(PyRun_String("hook = bytes", Py_file_input, ns, ns) != NULL,
          "define the hook");
    ext_hook = PyDict_GetItemString(ns, "hook");
    Py_INCREF(ext_hook);
    Py_DECREF(ns);
    Py_DECREF(m);
    return 0;
}

static void
set_hook(PyObject *hook)
{
    PyObject *kw = PyDict_New(), *args = PyTuple_New(0), *r;

    check(kw != NULL && args != NULL, "hook arguments");
    if (hook != NULL)
        PyDict_SetItemString(kw, "decode", hook);
    r = PyObject_Call(hooks_fn, args, kw);
    check(r != NULL, "set_codec_hooks");
    Py_DECREF(r);
    Py_DECREF(args);
    Py_DECREF(kw);
}

/* Decode data; NULL (error cleared) when it raised CodecError. */
static PyObject *
decode(PyObject *data)
{
    PyObject *v = PyObject_CallOneArg(decode_fn, data);

    if (v == NULL) {
        check(PyErr_ExceptionMatches(codec_error),
              "decode raised something else than CodecError");
        PyErr_Clear();
    }
    return v;
}

/* A decoded value encodes again, and that decodes. */
static void
reencode(PyObject *v)
{
    PyObject *again = PyObject_CallOneArg(encode_fn, v), *back;

    check(again != NULL, "a decoded value does not encode");
    back = decode(again);
    check(back != NULL, "a re-encoded value does not decode");
    Py_DECREF(back);
    Py_DECREF(again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    PyObject *bytes, *v;
    int valid;

    bytes = PyBytes_FromStringAndSize((const char *)data, (Py_ssize_t)size);
    check(bytes != NULL, "bytes");
    valid = ps_codec_validate(data, size, PS_CODEC_MAX_DEPTH) == 0;

    set_hook(ext_hook);
    v = decode(bytes);
    check((v != NULL) == valid, "decoder and validator disagree");
    if (v != NULL) {
        reencode(v);
        Py_DECREF(v);
    }

    set_hook(NULL);
    v = decode(bytes);
    Py_XDECREF(v);

    Py_DECREF(bytes);
    return 0;
}
