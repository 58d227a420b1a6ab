/*
 * The string map (src/util/map.h): open addressing, linear probing,
 * backward-shift deletion. Besides the plain calls, a randomized model test
 * runs thousands of operations against a reference array and checks every
 * key, the length, the iteration and the probe-run invariant after each
 * batch, so a deletion that leaves a hole in a probe run cannot hide.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "support.h"
#include "transports.h"
#include "util/map.h"

/* Every test runs with the support library's counting, failing allocator
 * (tests/support): tpt_alloc.live counts blocks not yet freed, so a leak
 * fails the test in every build. */
TestSuite(map, .init = tpt_alloc_install, .timeout = 20);

/* ---- Helpers ---- */

static void *
val(uintptr_t v)
{
    return (void *)v;
}

/* A small deterministic generator (xorshift64*), so failures replay. */
static uint64_t
rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dULL;
}

/* Keys live in one static table: the map borrows key pointers. */
#define UNIVERSE 4096
static char keys[UNIVERSE][16];

static void
make_keys(void)
{
    for (int i = 0; i < UNIVERSE; i++)
        snprintf(keys[i], sizeof keys[i], "key-%d", i);
}

/*
 * The probe-run invariant of linear probing without tombstones: every slot
 * between an entry's home slot and the slot it occupies is occupied. A
 * deletion that breaks it makes later lookups stop early.
 */
static void
check_probe_runs(const tp__map *m)
{
    if (m->cap == 0) {
        cr_assert_eq(m->len, 0);
        return;
    }
    cr_assert_eq(m->cap & (m->cap - 1), 0, "cap %zu is not a power of two", m->cap);
    cr_assert_leq(m->len * 4, m->cap * 3, "load over 3/4: %zu of %zu", m->len, m->cap);
    size_t mask = m->cap - 1, used = 0;
    for (size_t i = 0; i < m->cap; i++) {
        const tp__map_slot *s = &m->slots[i];
        if (s->key == NULL)
            continue;
        used++;
        for (size_t j = s->hash & mask; j != i; j = (j + 1) & mask)
            cr_assert_not_null(
                m->slots[j].key,
                "slot %zu is empty inside the probe run of \"%s\" (home %zu, at %zu)", j, s->key,
                (size_t)(s->hash & mask), i);
    }
    cr_assert_eq(used, m->len, "%zu occupied slots, len %zu", used, m->len);
}

/* Checks the map against the reference: ref[i] is key i's value, 0 absent. */
static void
check_model(const tp__map *m, const uintptr_t *ref, size_t nkeys)
{
    size_t present = 0;
    for (size_t i = 0; i < nkeys; i++) {
        void *got = tp__map_get(m, keys[i]);
        cr_assert_eq(got, val(ref[i]), "key \"%s\": got %p, want %p", keys[i], got, val(ref[i]));
        present += ref[i] != 0;
    }
    cr_assert_eq(m->len, present, "len %zu, reference has %zu keys", m->len, present);

    /* Iteration: every present key exactly once, with its value. */
    unsigned char *seen = calloc(nkeys, 1);
    const char *k;
    void *v;
    size_t visits = 0;
    for (size_t it = 0; tp__map_next(m, &it, &k, &v);) {
        int idx = -1;
        cr_assert_eq(sscanf(k, "key-%d", &idx), 1);
        cr_assert(idx >= 0 && (size_t)idx < nkeys);
        cr_assert_eq(k, keys[idx], "the map must hand back the key pointer it was given");
        cr_assert_eq(seen[idx], 0, "key \"%s\" visited twice", k);
        cr_assert_eq(v, val(ref[idx]));
        seen[idx] = 1;
        visits++;
    }
    cr_assert_eq(visits, present);
    free(seen);
    check_probe_runs(m);
}

/* ---- Plain calls ---- */

Test(map, empty_map_allocates_nothing_and_finds_nothing)
{
    tp__map m;
    tp__map_init(&m, 42);
    cr_assert_eq(m.len, 0);
    cr_assert_eq(m.cap, 0);
    cr_assert_null(m.slots);
    cr_assert_null(tp__map_get(&m, "a"));
    cr_assert_null(tp__map_getn(&m, "a", 1));
    cr_assert_null(tp__map_del(&m, "a"));
    size_t it = 0;
    cr_assert_eq(tp__map_next(&m, &it, NULL, NULL), 0);
    tp__map_free(&m);
    tp__map_free(&m); /* twice is harmless */
}

Test(map, put_get_del)
{
    tp__map m;
    tp__map_init(&m, 1);
    cr_assert_eq(tp__map_put(&m, "alpha", val(1)), 0);
    cr_assert_eq(tp__map_put(&m, "beta", val(2)), 0);
    cr_assert_eq(tp__map_put(&m, "", val(3)), 0); /* the empty key is a key */
    cr_assert_eq(m.len, 3);
    cr_assert_eq(tp__map_get(&m, "alpha"), val(1));
    cr_assert_eq(tp__map_get(&m, "beta"), val(2));
    cr_assert_eq(tp__map_get(&m, ""), val(3));
    cr_assert_null(tp__map_get(&m, "gamma"));
    cr_assert_null(tp__map_get(&m, "alph"));
    cr_assert_null(tp__map_get(&m, "alphaa"));

    cr_assert_eq(tp__map_del(&m, "beta"), val(2));
    cr_assert_eq(m.len, 2);
    cr_assert_null(tp__map_get(&m, "beta"));
    cr_assert_null(tp__map_del(&m, "beta"), "deleting twice finds nothing");
    cr_assert_eq(m.len, 2);
    cr_assert_eq(tp__map_get(&m, "alpha"), val(1));
    cr_assert_eq(tp__map_del(&m, ""), val(3));
    cr_assert_eq(tp__map_del(&m, "alpha"), val(1));
    cr_assert_eq(m.len, 0);
    cr_assert_eq(tp__map_put(&m, "alpha", val(4)), 0, "a deleted key can come back");
    cr_assert_eq(tp__map_get(&m, "alpha"), val(4));
    tp__map_free(&m);
    cr_assert_eq(m.len, 0);
    cr_assert_null(m.slots);
}

Test(map, lookup_compares_strings_not_pointers)
{
    tp__map m;
    tp__map_init(&m, 7);
    char stored[] = "tenant-a";
    char probe[] = "tenant-a";
    cr_assert_eq(tp__map_put(&m, stored, val(9)), 0);
    cr_assert_eq(tp__map_get(&m, probe), val(9));
    cr_assert_eq(tp__map_del(&m, probe), val(9));
    tp__map_free(&m);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}

Test(map, replace_keeps_len_and_takes_the_new_key_pointer)
{
    tp__map m;
    tp__map_init(&m, 3);
    char *old = strdup("model-1");
    char *fresh = strdup("model-1");
    cr_assert_eq(tp__map_put(&m, old, val(1)), 0);
    cr_assert_eq(tp__map_put(&m, "other", val(2)), 0);
    cr_assert_eq(tp__map_put(&m, fresh, val(5)), 0);
    cr_assert_eq(m.len, 2);
    cr_assert_eq(tp__map_get(&m, "model-1"), val(5));
    /* Keys are borrowed: after a replace the map points into the new key,
     * so the old one may go (callers free the old value and its key). */
    memset(old, 'X', strlen(old));
    free(old);
    cr_assert_eq(tp__map_get(&m, "model-1"), val(5));
    const char *k;
    void *v;
    int found = 0;
    for (size_t it = 0; tp__map_next(&m, &it, &k, &v);) {
        if (v == val(5)) {
            cr_assert_eq(k, fresh);
            found++;
        }
    }
    cr_assert_eq(found, 1);
    cr_assert_eq(tp__map_del(&m, "model-1"), val(5));
    tp__map_free(&m);
    free(fresh);
}

Test(map, getn_matches_exactly_n_bytes)
{
    tp__map m;
    tp__map_init(&m, 11);
    cr_assert_eq(tp__map_put(&m, "alpha", val(1)), 0);
    cr_assert_eq(tp__map_put(&m, "alphabet", val(2)), 0);
    cr_assert_eq(tp__map_put(&m, "", val(3)), 0);
    const char *text = "alphabet soup";
    cr_assert_eq(tp__map_getn(&m, text, 5), val(1));
    cr_assert_eq(tp__map_getn(&m, text, 8), val(2));
    cr_assert_eq(tp__map_getn(&m, text, 0), val(3));
    cr_assert_null(tp__map_getn(&m, text, 6), "\"alphab\" is not stored");
    cr_assert_null(tp__map_getn(&m, text, 4), "\"alph\" is not stored");
    cr_assert_null(tp__map_getn(&m, text, 13));
    /* A stored key longer than n with the same first n bytes is not a match. */
    cr_assert_eq(tp__map_del(&m, "alpha"), val(1));
    cr_assert_null(tp__map_getn(&m, text, 5));
    /* n bytes that are not NUL-terminated: a field name inside a JSON text. */
    char buf[8] = {'a', 'l', 'p', 'h', 'a', 'b', 'e', 't'};
    cr_assert_eq(tp__map_getn(&m, buf, sizeof buf), val(2));
    tp__map_free(&m);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}

Test(map, iteration_visits_every_key_exactly_once)
{
    make_keys();
    tp__map m;
    tp__map_init(&m, 99);
    static uintptr_t ref[UNIVERSE];
    for (size_t i = 0; i < 1000; i++) {
        ref[i] = i + 1;
        cr_assert_eq(tp__map_put(&m, keys[i], val(ref[i])), 0);
    }
    /* Remove every third key so the table has holes between runs. */
    for (size_t i = 0; i < 1000; i += 3) {
        cr_assert_eq(tp__map_del(&m, keys[i]), val(ref[i]));
        ref[i] = 0;
    }
    check_model(&m, ref, 1000);

    /* NULL key and value pointers are allowed; the end is sticky. */
    size_t it = 0, n = 0;
    while (tp__map_next(&m, &it, NULL, NULL))
        n++;
    cr_assert_eq(n, m.len);
    cr_assert_eq(tp__map_next(&m, &it, NULL, NULL), 0);
    cr_assert_eq(tp__map_next(&m, &it, NULL, NULL), 0);
    tp__map_free(&m);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}

Test(map, load_stays_at_most_three_quarters)
{
    /* Linear probing needs empty slots: a lookup of an absent key stops at
     * the first one. map.c keeps the load at or below 3/4. */
    make_keys();
    tp__map m;
    tp__map_init(&m, 123);
    for (size_t i = 0; i < 2000; i++) {
        cr_assert_eq(tp__map_put(&m, keys[i], val(i + 1)), 0);
        cr_assert_leq(m.len * 4, m.cap * 3, "%zu keys in %zu slots", m.len, m.cap);
        cr_assert_null(tp__map_get(&m, "absent"));
    }
    check_probe_runs(&m);
    tp__map_free(&m);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}

Test(map, seeds_differ)
{
    static int a, b;
    cr_assert_neq(tp__seed(&a), tp__seed(&b));
}

Test(map, same_keys_any_seed)
{
    make_keys();
    static uintptr_t ref[UNIVERSE];
    for (uint64_t seed = 0; seed < 8; seed++) {
        tp__map m;
        tp__map_init(&m, seed * 0x9e3779b97f4a7c15ULL);
        for (size_t i = 0; i < 300; i++) {
            ref[i] = i * 7 + 1;
            cr_assert_eq(tp__map_put(&m, keys[i], val(ref[i])), 0);
        }
        check_model(&m, ref, 300);
        tp__map_free(&m);
        cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
    }
}

/* ---- Randomized model test ---- */

/*
 * nkeys bounds the key universe: a small one keeps the table small and
 * crowded, so probe runs wrap around the end of the slot array and
 * backward shifts cross it; a large one exercises growth.
 */
static void
model_run(uint64_t seed, size_t nkeys, int batches, int batch_ops)
{
    make_keys();
    uintptr_t *ref = calloc(nkeys, sizeof *ref);
    tp__map m;
    tp__map_init(&m, rnd(&seed));
    uintptr_t next = 1;
    for (int b = 0; b < batches; b++) {
        /* Alternate phases that grow and shrink the map, so it visits every
         * load from empty to full. */
        unsigned put_pct = (b / 8) % 2 == 0 ? 65 : 30;
        for (int op = 0; op < batch_ops; op++) {
            size_t i = rnd(&seed) % nkeys;
            unsigned r = (unsigned)(rnd(&seed) % 100);
            if (r < put_pct) {
                ref[i] = next++;
                cr_assert_eq(tp__map_put(&m, keys[i], val(ref[i])), 0);
            } else if (r < 95) {
                void *got = tp__map_del(&m, keys[i]);
                cr_assert_eq(got, val(ref[i]), "del \"%s\" (batch %d, op %d)", keys[i], b, op);
                ref[i] = 0;
            } else {
                cr_assert_eq(tp__map_get(&m, keys[i]), val(ref[i]));
            }
        }
        check_model(&m, ref, nkeys);
    }
    /* Empty it completely: every deletion must still find its key. */
    for (size_t i = 0; i < nkeys; i++) {
        cr_assert_eq(tp__map_del(&m, keys[i]), val(ref[i]));
        ref[i] = 0;
    }
    check_model(&m, ref, nkeys);
    tp__map_free(&m);
    free(ref);
}

Test(map, randomized_small_crowded_table)
{
    for (uint64_t seed = 1; seed <= 20; seed++)
        model_run(seed * 0x51ed2701ULL, 12, 40, 50);
}

Test(map, randomized_medium)
{
    for (uint64_t seed = 1; seed <= 4; seed++)
        model_run(seed * 0x2545f491ULL + 17, 200, 60, 200);
}

Test(map, randomized_large)
{
    model_run(0xdeadbeefULL, UNIVERSE, 24, 2000);
}

/* ---- Reserve and allocation failure ---- */

Test(map, reserve_makes_the_next_puts_infallible)
{
    make_keys();
    for (size_t n = 1; n <= 600; n = n * 3 + 1) {
        tp__map m;
        tp__map_init(&m, n);
        /* Some keys first, so reserve counts from a non-empty map. */
        for (size_t i = 0; i < 5; i++)
            cr_assert_eq(tp__map_put(&m, keys[i], val(i + 1)), 0);
        cr_assert_eq(tp__map_reserve(&m, n), 0);
        tpt_fail_after(1); /* every allocation from here on fails */
        for (size_t i = 5; i < 5 + n; i++)
            cr_assert_eq(tp__map_put(&m, keys[i], val(i + 1)), 0, "put %zu of %zu reserved failed",
                         i - 4, n);
        /* Replacing never allocates either. */
        for (size_t i = 0; i < 5 + n; i++)
            cr_assert_eq(tp__map_put(&m, keys[i], val(i + 2)), 0);
        /* Deleting never allocates. */
        for (size_t i = 0; i < 5 + n; i += 2)
            cr_assert_eq(tp__map_del(&m, keys[i]), val(i + 2));
        /* Reserving room the map already has does not allocate. */
        cr_assert_eq(tp__map_reserve(&m, 0), 0);
        cr_assert_eq(tp__map_reserve(&m, 1), 0);
        tpt_fail_disarm();
        for (size_t i = 0; i < 5 + n; i++)
            cr_assert_eq(tp__map_get(&m, keys[i]), i % 2 == 0 ? NULL : val(i + 2));
        check_probe_runs(&m);
        tp__map_free(&m);
        cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
    }
}

Test(map, failed_put_leaves_the_map_unchanged)
{
    make_keys();
    static uintptr_t ref[UNIVERSE];
    tp__map m;
    tp__map_init(&m, 5);
    int failures = 0;
    for (size_t i = 0; i < 500; i++) {
        tp__map_slot *slots = m.slots;
        size_t cap = m.cap;
        tpt_fail_after(1);
        int rc = tp__map_put(&m, keys[i], val(i + 1));
        tpt_fail_disarm();
        if (rc == 0) {
            /* No allocation was needed: the key went into the table. */
            cr_assert_eq(m.slots, slots);
            ref[i] = i + 1;
        } else {
            cr_assert_eq(rc, -1);
            failures++;
            cr_assert_eq(m.slots, slots, "a failed put must keep the slot array");
            cr_assert_eq(m.cap, cap);
            cr_assert_eq(m.len, i);
            check_model(&m, ref, i + 1); /* key i is absent, every other key intact */
            /* The same put succeeds once memory is back. */
            cr_assert_eq(tp__map_put(&m, keys[i], val(i + 1)), 0);
            ref[i] = i + 1;
        }
    }
    check_model(&m, ref, 500);
    /* Growing from 0 to 500 keys needs several resizes, each tried first
     * under failure. */
    cr_assert_geq(failures, 6, "only %d puts needed memory", failures);

    /* A failed reserve leaves the map as it was too. */
    size_t cap = m.cap;
    tpt_fail_after(1);
    cr_assert_eq(tp__map_reserve(&m, 10000), -1);
    tpt_fail_disarm();
    cr_assert_eq(m.cap, cap);
    check_model(&m, ref, 500);
    tp__map_free(&m);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}

Test(map, first_put_fails_cleanly_on_an_empty_map)
{
    tp__map m;
    tp__map_init(&m, 0);
    tpt_fail_after(1);
    cr_assert_eq(tp__map_put(&m, "k", val(1)), -1);
    tpt_fail_disarm();
    cr_assert_eq(m.len, 0);
    cr_assert_eq(m.cap, 0);
    cr_assert_null(tp__map_get(&m, "k"));
    cr_assert_eq(tp__map_put(&m, "k", val(1)), 0);
    cr_assert_eq(tp__map_get(&m, "k"), val(1));
    tp__map_free(&m);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}

Test(map, reserve_refuses_sizes_that_overflow)
{
    tp__map m;
    tp__map_init(&m, 0);
    cr_assert_eq(tp__map_put(&m, "k", val(1)), 0);
    tpt_fail_after(1); /* a bug that tried to allocate would fail here, not crash */
    cr_assert_eq(tp__map_reserve(&m, SIZE_MAX - 1), -1);
    tpt_fail_disarm();
    cr_assert_eq(tp__map_get(&m, "k"), val(1));
    tp__map_free(&m);
    cr_assert_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live);
}
