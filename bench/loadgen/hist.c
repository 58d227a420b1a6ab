/* The latency histogram: see loadgen.h. */
#include "loadgen.h"

static unsigned
bucket(uint64_t v)
{
    if (v < 128)
        return (unsigned)v;
    /* Keep the top 7 bits: a value in [64, 128) shifted by `shift`. */
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - 6;
    return shift * 64 + (unsigned)(v >> shift);
}

static uint64_t
bucket_mid(unsigned i)
{
    if (i < 128)
        return i;
    unsigned shift = i / 64 - 1;
    uint64_t low = (uint64_t)(i % 64 + 64) << shift;
    return low + (((uint64_t)1 << shift) >> 1);
}

void
lg_hist_record(lg_hist *h, uint64_t v)
{
    h->buckets[bucket(v)]++;
    h->count++;
    if (v > h->max)
        h->max = v;
}

uint64_t
lg_hist_value(const lg_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->count);
    if (want >= h->count)
        want = h->count - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen > want) {
            uint64_t m = bucket_mid(i);
            return m > h->max ? h->max : m;
        }
    }
    return h->max;
}
