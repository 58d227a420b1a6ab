/*
 * The plan of a batch of store writes: which of them a later write of the
 * same batch makes pointless, so that applying the batch in one transaction
 * writes each record once. Used by the committer (a group of loop
 * transactions in one store commit) and by the SQLite store's fold (a
 * second of logged commits in one transaction of the tables).
 *
 * Three rules, each exact whatever lies between the two writes:
 *   - a put whose record a later put replaces: the later one decides what
 *     the record holds;
 *   - a put whose record a later del_below of its key deletes (that del_below
 *     reaching past its n): a history row the same batch trims again;
 *   - a del_below whose range a later del_below of the same key covers (its
 *     n at least as high): everything it would delete, the later one
 *     deletes, including what was put between them.
 * Every other write (del, del_key) is never skipped and skips nothing.
 */
#ifndef TP_UTIL_PLAN_H
#define TP_UTIL_PLAN_H

#include <stddef.h>
#include <stdint.h>

enum { TP__PLAN_OTHER = 0, TP__PLAN_PUT, TP__PLAN_DEL_BELOW };

/* One write of the batch, in order. key is the record's key without its
 * kind and n: the bytes of k1 then k2, len in all, k1 the first split of
 * them (so that ("ab", "c") and ("a", "bc") differ). skip is the output. */
typedef struct tp__plan_op {
    unsigned char what; /* TP__PLAN_... */
    unsigned char kind;
    unsigned char skip;
    int64_t n;
    const char *key;
    size_t len, split;
} tp__plan_op;

/* A plan's table, kept from batch to batch (grown only). Zero it, then set
 * seed (tp__seed): the hash is the maps' keyed one, so a client choosing
 * model or client ids cannot make the probes long. */
typedef struct tp__plan {
    uint64_t seed;
    struct tp__plan_slot *slots;
    size_t cap;
} tp__plan;

/* tp__plan_mark sets skip on the ops of ops[0..n) a later one makes
 * pointless; returns how many, or -1 when out of memory (then none is
 * marked, and applying every op is right). */
long tp__plan_mark(tp__plan *p, tp__plan_op *ops, size_t n);

void tp__plan_free(tp__plan *p);

#endif /* TP_UTIL_PLAN_H */
