/*
 * SipHash (Aumasson and Bernstein), the keyed hash of the maps: a client
 * that chooses keys (tenant names, client ids, field names) cannot aim
 * collisions at a map without the key, which comes from getrandom(2).
 * SipHash-1-3 is the variant for hash tables (as Rust's and Python's).
 */
#ifndef TP_UTIL_SIPHASH_H
#define TP_UTIL_SIPHASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Written from the paper ("SipHash: a fast short-input PRF", 2012), inline
 * so that the rounds are constants where it is called; checked against the
 * reference vectors in tests/unit/util/test_siphash.c. */

#define TP__ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define TP__SIPROUND                                                                               \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = TP__ROTL(v1, 13);                                                                     \
        v1 ^= v0;                                                                                  \
        v0 = TP__ROTL(v0, 32);                                                                     \
        v2 += v3;                                                                                  \
        v3 = TP__ROTL(v3, 16);                                                                     \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = TP__ROTL(v3, 21);                                                                     \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = TP__ROTL(v1, 17);                                                                     \
        v1 ^= v2;                                                                                  \
        v2 = TP__ROTL(v2, 32);                                                                     \
    } while (0)

static inline uint64_t
tp__le64(const unsigned char *p)
{
    uint64_t v;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&v, p, 8); /* one load */
#else
    v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
#endif
    return v;
}

/* tp__siphash is SipHash-c-d of n bytes under the key (k0, k1), the key's
 * 16 bytes read as two little-endian words (the reference's convention). */
static inline uint64_t
tp__siphash(uint64_t k0, uint64_t k1, const void *data, size_t n, int c_rounds, int d_rounds)
{
    const unsigned char *p = data;
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    const unsigned char *end = p + (n & ~(size_t)7);
    for (; p != end; p += 8) {
        uint64_t m = tp__le64(p);
        v3 ^= m;
        for (int i = 0; i < c_rounds; i++)
            TP__SIPROUND;
        v0 ^= m;
    }
    /* The last block: the remaining bytes, and the length's low byte on top. */
    unsigned char last[8] = {0};
    memcpy(last, p, n & 7);
    uint64_t b = tp__le64(last) | ((uint64_t)n << 56);
    v3 ^= b;
    for (int i = 0; i < c_rounds; i++)
        TP__SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < d_rounds; i++)
        TP__SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static inline uint64_t
tp__siphash13(uint64_t k0, uint64_t k1, const void *data, size_t n)
{
    return tp__siphash(k0, k1, data, n, 1, 3);
}

#endif /* TP_UTIL_SIPHASH_H */
