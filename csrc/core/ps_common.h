/*
 * ps_common.h: what every file of the core shares: the error codes, the
 * limits, the seeded hash and a few small helpers.
 *
 * The core is plain C11 with no Python.h.  Errors are 0 or a negative
 * PS_E* code; the codes, their names and their messages come from the one
 * table below, and ps_strerror()/ps_errname() read it.
 */
#ifndef PS_COMMON_H
#define PS_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* code name, value, message */
#define PS_ERROR_TABLE(X)                                                   \
    X(PS_OK,           0, "success")                                        \
    X(PS_ENOMEM,      -1, "out of memory")                                  \
    X(PS_ECLOSED,     -2, "mailbox is closed")                              \
    X(PS_EEMPTY,      -3, "mailbox is empty")                               \
    X(PS_ENAMETOOLONG, -4, "channel name is too long")                      \
    X(PS_ENOTJOINED,  -5, "mailbox is not a member of that channel")        \
    X(PS_EFULL,       -6, "mailbox is full; the message was dropped")       \
    X(PS_ESLOW,       -7, "mailbox closed as a slow consumer")              \
    X(PS_ETOOBIG,     -8, "encoded message exceeds the frame limit")        \
    X(PS_EDEPTH,      -9, "value is nested too deeply")                     \
    X(PS_EBADDATA,   -10, "malformed encoded data")                         \
    X(PS_ETRUNC,     -11, "encoded data is truncated")                      \
    X(PS_EUNSUPP,    -12, "value type cannot be encoded")                   \
    X(PS_EPROTO,     -13, "protocol violation by peer")                     \
    X(PS_EAUTH,      -14, "peer failed authentication")                     \
    X(PS_EVERSION,   -15, "peer speaks an incompatible protocol version")   \
    X(PS_ESYS,       -16, "system call failed (see errno)")                 \
    X(PS_EINVAL,     -17, "invalid argument")                               \
    X(PS_ESTALE,     -18, "pid belongs to a past incarnation of its node")  \
    X(PS_ENOPEER,    -19, "no connection to that node")                     \
    X(PS_EBUSY,      -20, "already running")                                \
    X(PS_EJOINS,     -21, "mailbox already joined that channel "            \
                          "1024 times, the limit (pubsub.MAX_JOINS)")

enum ps_error {
#define PS_X_ENUM(name, value, msg) name = value,
    PS_ERROR_TABLE(PS_X_ENUM)
#undef PS_X_ENUM
};

/* Message for an error code; never NULL ("unknown error" for a stray). */
const char *ps_strerror(int code);
/* Symbolic name for an error code ("PS_ENOMEM"); never NULL. */
const char *ps_errname(int code);

/*
 * Channel names are compared as their exact UTF-8 bytes.  The limit keeps
 * a hostile name from costing more than a page per membership and fits
 * the two-byte length field of the wire format.
 */
#define PS_MAX_CHANNEL 1024

/*
 * How many times one mailbox may join one channel.  Other nodes keep a
 * pid's join count, and each join is one entry of get_members(): the cap
 * keeps a peer's 26-byte SYNC entry from standing for billions of them,
 * and lets every node keep the count exactly.
 */
#define PS_MAX_JOINS 1024       /* also written out in PS_EJOINS's text */

/*
 * Seeded 64-bit hash (SipHash-1-3) of a byte string.  The key is drawn
 * once per process by ps_hash_seed(), so names chosen by web clients or
 * peers cannot be aimed at one bucket.  Safe from any thread after the
 * seed is set.
 */
void ps_hash_seed(const uint8_t key[16]);
uint64_t ps_hash(const void *data, size_t len);

/* Fill buf with len bytes from the OS random source.  0 or PS_ESYS. */
int ps_random(void *buf, size_t len);

/* Monotonic clock in nanoseconds. */
uint64_t ps_now_ns(void);

#define PS_UNUSED(x) ((void)(x))

#endif
