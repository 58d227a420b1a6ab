/*
 * The growable pointer array (src/util/vec.h): push, reserve and
 * swap_remove, including the index bookkeeping the core builds on it (every
 * item knows its index, and swap_remove tells which item moved).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "support.h"
#include "transports.h"
#include "util/vec.h"

/* Every test runs with the support library's counting, failing allocator
 * (tests/support): tpt_alloc.live counts blocks not yet freed, so a leak
 * fails the test in every build. */
TestSuite(vec, .init = tpt_alloc_install);

static void *
val(uintptr_t v)
{
    return (void *)v;
}

Test(vec, init_is_empty)
{
    tp__vec v = TP__VEC_INIT;
    cr_assert_null(v.items);
    cr_assert_eq(v.len, 0);
    cr_assert_eq(v.cap, 0);
    tp__vec_free(&v); /* freeing an empty vec is fine */
    tp__vec_free(&v);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}

Test(vec, push_appends_in_order)
{
    tp__vec v = TP__VEC_INIT;
    for (uintptr_t i = 1; i <= 1000; i++) {
        cr_assert_eq(tp__vec_push(&v, val(i)), 0);
        cr_assert_eq(v.len, i);
        cr_assert_geq(v.cap, v.len);
    }
    for (uintptr_t i = 1; i <= 1000; i++)
        cr_assert_eq(v.items[i - 1], val(i));
    cr_assert_eq(tp__vec_push(&v, NULL), 0, "NULL is an item like any other");
    cr_assert_eq(v.len, 1001);
    cr_assert_null(v.items[1000]);
    tp__vec_free(&v);
    cr_assert_null(v.items);
    cr_assert_eq(v.len, 0);
    cr_assert_eq(v.cap, 0);
    cr_assert_eq(tp__vec_push(&v, val(5)), 0, "a freed vec is empty and usable");
    cr_assert_eq(v.items[0], val(5));
    tp__vec_free(&v);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}

Test(vec, growth_is_geometric)
{
    tp__vec v = TP__VEC_INIT;
    for (uintptr_t i = 0; i < 100000; i++)
        cr_assert_eq(tp__vec_push(&v, val(i)), 0);
    long n = tpt_alloc.calls;
    cr_assert_leq(n, 20, "%ld allocations for 100000 pushes", n);
    tp__vec_free(&v);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}

Test(vec, reserve_makes_pushes_infallible)
{
    for (size_t first = 0; first < 6; first++) {
        for (size_t n = 0; n < 70; n += 7) {
            tp__vec v = TP__VEC_INIT;
            for (size_t i = 0; i < first; i++)
                cr_assert_eq(tp__vec_push(&v, val(i)), 0);
            cr_assert_eq(tp__vec_reserve(&v, n), 0);
            cr_assert_geq(v.cap - v.len, n);
            tpt_fail_after(1);
            for (size_t i = 0; i < n; i++)
                cr_assert_eq(tp__vec_push(&v, val(first + i)), 0,
                             "push %zu of %zu reserved (after %zu) failed", i + 1, n, first);
            cr_assert_eq(tp__vec_reserve(&v, 0), 0, "reserving nothing never allocates");
            tpt_fail_disarm();
            for (size_t i = 0; i < first + n; i++)
                cr_assert_eq(v.items[i], val(i));
            tp__vec_free(&v);
            cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
        }
    }
}

Test(vec, reserve_is_for_n_more_not_n_in_total)
{
    tp__vec v = TP__VEC_INIT;
    for (uintptr_t i = 0; i < 10; i++)
        tp__vec_push(&v, val(i));
    cr_assert_eq(tp__vec_reserve(&v, 100), 0);
    cr_assert_geq(v.cap, 110);
    cr_assert_eq(v.len, 10);
    for (uintptr_t i = 0; i < 10; i++)
        cr_assert_eq(v.items[i], val(i), "reserve must keep the items");
    tp__vec_free(&v);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}

Test(vec, failed_push_leaves_the_vec_unchanged)
{
    tp__vec v = TP__VEC_INIT;
    tpt_fail_after(1);
    cr_assert_eq(tp__vec_push(&v, val(1)), -1);
    tpt_fail_disarm();
    cr_assert_eq(v.len, 0);
    cr_assert_eq(v.cap, 0);
    cr_assert_null(v.items);

    int failures = 0;
    for (uintptr_t i = 0; i < 300; i++) {
        void **items = v.items;
        size_t cap = v.cap;
        tpt_fail_after(1);
        int rc = tp__vec_push(&v, val(i));
        tpt_fail_disarm();
        if (rc != 0) {
            cr_assert_eq(rc, -1);
            failures++;
            cr_assert_eq(v.len, i);
            cr_assert_eq(v.cap, cap);
            cr_assert_eq(v.items, items);
            for (uintptr_t k = 0; k < i; k++)
                cr_assert_eq(v.items[k], val(k));
            cr_assert_eq(tp__vec_push(&v, val(i)), 0);
        }
    }
    cr_assert_geq(failures, 5, "growing to 300 takes several allocations");
    for (uintptr_t k = 0; k < 300; k++)
        cr_assert_eq(v.items[k], val(k));

    tpt_fail_after(1);
    size_t cap = v.cap;
    cr_assert_eq(tp__vec_reserve(&v, 100000), -1);
    tpt_fail_disarm();
    cr_assert_eq(v.cap, cap);
    cr_assert_eq(v.len, 300);
    tp__vec_free(&v);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}

Test(vec, reserve_refuses_sizes_that_overflow)
{
    tp__vec v = TP__VEC_INIT;
    tp__vec_push(&v, val(1));
    tpt_fail_after(1);
    /* n * sizeof(void *) overflows size_t: refused, nothing allocated. */
    cr_assert_eq(tp__vec_reserve(&v, SIZE_MAX / 4), -1);
    tpt_fail_disarm();
    cr_assert_eq(v.len, 1);
    cr_assert_eq(v.items[0], val(1));
    tp__vec_free(&v);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}

Test(vec, swap_remove_moves_the_last_item)
{
    tp__vec v = TP__VEC_INIT;
    for (uintptr_t i = 1; i <= 5; i++)
        tp__vec_push(&v, val(i)); /* 1 2 3 4 5 */

    cr_assert_eq(tp__vec_swap_remove(&v, 1), val(5)); /* 1 5 3 4 */
    cr_assert_eq(v.len, 4);
    cr_assert_eq(v.items[0], val(1));
    cr_assert_eq(v.items[1], val(5));
    cr_assert_eq(v.items[2], val(3));
    cr_assert_eq(v.items[3], val(4));

    cr_assert_null(tp__vec_swap_remove(&v, 3), "removing the last moves nothing"); /* 1 5 3 */
    cr_assert_eq(v.len, 3);
    cr_assert_eq(v.items[2], val(3));

    cr_assert_eq(tp__vec_swap_remove(&v, 0), val(3)); /* 3 5 */
    cr_assert_eq(v.items[0], val(3));
    cr_assert_eq(v.items[1], val(5));
    cr_assert_eq(v.len, 2);

    cr_assert_null(tp__vec_swap_remove(&v, 1)); /* 3 */
    cr_assert_null(tp__vec_swap_remove(&v, 0)); /* empty */
    cr_assert_eq(v.len, 0);
    cr_assert_eq(tp__vec_push(&v, val(9)), 0);
    cr_assert_eq(v.items[0], val(9));
    tp__vec_free(&v);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}

/* Items that know their index, as connections and subscriptions do. */
typedef struct item {
    size_t idx;
    int alive;
} item;

static uint64_t
rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

Test(vec, randomized_index_bookkeeping)
{
    enum { N = 512 };
    static item pool[N];
    memset(pool, 0, sizeof pool);
    tp__vec v = TP__VEC_INIT;
    uint64_t s = 12345;
    size_t alive = 0;
    for (int op = 0; op < 20000; op++) {
        item *it = &pool[rnd(&s) % N];
        if (!it->alive) {
            cr_assert_eq(tp__vec_push(&v, it), 0);
            it->idx = v.len - 1;
            it->alive = 1;
            alive++;
        } else {
            cr_assert_eq(v.items[it->idx], it);
            item *moved = tp__vec_swap_remove(&v, it->idx);
            if (moved != NULL) {
                cr_assert_neq(moved, it);
                moved->idx = it->idx;
            }
            it->alive = 0;
            alive--;
        }
        if (op % 500 == 0 || op == 19999) {
            cr_assert_eq(v.len, alive);
            size_t counted = 0;
            for (size_t i = 0; i < N; i++) {
                if (!pool[i].alive)
                    continue;
                counted++;
                cr_assert_lt(pool[i].idx, v.len);
                cr_assert_eq(v.items[pool[i].idx], &pool[i], "item %zu lost its place", i);
            }
            cr_assert_eq(counted, v.len);
        }
    }
    tp__vec_free(&v);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}
