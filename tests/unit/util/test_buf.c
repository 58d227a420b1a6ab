/*
 * Reference-counted buffers and the builder (src/util/buf.h).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "support.h"
#include "transports.h"
#include "util/buf.h"

/* Every test runs with the support library's counting, failing allocator
 * (tests/support): tpt_alloc.live counts blocks not yet freed, so a leak
 * fails the test in every build. */
TestSuite(buf, .init = tpt_alloc_install);

/* ---- Buffers ---- */

Test(buf, new_is_empty_terminated_with_one_reference)
{
    tp__buf *b = tp__buf_new(10);
    cr_assert_not_null(b);
    cr_assert_eq(b->refs, 1);
    cr_assert_eq(b->len, 0);
    cr_assert_geq(b->cap, 10);
    cr_assert_eq(b->data[0], '\0');
    memset(b->data, 'x', b->cap + 1); /* cap bytes plus the terminator are ours */
    tp__buf_unref(b);
    cr_assert_eq(tpt_alloc.live, 0);

    b = tp__buf_new(0);
    cr_assert_not_null(b);
    cr_assert_eq(b->data[0], '\0');
    tp__buf_unref(b);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(buf, copy_keeps_bytes_and_terminates)
{
    const char bytes[] = {'a', '\0', 'b', '"', '\n'};
    tp__buf *b = tp__buf_copy(bytes, sizeof bytes);
    cr_assert_not_null(b);
    cr_assert_eq(b->len, sizeof bytes);
    cr_assert_eq(memcmp(b->data, bytes, sizeof bytes), 0);
    cr_assert_eq(b->data[b->len], '\0');
    cr_assert_eq(b->refs, 1);
    tp__buf_unref(b);

    b = tp__buf_copy("", 0);
    cr_assert_not_null(b);
    cr_assert_eq(b->len, 0);
    cr_assert_str_eq(b->data, "");
    tp__buf_unref(b);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(buf, refcount_frees_on_the_last_unref_only)
{
    tp__buf *b = tp__buf_copy("shared", 6);
    cr_assert_eq(tpt_alloc.live, 1);
    cr_assert_eq(tp__buf_ref(b), b);
    cr_assert_eq(tp__buf_ref(b), b);
    cr_assert_eq(b->refs, 3);
    tp__buf_unref(b);
    tp__buf_unref(b);
    cr_assert_eq(tpt_alloc.live, 1, "freed while a reference was held");
    cr_assert_eq(b->refs, 1);
    cr_assert_str_eq(b->data, "shared");
    tp__buf_unref(b);
    cr_assert_eq(tpt_alloc.live, 0, "the last unref must free");
    tp__buf_unref(NULL); /* allowed */
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(buf, new_refuses_sizes_that_overflow)
{
    tpt_fail_after(1); /* a bug that allocated would get NULL, not crash */
    cr_assert_null(tp__buf_new(SIZE_MAX));
    cr_assert_null(tp__buf_new(SIZE_MAX - sizeof(tp__buf)));
    cr_assert_eq(tpt_alloc.attempts, 0, "an impossible size must not reach the allocator");
}

Test(buf, out_of_memory_returns_null)
{
    tpt_fail_after(1);
    cr_assert_null(tp__buf_new(16));
    cr_assert_null(tp__buf_copy("abc", 3));
    cr_assert_eq(tpt_alloc.live, 0);
}

/* ---- The builder ---- */

Test(buf, sb_appends_and_grows)
{
    tp__sb sb;
    tp__sb_init(&sb, 1);
    cr_assert_eq(sb.failed, 0);
    /* A reference built the plain way, to compare with. */
    size_t cap = 1 << 20, n = 0;
    char *want = malloc(cap);
    unsigned seed = 7;
    for (int i = 0; i < 2000; i++) {
        char chunk[700];
        size_t len = (size_t)(seed = seed * 1103515245u + 12345u) % sizeof chunk;
        if (i == 1000)
            len = 0; /* an empty append changes nothing */
        for (size_t k = 0; k < len; k++)
            chunk[k] = (char)('a' + (i + k) % 26);
        tp__sb_append(&sb, chunk, len);
        memcpy(want + n, chunk, len);
        n += len;
        cr_assert_eq(sb.buf->len, n);
        cr_assert_geq(sb.buf->cap, sb.buf->len);
        cr_assert_eq(sb.buf->data[n], '\0');
    }
    /* One append far larger than doubling would give. */
    char *big = malloc(100000);
    memset(big, 'Z', 100000);
    tp__sb_append(&sb, big, 100000);
    memcpy(want + n, big, 100000);
    n += 100000;
    free(big);
    tp__sb_puts(&sb, "end");
    memcpy(want + n, "end", 3);
    n += 3;

    tp__buf *b = tp__sb_finish(&sb);
    cr_assert_not_null(b);
    cr_assert_eq(b->len, n);
    cr_assert_eq(memcmp(b->data, want, n), 0);
    cr_assert_eq(b->data[n], '\0');
    cr_assert_eq(b->refs, 1);
    cr_assert_null(sb.buf, "finish hands the buffer over");
    tp__buf_unref(b);
    cr_assert_eq(tpt_alloc.live, 0);
    free(want);
}

Test(buf, sb_growth_is_geometric)
{
    tp__sb sb;
    tp__sb_init(&sb, 0);
    for (int i = 0; i < 1000000; i++)
        tp__sb_append(&sb, "x", 1);
    cr_assert_eq(sb.buf->len, 1000000);
    /* 64 bytes doubled up to a million is 14 reallocations; one per append
     * would be a million. */
    cr_assert_leq(tpt_alloc.reallocs, 20, "%ld reallocations for a million one-byte appends",
                  tpt_alloc.reallocs);
    tp__sb_free(&sb);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(buf, sb_init_zero_gives_a_usable_default)
{
    tp__sb sb;
    tp__sb_init(&sb, 0);
    cr_assert_eq(sb.failed, 0);
    cr_assert_not_null(sb.buf);
    cr_assert_gt(sb.buf->cap, 0);
    tp__sb_puts(&sb, "hello");
    tp__buf *b = tp__sb_finish(&sb);
    cr_assert_str_eq(b->data, "hello");
    tp__buf_unref(b);
    cr_assert_eq(tpt_alloc.live, 0);
}

static void
expect_int(int64_t v, const char *want)
{
    tp__sb sb;
    tp__sb_init(&sb, 4);
    tp__sb_puts(&sb, "<");
    tp__sb_int(&sb, v);
    tp__sb_puts(&sb, ">");
    tp__buf *b = tp__sb_finish(&sb);
    cr_assert_not_null(b);
    char expected[40];
    snprintf(expected, sizeof expected, "<%s>", want);
    cr_assert_str_eq(b->data, expected, "tp__sb_int(%" PRId64 ")", v);
    cr_assert_eq(b->len, strlen(expected));
    tp__buf_unref(b);
}

Test(buf, sb_int_extremes)
{
    expect_int(0, "0");
    expect_int(1, "1");
    expect_int(-1, "-1");
    expect_int(9, "9");
    expect_int(10, "10");
    expect_int(-10, "-10");
    expect_int(-42, "-42");
    expect_int(1000000, "1000000");
    expect_int(INT64_MAX, "9223372036854775807");
    expect_int(INT64_MIN, "-9223372036854775808");
    expect_int(INT64_MIN + 1, "-9223372036854775807");
    expect_int(INT64_MAX - 1, "9223372036854775806");
    expect_int((int64_t)INT32_MIN, "-2147483648");
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(buf, sb_int_matches_printf)
{
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < 20000; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        /* Every magnitude: shift a random word right by 0 to 63 bits. */
        int64_t v = (int64_t)(s >> (i % 64));
        if (i % 2)
            v = -v;
        char want[32];
        snprintf(want, sizeof want, "%" PRId64, v);
        expect_int(v, want);
    }
}

Test(buf, sb_failed_init_propagates_to_finish)
{
    tp__sb sb;
    tpt_fail_after(1);
    tp__sb_init(&sb, 16);
    cr_assert_eq(sb.failed, 1);
    tp__sb_puts(&sb, "ignored");
    tp__sb_int(&sb, 12345);
    tpt_fail_disarm(); /* memory is back, but the builder stays failed */
    tp__sb_append(&sb, "still ignored", 13);
    cr_assert_null(tp__sb_finish(&sb));
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(buf, sb_failed_growth_propagates_to_finish_without_leaking)
{
    tp__sb sb;
    tp__sb_init(&sb, 8);
    tp__sb_puts(&sb, "1234");
    tpt_fail_after(1);
    tp__sb_puts(&sb, "this does not fit in eight bytes");
    cr_assert_eq(sb.failed, 1);
    tpt_fail_disarm();
    tp__sb_puts(&sb, "x"); /* would fit, but the builder has failed */
    cr_assert_eq(sb.failed, 1);
    cr_assert_null(tp__sb_finish(&sb), "a builder that lost bytes must not hand out a buffer");
    cr_assert_eq(tpt_alloc.live, 0, "finish must free the buffer of a failed builder");
    cr_assert_null(sb.buf);
    tp__sb_free(&sb); /* after finish: harmless */
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(buf, sb_fails_the_nth_allocation_for_every_n)
{
    /* Build a text that needs several reallocations, failing each
     * allocation in turn: either the whole text or NULL, never a leak. */
    char want[5000];
    for (size_t i = 0; i < sizeof want; i++)
        want[i] = (char)('0' + i % 10);
    int completed = 0;
    for (long n = 1; n <= 12; n++) {
        tp__sb sb;
        tpt_fail_after(n);
        tp__sb_init(&sb, 1);
        for (size_t off = 0; off < sizeof want; off += 50)
            tp__sb_append(&sb, want + off, 50);
        tp__buf *b = tp__sb_finish(&sb);
        tpt_fail_disarm();
        if (b != NULL) {
            cr_assert_eq(b->len, sizeof want);
            cr_assert_eq(memcmp(b->data, want, sizeof want), 0);
            tp__buf_unref(b);
            completed++;
        }
        cr_assert_eq(tpt_alloc.live, 0, "leak when allocation %ld failed", n);
    }
    cr_assert_gt(completed, 0, "enough allocations must let it finish");
    cr_assert_lt(completed, 12, "the early failures must be seen");
}

Test(buf, sb_append_refuses_lengths_that_overflow)
{
    tp__sb sb;
    tp__sb_init(&sb, 8);
    tp__sb_puts(&sb, "abc");
    /* The data pointer is valid for 1 byte only: an append that did not
     * check the size would read far past it. */
    tp__sb_append(&sb, "x", SIZE_MAX - 2);
    cr_assert_eq(sb.failed, 1);
    cr_assert_null(tp__sb_finish(&sb));
    cr_assert_eq(tpt_alloc.live, 0);

    tp__sb_init(&sb, 0);
    tp__sb_append(&sb, "x", SIZE_MAX);
    cr_assert_eq(sb.failed, 1);
    cr_assert_null(tp__sb_finish(&sb));
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(buf, sb_reset_reuses_the_buffer)
{
    tp__sb sb;
    tp__sb_init(&sb, 8);
    tp__sb_puts(&sb, "a long enough text to make the builder grow once or twice");
    tp__buf *kept = sb.buf;
    size_t cap = kept->cap;
    long before = tpt_alloc.mallocs + tpt_alloc.reallocs;
    tp__sb_reset(&sb);
    cr_assert_eq(sb.buf, kept, "reset keeps the buffer");
    cr_assert_eq(sb.buf->cap, cap);
    cr_assert_eq(sb.buf->len, 0);
    cr_assert_str_eq(sb.buf->data, "");
    cr_assert_eq(sb.failed, 0);
    tp__sb_puts(&sb, "short");
    cr_assert_eq(tpt_alloc.mallocs + tpt_alloc.reallocs, before,
                 "reuse within the capacity must not allocate");
    cr_assert_str_eq(sb.buf->data, "short");
    cr_assert_eq(tpt_alloc.live, 1);
    tp__sb_free(&sb);
    cr_assert_null(sb.buf);
    cr_assert_eq(tpt_alloc.live, 0);
    tp__sb_free(&sb); /* twice is harmless */
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(buf, sb_reset_recovers_a_failed_builder)
{
    tp__sb sb;
    tp__sb_init(&sb, 8);
    tpt_fail_after(1);
    tp__sb_puts(&sb, "more than eight bytes");
    cr_assert_eq(sb.failed, 1);
    tpt_fail_disarm();
    tp__sb_reset(&sb);
    cr_assert_eq(sb.failed, 0);
    tp__sb_puts(&sb, "more than eight bytes");
    tp__buf *b = tp__sb_finish(&sb);
    cr_assert_not_null(b);
    cr_assert_str_eq(b->data, "more than eight bytes");
    tp__buf_unref(b);
    cr_assert_eq(tpt_alloc.live, 0);
}

Test(buf, sb_reset_after_finish_or_failed_init_starts_over)
{
    tp__sb sb;
    tp__sb_init(&sb, 0);
    tp__sb_puts(&sb, "first");
    tp__buf *first = tp__sb_finish(&sb);
    tp__sb_reset(&sb); /* the buffer was handed over: reset makes a new one */
    cr_assert_not_null(sb.buf);
    cr_assert_neq(sb.buf, first);
    cr_assert_eq(sb.failed, 0);
    tp__sb_puts(&sb, "second");
    tp__buf *second = tp__sb_finish(&sb);
    cr_assert_str_eq(first->data, "first", "the finished buffer is the caller's, untouched");
    cr_assert_str_eq(second->data, "second");
    tp__buf_unref(first);
    tp__buf_unref(second);

    tpt_fail_after(1);
    tp__sb_init(&sb, 0);
    cr_assert_eq(sb.failed, 1);
    tpt_fail_disarm();
    tp__sb_reset(&sb);
    cr_assert_eq(sb.failed, 0);
    tp__sb_puts(&sb, "ok");
    tp__buf *b = tp__sb_finish(&sb);
    cr_assert_str_eq(b->data, "ok");
    tp__buf_unref(b);
    cr_assert_eq(tpt_alloc.live, 0);
}
