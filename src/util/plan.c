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
        uint64_t seed = p->seed ^ ((uint64_t)o->what << 56 | (uint64_t)o->kind << 48) ^
                        (uint64_t)o->split * 0xff51afd7ed558ccdULL;
        if (o->what == TP__PLAN_PUT)
            seed ^= (uint64_t)o->n * 0x9e3779b97f4a7c15ULL;
        uint64_t h = tp__hash(seed, o->key, o->len);
        size_t j = h & (cap - 1);
        while (slots[j].at != 0 && (slots[j].hash != h || !same_record(&ops[slots[j].at - 1], o)))
            j = (j + 1) & (cap - 1);
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
