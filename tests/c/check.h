/*
 * check.h: the one assertion of the C unit tests.  CHECK prints the failed
 * condition with its place and counts it; main() returns non-zero when
 * failures is.
 */
#ifndef TESTS_CHECK_H
#define TESTS_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) {                                                    \
            printf("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,      \
                   #cond);                                                \
            failures++;                                                   \
        }                                                                 \
    } while (0)

#endif
