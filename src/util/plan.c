/* The plan of a batch of store writes (plan.h): one pass from the last write
 * to the first over an open-addressing table of the keys seen. */
#include "util/plan.h"

#include <string.h>

#include "util/alloc.h"
#include "util/map.h"

struct tp__plan_slot {
    size_t at; /* index + 1 of the latest op of the key seen; 0: empty */
    uint64_t hash;
};

static int
same_record(const tp__plan_op *a, const tp__plan_op *b)
{
    return a->what == b->what && a->kind == b->kind && (a->what != TP__PLAN_PUT || a->n == b->n) &&
           a->len == b->len && a->split == b->split && memcmp(a->key, b->key, a->len) == 0;
}

/* slot_of finds o's slot among the batch's first cap (a power of 2; the
 * table may be larger, from an earlier batch): the one holding the latest op
 * of its record seen so far, or the empty one where it goes; *hash is o's
 * hash. */
static size_t
slot_of(const tp__plan *p, size_t cap, const tp__plan_op *ops, const tp__plan_op *o, uint64_t *hash)
{
    uint64_t seed = p->seed ^ ((uint64_t)o->what << 56 | (uint64_t)o->kind << 48) ^
                    (uint64_t)o->split * 0xff51afd7ed558ccdULL;
    if (o->what == TP__PLAN_PUT)
        seed ^= (uint64_t)o->n * 0x9e3779b97f4a7c15ULL;
    uint64_t h = tp__hash(seed, o->key, o->len);
    size_t j = h & (cap - 1);
    while (p->slots[j].at != 0 &&
           (p->slots[j].hash != h || !same_record(&ops[p->slots[j].at - 1], o)))
        j = (j + 1) & (cap - 1);
    *hash = h;
    return j;
}

long
tp__plan_mark(tp__plan *p, tp__plan_op *ops, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    if (cap > p->cap) {
        struct tp__plan_slot *slots = tp__reallocarray(p->slots, cap, sizeof *slots);
        if (slots == NULL)
            return -1;
        p->slots = slots;
        p->cap = cap;
    }
    struct tp__plan_slot *slots = p->slots;
    memset(slots, 0, cap * sizeof *slots);
    long skipped = 0;
    for (size_t i = n; i-- > 0;) {
        tp__plan_op *o = &ops[i];
        o->skip = 0;
        if (o->what != TP__PLAN_PUT && o->what != TP__PLAN_DEL_BELOW)
            continue;
        if (o->what == TP__PLAN_PUT) {
            /* A later del_below of its key reaching past its n deletes it. */
            tp__plan_op below = *o;
            below.what = TP__PLAN_DEL_BELOW;
            uint64_t bh;
            size_t b = slot_of(p, cap, ops, &below, &bh);
            if (slots[b].at != 0 && ops[slots[b].at - 1].n > o->n) {
                o->skip = 1;
                skipped++;
                continue;
            }
        }
        uint64_t h;
        size_t j = slot_of(p, cap, ops, o, &h);
        if (slots[j].at == 0)
            slots[j] = (struct tp__plan_slot){i + 1, h};
        else if (o->what == TP__PLAN_PUT || ops[slots[j].at - 1].n >= o->n) {
            o->skip = 1;
            skipped++;
        } else
            slots[j].at = i + 1; /* a del_below reaching higher: it covers more */
    }
    return skipped;
}

void
tp__plan_free(tp__plan *p)
{
    tp__free(p->slots);
    p->slots = NULL;
    p->cap = 0;
}
