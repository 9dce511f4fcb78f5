/* cluster.c: placeholder glue until the transport lands. */
#include "glue.h"

PyMethodDef psg_cluster_methods[] = {
    {NULL, NULL, 0, NULL},
};

int
psg_cluster_init(PyObject *module, ps_state *st)
{
    return 0;
}

void
psg_cluster_fini(void)
{
}
