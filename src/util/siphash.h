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

/* tp__siphash is SipHash-c-d of n bytes under the key (k0, k1), the key's
 * 16 bytes read as two little-endian words (the reference's convention). */
uint64_t tp__siphash(uint64_t k0, uint64_t k1, const void *data, size_t n, int c_rounds,
                     int d_rounds);

static inline uint64_t
tp__siphash13(uint64_t k0, uint64_t k1, const void *data, size_t n)
{
    return tp__siphash(k0, k1, data, n, 1, 3);
}

#endif /* TP_UTIL_SIPHASH_H */
