/* codec_stub.c: TEMPORARY until the codec branch merges (then deleted). */
#include "glue.h"
#include "ps_codec.h"
#include <stdlib.h>
#include <string.h>

void ps_buf_init(ps_buf *b, void *mem, size_t cap)
{ b->data = mem; b->len = 0; b->cap = cap; b->owned = 0; }
void ps_buf_fini(ps_buf *b) { if (b->owned) free(b->data); b->data = NULL; b->len = b->cap = 0; }
int psg_encode(ps_state *st, PyObject *obj, ps_buf *out)
{ PyErr_SetString(PyExc_TypeError, "codec not built"); return -1; }
PyObject *psg_decode(ps_state *st, const uint8_t *data, size_t len)
{ PyErr_SetString(PyExc_TypeError, "codec not built"); return NULL; }
static PyObject *nope(PyObject *m, PyObject *a)
{ PyErr_SetString(PyExc_TypeError, "codec not built"); return NULL; }
PyMethodDef psg_codec_methods[] = {
    {"encode", nope, METH_O, NULL}, {"decode", nope, METH_O, NULL},
    {"set_codec_hooks", (PyCFunction)nope, METH_VARARGS | METH_KEYWORDS, NULL},
    {NULL, NULL, 0, NULL}};
