/*
 * The keyed permutation behind connection ids: SipHash-2-4 gives the
 * reference vectors of its paper, and the Feistel network on top is a
 * bijection (no two counters share an image) that hides the counter.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "util/prp.h"

static const unsigned char key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

Test(prp, siphash_reference_vectors)
{
    /* Appendix A of the SipHash paper and its reference vectors.h: key
     * 00..0f, message 00..(n-1). */
    unsigned char msg[64];
    for (int i = 0; i < 64; i++)
        msg[i] = (unsigned char)i;
    cr_assert_eq(tp__siphash24(key, msg, 0), 0x726fdb47dd0e0e31ULL);
    cr_assert_eq(tp__siphash24(key, msg, 1), 0x74f839c593dc67fdULL);
    cr_assert_eq(tp__siphash24(key, msg, 8), 0x93f5f5799a932462ULL);
    cr_assert_eq(tp__siphash24(key, msg, 15), 0xa129ca6149be45e5ULL);
    cr_assert_eq(tp__siphash24(key, msg, 63), 0x958a324ceb064572ULL);
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

Test(prp, a_bijection_that_hides_the_counter)
{
    enum { N = 1 << 20 };
    uint64_t *img = malloc(N * sizeof *img);
    cr_assert_not_null(img);
    long flips = 0;
    for (uint64_t i = 0; i < N; i++) {
        img[i] = tp__prp64(key, i + 1);
        if (i > 0)
            flips += __builtin_popcountll(img[i] ^ img[i - 1]);
    }
    /* Consecutive counters differ in about half their bits. */
    double mean = (double)flips / (N - 1);
    cr_assert(mean > 31.5 && mean < 32.5, "mean bits changed %.3f", mean);
    qsort(img, N, sizeof *img, cmp_u64);
    for (size_t i = 1; i < N; i++)
        cr_assert_neq(img[i], img[i - 1], "two counters share an image");
    free(img);
    /* Another key, another permutation. */
    unsigned char other[16] = {1};
    cr_assert_neq(tp__prp64(key, 1), tp__prp64(other, 1));
}
