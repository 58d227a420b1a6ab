/*
 * A keyed permutation of 64-bit numbers, for identifiers that must be
 * unique (a bijection of a counter never repeats) yet reveal nothing of the
 * counter: connection ids (issue 11: sequential ids told anyone how many
 * connections the server ever had).
 *
 * The permutation is a four-round Feistel network on two 32-bit halves
 * whose round function is SipHash-2-4 (Aumasson and Bernstein, 2012), a
 * pseudorandom function keyed with 128 bits: by Luby and Rackoff, four
 * rounds of a pseudorandom function make a strong pseudorandom permutation.
 * Its strength is the key's: the caller brings 16 random bytes.
 */
#ifndef TP_UTIL_PRP_H
#define TP_UTIL_PRP_H

#include <stddef.h>
#include <stdint.h>

/* tp__siphash24 returns SipHash-2-4 of len bytes under a 16-byte key. */
uint64_t tp__siphash24(const unsigned char key[16], const void *data, size_t len);

/* tp__prp64 returns the image of x under the permutation keyed by key. */
uint64_t tp__prp64(const unsigned char key[16], uint64_t x);

#endif /* TP_UTIL_PRP_H */
