/*
 * ps_common.c: the error table's readers, the seeded hash, the random
 * source and the clock.  Nothing here keeps state except the hash key,
 * which is written once before any other thread starts.
 */
#include "ps_common.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

const char *
ps_strerror(int code)
{
    switch (code) {
#define PS_X_MSG(name, value, msg) case value: return msg;
    PS_ERROR_TABLE(PS_X_MSG)
#undef PS_X_MSG
    }
    return "unknown error";
}

const char *
ps_errname(int code)
{
    switch (code) {
#define PS_X_NAME(name, value, msg) case value: return #name;
    PS_ERROR_TABLE(PS_X_NAME)
#undef PS_X_NAME
    }
    return "PS_E?";
}

static uint64_t k0 = 0x736f6d6570736575ULL, k1 = 0x646f72616e646f6dULL;

static uint64_t
get64le(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void
ps_hash_seed(const uint8_t key[16])
{
    k0 = get64le(key);
    k1 = get64le(key + 8);
}

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                        \
    do {                                                                \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);       \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                          \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                          \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);       \
    } while (0)

/* SipHash-1-3: one compression round per word, three to finalise. */
uint64_t
ps_hash(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
    uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
    uint64_t v3 = k1 ^ 0x7465646279746573ULL;
    uint64_t b = (uint64_t)len << 56;
    size_t whole = len & ~(size_t)7;

    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = get64le(p + i);

        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[whole + i] << (8 * i);

    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

int
ps_random(void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return PS_ESYS;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

uint64_t
ps_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}
