/*
 * fuzz_patch: RFC 7396 merge patch apply and diff (src/core/patch.c).
 *
 * Input: two JSON texts a and b separated by a line "%%" (TPF_SEP). A text
 * that is not JSON stands for an absent value (NULL), which apply accepts as
 * a target. Checked:
 *   - apply(target, patch) never crashes, for every pair of a, b and NULL;
 *   - neither call changes its inputs (the result shares their nodes);
 *   - apply is idempotent: apply(apply(t, p), p) == apply(t, p);
 *   - when b has no null object member, apply(a, diff(a, b)) == b;
 *   - diff(a, a) is {} for an object a, and a diff is an object whenever
 *     both sides are objects.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "transports.h"

static json_t *
parse(const uint8_t *data, size_t n)
{
    /* JSON_ALLOW_NUL: the patch functions take any jansson value. */
    return json_loadb((const char *)data, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

static json_t *
copy(const json_t *v)
{
    json_t *c = v ? json_deep_copy(v) : NULL;
    TPF_CHECK(v == NULL || c != NULL, "out of memory");
    return c;
}

static int
same(const json_t *a, const json_t *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && json_equal(a, b));
}

static void
check_unchanged(const json_t *v, const json_t *before, const char *what)
{
    if (!same(v, before)) {
        char *x = before ? tpf_dump(before) : NULL, *y = v ? tpf_dump(v) : NULL;
        tpf_fail("%s changed an input: %s became %s", what, x ? x : "NULL", y ? y : "NULL");
    }
}

/* apply(t, p) with the checks that hold for every pair. */
static void
check_apply(const json_t *t, const json_t *p)
{
    json_t *t0 = copy(t), *p0 = copy(p);
    json_t *r = tp_merge_patch_apply(t, p);
    check_unchanged(t, t0, "apply (target)");
    check_unchanged(p, p0, "apply (patch)");
    if (p == NULL) {
        TPF_CHECK(r == NULL, "apply with a NULL patch returned a value");
    } else {
        TPF_CHECK(r != NULL, "apply returned NULL (out of memory?)");
        /* A non-object patch is the result. */
        if (!json_is_object(p))
            TPF_CHECK(json_equal(r, p), "apply of a non-object patch is not the patch");
        json_t *r0 = copy(r);
        json_t *rr = tp_merge_patch_apply(r, p);
        check_unchanged(r, r0, "apply (target, second time)");
        if (!same(rr, r)) {
            char *x = tpf_dump(r), *y = tpf_dump(rr), *z = tpf_dump(p);
            tpf_fail("apply is not idempotent: patch %s gives %s, then %s", z, x, y);
        }
        json_decref(rr);
        json_decref(r0);
    }
    json_decref(r);
    json_decref(t0);
    json_decref(p0);
}

static void
check_diff(const json_t *a, const json_t *b)
{
    json_t *a0 = copy(a), *b0 = copy(b);
    json_t *d = tp_merge_patch_diff(a, b);
    check_unchanged(a, a0, "diff (a)");
    check_unchanged(b, b0, "diff (b)");
    TPF_CHECK(d != NULL, "diff returned NULL (out of memory?)");
    if (json_is_object(a) && json_is_object(b))
        TPF_CHECK(json_is_object(d), "the diff of two objects is not an object");
    if (json_is_object(a) && json_equal(a, b))
        TPF_CHECK(json_is_object(d) && json_object_size(d) == 0,
                  "the diff of equal objects is not {}");
    json_t *d0 = copy(d);
    json_t *r = tp_merge_patch_apply(a, d);
    check_unchanged(d, d0, "apply (the diff)");
    check_unchanged(a, a0, "apply (a, through the diff)");
    /* PROTOCOL.md: no patch can produce a null member, so the round trip is
     * promised for values without them, which is what the hub stores. */
    if (!tpf_has_null_member(b) && !same(r, b)) {
        char *x = tpf_dump(a), *y = tpf_dump(b), *z = tpf_dump(d), *w = r ? tpf_dump(r) : NULL;
        tpf_fail("apply(a, diff(a, b)) != b: a %s, b %s, diff %s, result %s", x, y, z,
                 w ? w : "NULL");
    }
    json_decref(r);
    json_decref(d);
    json_decref(d0);
    json_decref(a0);
    json_decref(b0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest;
    size_t na = tpf_split(data, size, &rest);
    json_t *a = parse(data, na);
    json_t *b = rest ? parse(rest, size - (size_t)(rest - data)) : NULL;

    check_apply(a, b);
    check_apply(b, a);
    check_apply(NULL, a);
    check_apply(NULL, b);
    check_apply(a, a);
    if (a != NULL && b != NULL) {
        check_diff(a, b);
        check_diff(b, a);
        check_diff(a, a);
        /* The diff itself as a target and as a patch: any pair must do. */
        json_t *d = tp_merge_patch_diff(a, b);
        check_apply(d, a);
        check_apply(b, d);
        json_decref(d);
    }
    json_decref(a);
    json_decref(b);
    return 0;
}
