/*
 * Tests of src/core/patch.c: RFC 7396 merge patch apply and diff, and the
 * null-member helpers.
 *
 * - cases: every tests/cases/patch/<case> (see its README.md);
 * - properties: random (a, b) pairs from a seeded PRNG (TP_SEED overrides
 *   the seed, TP_ITERS the number of pairs);
 * - sharing: which json_t a result holds, by pointer;
 * - chaos: allocation N fails, for every N until the call succeeds.
 *
 * Leaks are checked without relying on ASan (whose leak reports do not fail
 * a Criterion test): the suite's allocator counts live blocks, and the
 * reference counts of every node of the inputs are compared before and after
 * a call whose result has been dropped, since a reference kept by mistake on
 * a shared subtree is a leak that no allocator sees while the input lives.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "core/patch.h"
#include "support.h"
#include "transports.h"

/* ------------------------------------------------------------------------ */
/* The suite's allocator                                                     */
/* ------------------------------------------------------------------------ */

/*
 * Every test of this suite runs with the support library's counting, failing
 * allocator (tests/support): tpt_alloc.live counts the blocks the library
 * (jansson included) has allocated and not yet freed, so a test that drops
 * everything it made can check that nothing leaked in every build. Besides
 * failing allocation n and all after it, it can fail allocation n alone
 * (tpt_fail_only), which catches code that carries on after a failed
 * allocation (as json_copy does).
 */
TestSuite(patch, .init = tpt_alloc_install);

/* expect_no_leak ends a test that has dropped everything it made. */
#define expect_no_leak() cr_expect_eq(tpt_alloc.live, 0, "%ld blocks leaked", tpt_alloc.live)

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* parse parses a JSON text (any value), failing the test on bad input. */
static json_t *
parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (v == NULL)
        cr_assert_fail("bad test JSON %s: %s", text, jerr.text);
    return v;
}

/* show returns compact JSON text for failure messages, in a small static
 * ring of buffers so that one message can show several values. */
static const char *
show(const json_t *v)
{
    static char buf[8][2048];
    static unsigned next;
    char *out = buf[next++ % 8];
    if (v == NULL) {
        snprintf(out, sizeof buf[0], "(NULL)");
        return out;
    }
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
    snprintf(out, sizeof buf[0], "%s", s != NULL ? s : "(dump failed)");
    tp_free(s);
    return out;
}

/* refsum adds up the reference counts of every node reachable from v, so
 * that a reference taken and not dropped anywhere in a tree changes it.
 * jansson's constants (true, false, null) have a fixed count. */
static size_t
refsum(const json_t *v)
{
    if (v == NULL)
        return 0;
    size_t sum = v->refcount;
    json_t *j = (json_t *)v;
    if (json_is_object(j)) {
        for (void *it = json_object_iter(j); it != NULL; it = json_object_iter_next(j, it))
            sum += refsum(json_object_iter_value(it));
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++)
            sum += refsum(json_array_get(j, i));
    }
    return sum;
}

/* copy is json_deep_copy that fails the test instead of returning NULL
 * (a NULL v gives NULL). */
static json_t *
copy(const json_t *v)
{
    if (v == NULL)
        return NULL;
    json_t *c = json_deep_copy(v);
    cr_assert_not_null(c);
    return c;
}

/* same is json_equal extended to NULL == NULL. */
static int
same(const json_t *a, const json_t *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return json_equal(a, b);
}

/* ------------------------------------------------------------------------ */
/* Data-driven cases                                                         */
/* ------------------------------------------------------------------------ */

static void
run_case(const char *dir)
{
    long live0 = tpt_alloc.live;
    char path[1200];
    snprintf(path, sizeof path, "%s/input.json", dir);
    json_t *input = tpt_load_json(path);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    json_t *expected = tpt_load_json(path);

    cr_assert(json_is_object(input), "%s: input.json is not an object", dir);
    json_t *target = json_object_get(input, "target"); /* NULL: absent */
    json_t *patch = json_object_get(input, "patch");
    cr_assert_not_null(patch, "%s: input.json has no \"patch\"", dir);
    json_t *target_copy = copy(target), *patch_copy = copy(patch);
    size_t refs = refsum(input);

    json_t *result = tp_merge_patch_apply(target, patch);
    cr_assert_not_null(result, "%s: apply returned NULL", dir);
    cr_expect(json_equal(result, expected), "%s: apply gave %s, expected %s", dir, show(result),
              show(expected));
    cr_expect(same(target, target_copy), "%s: apply changed the target to %s", dir, show(target));
    cr_expect(json_equal(patch, patch_copy), "%s: apply changed the patch to %s", dir, show(patch));

    /* Merge patches are idempotent. */
    json_t *again = tp_merge_patch_apply(result, patch);
    cr_assert_not_null(again);
    cr_expect(json_equal(again, result), "%s: applying twice gave %s, once %s", dir, show(again),
              show(result));
    json_decref(again);
    json_decref(result);

    /* The round trip through diff, when expected is reachable at all. */
    if (!tp__json_has_null_member(expected)) {
        json_t *p = tp_merge_patch_diff(target, expected);
        cr_assert_not_null(p, "%s: diff returned NULL", dir);
        json_t *back = tp_merge_patch_apply(target, p);
        cr_assert_not_null(back);
        cr_expect(json_equal(back, expected), "%s: diff %s applied gave %s, expected %s", dir,
                  show(p), show(back), show(expected));
        json_decref(back);
        json_decref(p);
    }
    cr_expect(same(target, target_copy), "%s: diff changed the target", dir);
    cr_expect_eq(refsum(input), refs, "%s: references to the input leaked", dir);

    json_decref(target_copy);
    json_decref(patch_copy);
    json_decref(expected);
    json_decref(input);
    cr_expect_eq(tpt_alloc.live, live0, "%s: %ld blocks leaked", dir, tpt_alloc.live - live0);
}

Test(patch, cases)
{
    char **dirs;
    size_t n = tpt_case_dirs("patch", &dirs);
    /* Every example of RFC 7396 Appendix A is a case, under these names. */
    for (int k = 1; k <= 15; k++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "/rfc7396-a%02d-", k);
        int found = 0;
        for (size_t i = 0; i < n; i++)
            found += strstr(dirs[i], prefix) != NULL;
        cr_expect_eq(found, 1, "RFC 7396 Appendix A example %d: %d case dirs", k, found);
    }
    size_t ran = 0;
    for (size_t i = 0; i < n; i++) {
        const char *base = strrchr(dirs[i], '/') + 1;
        if (strcmp(base, "README.md") == 0)
            continue;
        run_case(dirs[i]);
        ran++;
    }
    cr_assert_geq(ran, 40, "only %zu patch cases found", ran);
    tpt_free_dirs(dirs, n);
    expect_no_leak();
}

/* ------------------------------------------------------------------------ */
/* Apply                                                                     */
/* ------------------------------------------------------------------------ */

static void
expect_apply(const char *target, const char *patch, const char *expected)
{
    json_t *t = target != NULL ? parse(target) : NULL;
    json_t *p = parse(patch), *e = parse(expected);
    json_t *r = tp_merge_patch_apply(t, p);
    cr_assert_not_null(r);
    cr_expect(json_equal(r, e), "apply(%s, %s) gave %s, expected %s", target ? target : "NULL",
              patch, show(r), expected);
    json_decref(r);
    json_decref(t);
    json_decref(p);
    json_decref(e);
}

Test(patch, apply_absent_and_non_object_targets)
{
    expect_apply(NULL, "{\"a\": {\"b\": null, \"c\": 1}, \"d\": null}", "{\"a\": {\"c\": 1}}");
    expect_apply(NULL, "[1, null]", "[1, null]");
    expect_apply(NULL, "null", "null");
    expect_apply("true", "{\"a\": null}", "{}");
    expect_apply("[{\"a\": 1}]", "{\"a\": 2}", "{\"a\": 2}");
    expect_no_leak();
}

Test(patch, apply_null_patch_pointer_is_null)
{
    json_t *t = parse("{\"a\": 1}");
    cr_expect_null(tp_merge_patch_apply(t, NULL));
    cr_expect_null(tp_merge_patch_apply(NULL, NULL));
    json_decref(t);
    expect_no_leak();
}

Test(patch, apply_json_null_patch_gives_json_null)
{
    json_t *t = parse("{\"a\": 1}");
    json_t *r = tp_merge_patch_apply(t, json_null());
    cr_expect(json_is_null(r));
    json_decref(r);
    json_decref(t);
    expect_no_leak();
}

/* Keys holding U+0000 are distinct keys; "a\0b" must not be read as "a". */
Test(patch, apply_keys_with_nul_bytes)
{
    json_t *t = json_object();
    json_object_setn_new(t, "a", 1, json_integer(1));
    json_object_setn_new(t, "a\0b", 3, json_integer(2));
    json_t *p = json_object();
    json_object_setn_new(p, "a\0b", 3, json_null());
    json_object_setn_new(p, "a\0c", 3, json_integer(3));

    json_t *r = tp_merge_patch_apply(t, p);
    cr_assert_not_null(r);
    cr_expect_eq(json_object_size(r), 2);
    cr_expect_eq(json_integer_value(json_object_getn(r, "a", 1)), 1);
    cr_expect_null(json_object_getn(r, "a\0b", 3));
    cr_expect_eq(json_integer_value(json_object_getn(r, "a\0c", 3)), 3);

    json_t *d = tp_merge_patch_diff(t, r);
    cr_assert_not_null(d);
    cr_expect_eq(json_object_size(d), 2);
    cr_expect(json_is_null(json_object_getn(d, "a\0b", 3)));
    cr_expect_eq(json_integer_value(json_object_getn(d, "a\0c", 3)), 3);

    json_decref(d);
    json_decref(r);
    json_decref(p);
    json_decref(t);
    expect_no_leak();
}

/* ------------------------------------------------------------------------ */
/* Sharing                                                                   */
/* ------------------------------------------------------------------------ */

Test(patch, apply_shares_unchanged_subtrees)
{
    json_t *t = parse("{\"keep\": {\"deep\": [1, 2]}, \"edit\": {\"x\": 1, \"y\": {\"z\": 2}},"
                      " \"gone\": 3}");
    json_t *p = parse("{\"edit\": {\"x\": 5}, \"gone\": null, \"list\": [{\"n\": null}]}");
    json_t *r = tp_merge_patch_apply(t, p);
    cr_assert_not_null(r);

    /* Untouched members are the target's own values... */
    cr_expect_eq(json_object_get(r, "keep"), json_object_get(t, "keep"));
    json_t *edit = json_object_get(r, "edit");
    cr_expect_neq(edit, json_object_get(t, "edit"));
    cr_expect_eq(json_object_get(edit, "y"), json_object_get(json_object_get(t, "edit"), "y"));
    /* ...and non-object patch values the patch's own, arrays included. */
    cr_expect_eq(json_object_get(r, "list"), json_object_get(p, "list"));
    cr_expect_eq(json_integer_value(json_object_get(edit, "x")), 5);
    cr_expect_null(json_object_get(r, "gone"));
    /* The target itself was not touched. */
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(t, "edit"), "x")), 1);
    cr_expect_eq(json_integer_value(json_object_get(t, "gone")), 3);

    json_decref(r);
    json_decref(p);
    json_decref(t);
    expect_no_leak();
}

Test(patch, apply_that_changes_nothing_returns_target)
{
    json_t *t = parse("{\"a\": 1, \"b\": {\"c\": \"x\", \"d\": [1]}, \"n\": null}");
    const char *noops[] = {
        "{}", "{\"a\": 1}", "{\"zz\": null}", "{\"b\": {}}", "{\"b\": {\"c\": \"x\", \"q\": null}}",
    };
    for (size_t i = 0; i < sizeof noops / sizeof noops[0]; i++) {
        json_t *p = parse(noops[i]);
        size_t before = t->refcount;
        json_t *r = tp_merge_patch_apply(t, p);
        cr_expect_eq(r, t, "apply(t, %s) did not return t itself", noops[i]);
        cr_expect_eq(t->refcount, before + 1, "apply(t, %s) must return a new reference", noops[i]);
        json_decref(r);
        json_decref(p);
    }
    /* A nested no-op keeps that subtree shared while a sibling changes. */
    json_t *p = parse("{\"a\": 2, \"b\": {\"c\": \"x\"}}");
    json_t *r = tp_merge_patch_apply(t, p);
    cr_expect_neq(r, t);
    cr_expect_eq(json_object_get(r, "b"), json_object_get(t, "b"));
    json_decref(r);
    json_decref(p);
    json_decref(t);
    expect_no_leak();
}

Test(patch, diff_shares_b_values)
{
    json_t *a = parse("{\"s\": \"old\", \"o\": {\"k\": 1, \"m\": {\"q\": 1}}, \"arr\": [1]}");
    json_t *b = parse("{\"s\": \"new\", \"o\": {\"k\": 1, \"m\": [2]}, \"arr\": [1, 2]}");
    json_t *d = tp_merge_patch_diff(a, b);
    cr_assert_not_null(d);
    cr_expect_eq(json_object_get(d, "s"), json_object_get(b, "s"));
    cr_expect_eq(json_object_get(d, "arr"), json_object_get(b, "arr"));
    cr_expect_eq(json_object_get(json_object_get(d, "o"), "m"),
                 json_object_get(json_object_get(b, "o"), "m"));
    cr_expect_null(json_object_get(json_object_get(d, "o"), "k"));
    json_decref(d);

    /* A non-object b is the patch itself. */
    json_t *s = json_string("x");
    d = tp_merge_patch_diff(a, s);
    cr_expect_eq(d, s);
    json_decref(d);
    d = tp_merge_patch_diff(s, b);
    cr_expect_eq(d, b);
    json_decref(d);
    json_decref(s);
    json_decref(a);
    json_decref(b);
    expect_no_leak();
}

/* ------------------------------------------------------------------------ */
/* Diff                                                                      */
/* ------------------------------------------------------------------------ */

static void
expect_diff(const char *a, const char *b, const char *expected)
{
    json_t *ja = a != NULL ? parse(a) : NULL;
    json_t *jb = parse(b), *je = parse(expected);
    json_t *d = tp_merge_patch_diff(ja, jb);
    cr_assert_not_null(d);
    cr_expect(json_equal(d, je), "diff(%s, %s) gave %s, expected %s", a ? a : "NULL", b, show(d),
              expected);
    json_decref(d);
    json_decref(ja);
    json_decref(jb);
    json_decref(je);
}

Test(patch, diff_examples)
{
    expect_diff("{}", "{}", "{}");
    expect_diff("{\"a\": {\"b\": [1, {\"c\": 2}]}}", "{\"a\": {\"b\": [1, {\"c\": 2}]}}", "{}");
    expect_diff("{\"a\": 1, \"b\": 2}", "{\"a\": 1}", "{\"b\": null}");
    expect_diff("{\"a\": 1}", "{\"a\": 1, \"b\": {\"c\": 2}}", "{\"b\": {\"c\": 2}}");
    expect_diff("{\"a\": {\"b\": 1, \"c\": 2}}", "{\"a\": {\"b\": 1, \"c\": 3}}",
                "{\"a\": {\"c\": 3}}");
    expect_diff("{\"a\": {\"b\": 1}}", "{\"a\": [1]}", "{\"a\": [1]}");
    expect_diff("{\"a\": [1]}", "{\"a\": {\"b\": 1}}", "{\"a\": {\"b\": 1}}");
    expect_diff("{\"a\": [1, 2]}", "{\"a\": [1, 3]}", "{\"a\": [1, 3]}");
    expect_diff("{\"a\": 1}", "{\"a\": 1.0}", "{\"a\": 1.0}");
    expect_diff("{\"a\": {\"x\": {\"y\": 1}}}", "{\"a\": {\"x\": {}}}",
                "{\"a\": {\"x\": {\"y\": null}}}");
    expect_diff("{\"a\": 1}", "[1]", "[1]");
    expect_diff("[1]", "{\"a\": 1}", "{\"a\": 1}");
    expect_diff("5", "5", "5");
    expect_diff("{\"a\": 1}", "null", "null");
    expect_diff(NULL, "{\"a\": 1}", "{\"a\": 1}");
    expect_no_leak();
}

Test(patch, diff_null_b_pointer_is_null)
{
    json_t *a = parse("{}");
    cr_expect_null(tp_merge_patch_diff(a, NULL));
    json_decref(a);
    expect_no_leak();
}

/* ------------------------------------------------------------------------ */
/* Null members                                                              */
/* ------------------------------------------------------------------------ */

Test(patch, has_null_member)
{
    static const struct {
        const char *json;
        int want;
    } cases[] = {
        {"null", 0},
        {"1", 0},
        {"\"s\"", 0},
        {"{}", 0},
        {"[]", 0},
        {"[null]", 0},
        {"{\"a\": [1, null]}", 0},
        {"{\"a\": {\"b\": {\"c\": false, \"d\": 0, \"e\": \"\"}}}", 0},
        {"{\"a\": null}", 1},
        {"{\"x\": 1, \"a\": null}", 1},
        {"{\"a\": {\"b\": {\"c\": null}}}", 1},
        {"[{\"a\": null}]", 1},
        {"{\"a\": [[1, {\"b\": null}]]}", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *v = parse(cases[i].json);
        cr_expect_eq(tp__json_has_null_member(v), cases[i].want, "has_null_member(%s)",
                     cases[i].json);
        json_decref(v);
    }
    cr_expect_eq(tp__json_has_null_member(NULL), 0);
    expect_no_leak();
}

Test(patch, strip_nulls)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"null", "null"},
        {"7", "7"},
        {"[null, 1]", "[null, 1]"},
        {"{\"a\": null}", "{}"},
        {"{\"a\": null, \"b\": 1, \"c\": null}", "{\"b\": 1}"},
        {"{\"a\": {\"b\": null, \"c\": {\"d\": null}}}", "{\"a\": {\"c\": {}}}"},
        {"[1, {\"a\": null, \"b\": 2}, null, {\"c\": 3}]", "[1, {\"b\": 2}, null, {\"c\": 3}]"},
        {"{\"x\": [[{\"a\": null}], 2], \"y\": false}", "{\"x\": [[{}], 2], \"y\": false}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *v = parse(cases[i].in), *want = parse(cases[i].out);
        json_t *vc = copy(v);
        json_t *s = tp__json_strip_nulls(v);
        cr_assert_not_null(s);
        cr_expect(json_equal(s, want), "strip_nulls(%s) gave %s", cases[i].in, show(s));
        cr_expect(json_equal(v, vc), "strip_nulls(%s) changed its input", cases[i].in);
        cr_expect_not(tp__json_has_null_member(s));
        json_decref(s);
        json_decref(v);
        json_decref(vc);
        json_decref(want);
    }
    cr_expect_null(tp__json_strip_nulls(NULL));
    expect_no_leak();
}

Test(patch, strip_nulls_shares)
{
    json_t *v = parse("{\"a\": {\"b\": 1}, \"c\": [1, {\"d\": null}, [2]], \"e\": null}");
    json_t *s = tp__json_strip_nulls(v);
    cr_assert_not_null(s);
    cr_expect_neq(s, v);
    cr_expect_eq(json_object_get(s, "a"), json_object_get(v, "a"));
    json_t *sc = json_object_get(s, "c"), *vc = json_object_get(v, "c");
    cr_expect_neq(sc, vc);
    cr_expect_eq(json_array_get(sc, 0), json_array_get(vc, 0));
    cr_expect_eq(json_array_get(sc, 2), json_array_get(vc, 2));
    json_decref(s);

    /* Nothing to strip: v itself, as a new reference. */
    json_t *clean = json_object_get(v, "a");
    size_t before = clean->refcount;
    s = tp__json_strip_nulls(clean);
    cr_expect_eq(s, clean);
    cr_expect_eq(clean->refcount, before + 1);
    json_decref(s);
    json_decref(v);
    expect_no_leak();
}

/* ------------------------------------------------------------------------ */
/* Properties over random values                                             */
/* ------------------------------------------------------------------------ */

typedef struct {
    uint64_t state;
} rng;

/* splitmix64: tiny, and good enough to spread test inputs. */
static uint64_t
rng_next(rng *r)
{
    uint64_t z = (r->state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static unsigned
below(rng *r, unsigned n)
{
    return (unsigned)(rng_next(r) % n);
}

/* A small key pool, so that random objects overlap. */
static const char *const KEYS[] = {"a", "b", "c", "d", "e", "f", "g", "\xc3\xa9"};
#define NKEYS (sizeof KEYS / sizeof KEYS[0])

static json_t *
gen_scalar(rng *r, int allow_null)
{
    static const char *const strings[] = {"", "x", "y", "a longer string", "\xe2\x98\x83"};
    switch (below(r, allow_null ? 7 : 6)) {
    case 0: return json_string(strings[below(r, 5)]);
    case 1: return json_integer((json_int_t)below(r, 7) - 3);
    case 2: return json_real((double)below(r, 9) / 4.0 - 1.0);
    case 3: return json_true();
    case 4: return json_false();
    case 5: return json_integer((json_int_t)(rng_next(r) >> 12));
    default: return json_null();
    }
}

/*
 * gen makes a random value of nesting depth at most depth. null_members:
 * whether object members may be null (a and patches: yes; b: no). Arrays may
 * always hold null elements.
 */
static json_t *gen(rng *r, int depth, int null_members);

static json_t *
gen_object(rng *r, int depth, int null_members)
{
    json_t *o = json_object();
    unsigned n = below(r, 5);
    for (unsigned i = 0; i < n; i++) {
        json_t *v;
        if (null_members && below(r, 5) == 0)
            v = json_null();
        else
            v = gen(r, depth - 1, null_members);
        json_object_set_new(o, KEYS[below(r, NKEYS)], v);
    }
    return o;
}

static json_t *
gen(rng *r, int depth, int null_members)
{
    unsigned k = below(r, 10);
    if (depth > 0 && k < 5)
        return gen_object(r, depth, null_members);
    if (depth > 0 && k < 7) {
        json_t *a = json_array();
        unsigned n = below(r, 4);
        for (unsigned i = 0; i < n; i++)
            json_array_append_new(a,
                                  below(r, 4) == 0 ? json_null() : gen(r, depth - 1, null_members));
        return a;
    }
    return gen_scalar(r, 0);
}

/*
 * mutate makes b from a: mostly a with some members deleted, replaced,
 * added or mutated in turn, never with a null member on an object path.
 * Kept members are shared by pointer half the time and deep copies the other
 * half, so diff meets both identical pointers and equal values.
 */
static json_t *
mutate(rng *r, const json_t *a, int depth)
{
    if (!json_is_object(a) || below(r, 10) == 0)
        return gen(r, depth, 0);
    json_t *b = json_object();
    json_t *ja = (json_t *)a;
    for (void *it = json_object_iter(ja); it != NULL; it = json_object_iter_next(ja, it)) {
        const char *key = json_object_iter_key(it);
        json_t *v = json_object_iter_value(it);
        unsigned c = below(r, 10);
        if (c == 0 || (json_is_null(v) && c < 6))
            continue; /* deleted */
        json_t *nv;
        if (c == 1 || json_is_null(v))
            nv = gen(r, depth > 0 ? depth - 1 : 0, 0);
        else if (json_is_object(v))
            nv = mutate(r, v, depth > 0 ? depth - 1 : 0);
        else if (c < 6)
            nv = json_incref(v);
        else
            nv = json_deep_copy(v);
        json_object_set_new(b, key, nv);
    }
    for (unsigned n = below(r, 3); n > 0; n--)
        json_object_set_new(b, KEYS[below(r, NKEYS)], gen(r, depth > 0 ? depth - 1 : 0, 0));
    return b;
}

/* a may be an object or not; objects most of the time, as in the hub. */
static json_t *
gen_target(rng *r)
{
    return below(r, 8) == 0 ? gen(r, 4, 1) : gen_object(r, 4, 1);
}

/*
 * check_minimal checks, for a and b both objects, that the patch p has a
 * member only where applying it does something: null only for members of a
 * missing from b, otherwise never for a member a already holds equal, and a
 * nested non-empty patch only when both sides are objects (checked in turn).
 * Returns 0 and describes the first fault in why.
 */
static int
check_minimal(const json_t *a, const json_t *b, const json_t *p, char *why, size_t cap)
{
    if (!json_is_object(p)) {
        snprintf(why, cap, "patch %s between two objects is not an object", show(p));
        return 0;
    }
    json_t *jp = (json_t *)p;
    for (void *it = json_object_iter(jp); it != NULL; it = json_object_iter_next(jp, it)) {
        const char *k = json_object_iter_key(it);
        json_t *pv = json_object_iter_value(it);
        json_t *av = json_object_get(a, k), *bv = json_object_get(b, k);
        if (json_is_null(pv)) {
            if (av == NULL || bv != NULL) {
                snprintf(why, cap, "null for \"%s\", which a %s and b %s", k, av ? "has" : "lacks",
                         bv ? "has" : "lacks");
                return 0;
            }
            continue;
        }
        if (bv == NULL) {
            snprintf(why, cap, "member \"%s\" is not in b", k);
            return 0;
        }
        if (av != NULL && json_equal(av, bv)) {
            snprintf(why, cap, "member \"%s\" is a no-op: a and b both hold %s", k, show(av));
            return 0;
        }
        if (json_is_object(av) && json_is_object(bv)) {
            if (json_object_size(pv) == 0) {
                snprintf(why, cap, "member \"%s\" is an empty patch", k);
                return 0;
            }
            if (!check_minimal(av, bv, pv, why, cap))
                return 0;
        } else if (!json_equal(pv, bv)) {
            snprintf(why, cap, "member \"%s\" is %s, not b's %s", k, show(pv), show(bv));
            return 0;
        }
    }
    return 1;
}

/* null_on_object_path: a null member in v or in an object reached from v
 * through object members only (arrays are opaque to merge patch). */
static int
null_on_object_path(const json_t *v)
{
    json_t *j = (json_t *)v;
    if (!json_is_object(j))
        return 0;
    for (void *it = json_object_iter(j); it != NULL; it = json_object_iter_next(j, it)) {
        json_t *m = json_object_iter_value(it);
        if (json_is_null(m) || null_on_object_path(m))
            return 1;
    }
    return 0;
}

static uint64_t
env_u64(const char *name, uint64_t fallback)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return fallback;
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    cr_assert(*end == '\0', "%s=%s is not a number", name, s);
    return (uint64_t)v;
}

Test(patch, properties)
{
    uint64_t seed = env_u64("TP_SEED", 0x7472616E73706F72u);
    uint64_t iters = env_u64("TP_ITERS", 5000);
    /* Printed every time (Criterion shows cr_log_info only with --verbose),
     * and repeated in every failure message. */
    fprintf(stderr, "patch properties: TP_SEED=0x%016" PRIx64 " TP_ITERS=%" PRIu64 "\n", seed,
            iters);
    rng r = {seed};
    char why[4096];
    unsigned object_pairs = 0, nonempty_diffs = 0;

    for (uint64_t i = 0; i < iters; i++) {
        long live0 = tpt_alloc.live;
        json_t *a = gen_target(&r);
        json_t *b = below(&r, 4) == 0 ? gen(&r, 4, 0) : mutate(&r, a, 4);
        json_t *q = below(&r, 8) == 0 ? gen(&r, 4, 1) : gen_object(&r, 4, 1);
        cr_assert(a != NULL && b != NULL && q != NULL);
        json_t *a0 = copy(a), *b0 = copy(b), *q0 = copy(q);
        size_t refs = refsum(a) + refsum(b) + refsum(q);
#define CTX "seed 0x%016" PRIx64 " pair %" PRIu64 ": a=%s b=%s"
#define CTXARGS seed, i, show(a0), show(b0)

        /* apply(a, diff(a, b)) == b */
        json_t *p = tp_merge_patch_diff(a, b);
        cr_assert_not_null(p, CTX, CTXARGS);
        json_t *back = tp_merge_patch_apply(a, p);
        cr_assert_not_null(back, CTX, CTXARGS);
        cr_assert(json_equal(back, b), CTX " diff=%s applied gave %s", CTXARGS, show(p),
                  show(back));

        /* diff is minimal. */
        if (json_is_object(a) && json_is_object(b)) {
            object_pairs++;
            nonempty_diffs += json_object_size(p) != 0;
            cr_assert(check_minimal(a, b, p, why, sizeof why), CTX " diff=%s: %s", CTXARGS, show(p),
                      why);
        } else {
            cr_assert_eq(p, b, CTX " diff must be b itself", CTXARGS);
        }
        json_decref(back);
        json_decref(p);

        /* diff(a, a) == {} for an object, a itself otherwise; both no-ops. */
        p = tp_merge_patch_diff(a, a);
        cr_assert_not_null(p);
        if (json_is_object(a))
            cr_assert(json_is_object(p) && json_object_size(p) == 0, CTX " diff(a, a) gave %s",
                      CTXARGS, show(p));
        else
            cr_assert_eq(p, a, CTX " diff(a, a) must be a", CTXARGS);
        back = tp_merge_patch_apply(a, p);
        cr_assert(json_equal(back, a), CTX " apply(a, diff(a, a)) gave %s", CTXARGS, show(back));
        json_decref(back);
        json_decref(p);

        /* Idempotence: apply(apply(a, q), q) == apply(a, q). */
        json_t *once = tp_merge_patch_apply(a, q);
        cr_assert_not_null(once);
        json_t *twice = tp_merge_patch_apply(once, q);
        cr_assert_not_null(twice);
        cr_assert(json_equal(once, twice), CTX " q=%s: once %s, twice %s", CTXARGS, show(q0),
                  show(once), show(twice));
        /* A merge patch never writes a null member on an object path: when
         * a has none there, neither has the result. */
        if (!null_on_object_path(a))
            cr_assert_not(null_on_object_path(once), CTX " q=%s gave %s", CTXARGS, show(q0),
                          show(once));
        json_decref(twice);
        json_decref(once);

        /* Nothing was changed and no reference was kept. */
        cr_assert(json_equal(a, a0) && json_equal(b, b0) && json_equal(q, q0),
                  CTX " an input changed", CTXARGS);
        cr_assert_eq(refsum(a) + refsum(b) + refsum(q), refs, CTX " references leaked", CTXARGS);
#undef CTX
#undef CTXARGS
        json_decref(a);
        json_decref(b);
        json_decref(q);
        json_decref(a0);
        json_decref(b0);
        json_decref(q0);
        cr_assert_eq(tpt_alloc.live, live0,
                     "seed 0x%016" PRIx64 " pair %" PRIu64 ": %ld blocks leaked", seed, i,
                     tpt_alloc.live - live0);
    }
    /* The generator must exercise the interesting paths, or this proves
     * little. */
    if (iters >= 1000) {
        cr_expect_gt(object_pairs, iters / 2);
        cr_expect_gt(nonempty_diffs, object_pairs / 2);
    }
    expect_no_leak();
}

/* ------------------------------------------------------------------------ */
/* Allocation failure                                                        */
/* ------------------------------------------------------------------------ */

static const char *const CHAOS_TARGET =
    "{\"title\": \"Goodbye!\", \"author\": {\"givenName\": \"John\", \"familyName\": \"Doe\","
    " \"address\": {\"city\": \"Paris\", \"zip\": \"75001\", \"lines\": [\"1 rue\", null]}},"
    " \"tags\": [\"example\", \"sample\"], \"content\": \"unchanged\", \"n\": 1, \"m\": 2.5,"
    " \"deep\": {\"a\": {\"b\": {\"c\": {\"d\": 1}}}}}";
static const char *const CHAOS_PATCH =
    "{\"title\": \"Hello!\", \"phoneNumber\": \"+01-123-456-7890\","
    " \"author\": {\"familyName\": null, \"address\": {\"zip\": \"75002\", \"floor\": 3}},"
    " \"tags\": [\"example\"], \"n\": null, \"new\": {\"x\": {\"y\": null, \"z\": [1]}, \"w\": 1},"
    " \"deep\": {\"a\": {\"b\": {\"c\": {\"e\": 2}}}}}";

/*
 * chaos runs call with allocation n failing, for n = 1, 2, ... until it
 * succeeds, checking each time that it returned NULL, changed nothing and
 * kept no reference; then that the successful result is right. It does so
 * twice: with allocation n and all later ones failing (tpt_fail_after), then
 * with allocation n alone failing (the suite's allocator), where a result
 * returned although an allocation failed is a bug and the count of live
 * blocks shows any leak. Returns how many runs failed the first time.
 */
static long
chaos(json_t *(*call)(json_t *x, json_t *y), json_t *x, json_t *y, const json_t *want)
{
    json_t *x0 = copy(x), *y0 = copy(y);
    size_t refs = refsum(x) + refsum(y);
    long n, failed = 0;

    for (n = 1; n < 100000; n++) {
        tpt_fail_after(n);
        json_t *r = call(x, y);
        tpt_fail_disarm();
        cr_assert(same(x, x0) && same(y, y0), "allocation %ld failing changed an input", n);
        if (r != NULL) {
            cr_expect(json_equal(r, want), "gave %s, expected %s", show(r), show(want));
            json_decref(r);
            cr_expect_eq(refsum(x) + refsum(y), refs, "references leaked on success");
            break;
        }
        cr_assert_eq(refsum(x) + refsum(y), refs, "allocation %ld failing leaked references", n);
    }
    cr_assert_lt(n, 100000, "never succeeded");
    failed = n - 1;

    long live0 = tpt_alloc.live;
    for (n = 1; n < 100000; n++) {
        tpt_fail_only(n);
        json_t *r = call(x, y);
        tpt_fail_disarm();
        cr_assert(same(x, x0) && same(y, y0), "allocation %ld alone failing changed an input", n);
        if (tpt_alloc.tripped) {
            cr_assert_null(r, "allocation %ld failed, yet the call returned %s", n, show(r));
            cr_assert_eq(refsum(x) + refsum(y), refs,
                         "allocation %ld alone failing leaked references", n);
            cr_assert_eq(tpt_alloc.live, live0, "allocation %ld alone failing leaked %ld blocks", n,
                         tpt_alloc.live - live0);
            continue;
        }
        cr_assert_not_null(r, "NULL although no allocation failed");
        cr_expect(json_equal(r, want), "gave %s, expected %s", show(r), show(want));
        json_decref(r);
        cr_expect_eq(tpt_alloc.live, live0, "%ld blocks leaked on success", tpt_alloc.live - live0);
        break;
    }
    cr_expect_eq(n - 1, failed, "the two failing allocators saw %ld and %ld allocations", failed,
                 n - 1);

    json_decref(x0);
    json_decref(y0);
    return failed;
}

static json_t *
call_apply(json_t *x, json_t *y)
{
    return tp_merge_patch_apply(x, y);
}

static json_t *
call_diff(json_t *x, json_t *y)
{
    return tp_merge_patch_diff(x, y);
}

static json_t *
call_strip(json_t *x, json_t *y)
{
    (void)y;
    return tp__json_strip_nulls(x);
}

Test(patch, chaos_apply)
{
    json_t *t = parse(CHAOS_TARGET), *p = parse(CHAOS_PATCH);
    json_t *want = json_deep_copy(t);
    /* The expected result, built by hand. */
    json_object_set_new(want, "title", json_string("Hello!"));
    json_object_set_new(want, "phoneNumber", json_string("+01-123-456-7890"));
    json_t *author = json_object_get(want, "author");
    json_object_del(author, "familyName");
    json_t *address = json_object_get(author, "address");
    json_object_set_new(address, "zip", json_string("75002"));
    json_object_set_new(address, "floor", json_integer(3));
    json_object_set_new(want, "tags", parse("[\"example\"]"));
    json_object_del(want, "n");
    json_object_set_new(want, "new", parse("{\"x\": {\"z\": [1]}, \"w\": 1}"));
    json_object_set_new(json_object_get(json_object_get(json_object_get(want, "deep"), "a"), "b"),
                        "c", parse("{\"d\": 1, \"e\": 2}"));

    long failed = chaos(call_apply, t, p, want);
    cr_expect_gt(failed, 10, "only %ld allocations: is the failing allocator in force?", failed);
    /* Also with an absent target (every object new). */
    json_t *want2 = parse("{\"title\": \"Hello!\", \"phoneNumber\": \"+01-123-456-7890\","
                          " \"author\": {\"address\": {\"zip\": \"75002\", \"floor\": 3}},"
                          " \"tags\": [\"example\"], \"new\": {\"x\": {\"z\": [1]}, \"w\": 1},"
                          " \"deep\": {\"a\": {\"b\": {\"c\": {\"e\": 2}}}}}");
    failed = chaos(call_apply, NULL, p, want2);
    cr_expect_gt(failed, 10);
    json_decref(want2);
    json_decref(want);
    json_decref(t);
    json_decref(p);
    expect_no_leak();
}

Test(patch, chaos_diff)
{
    json_t *t = parse(CHAOS_TARGET), *p = parse(CHAOS_PATCH);
    json_t *b = tp_merge_patch_apply(t, p);
    cr_assert_not_null(b);
    json_t *want = parse(
        "{\"title\": \"Hello!\", \"phoneNumber\": \"+01-123-456-7890\","
        " \"author\": {\"familyName\": null, \"address\": {\"zip\": \"75002\", \"floor\": 3}},"
        " \"tags\": [\"example\"], \"n\": null, \"new\": {\"x\": {\"z\": [1]}, \"w\": 1},"
        " \"deep\": {\"a\": {\"b\": {\"c\": {\"e\": 2}}}}}");
    long failed = chaos(call_diff, t, b, want);
    cr_expect_gt(failed, 5, "only %ld allocations", failed);
    json_decref(want);
    json_decref(b);
    json_decref(t);
    json_decref(p);
    expect_no_leak();
}

Test(patch, chaos_strip_nulls)
{
    /* A changed member comes first, so that copying its parent fails with
     * a stripped child in hand. */
    json_t *v = parse("{\"b\": {\"c\": null, \"d\": [1, {\"e\": null}, 2]}, \"a\": null,"
                      " \"f\": [[{\"g\": null, \"h\": 1}]], \"i\": 1}");
    json_t *want = parse("{\"b\": {\"d\": [1, {}, 2]}, \"f\": [[{\"h\": 1}]], \"i\": 1}");
    long failed = chaos(call_strip, v, NULL, want);
    cr_expect_gt(failed, 5, "only %ld allocations", failed);
    json_decref(want);
    json_decref(v);
    expect_no_leak();
}
