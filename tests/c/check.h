/*
 * check.h: the one assertion the C tests share.  CHECK(cond) prints the
 * failed condition with its place and counts it in failures, which the
 * test's main turns into its exit status; the test goes on, so one run
 * lists every failure.  Include it once, from the test's own file.
 */
#ifndef PS_TEST_CHECK_H
#define PS_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                     \
    do {                                                                \
        if (!(cond)) {                                                  \
            printf("%s:%d: check failed: %s\n", __FILE__, __LINE__,     \
                   #cond);                                              \
            failures++;                                                 \
        }                                                               \
    } while (0)

#endif
