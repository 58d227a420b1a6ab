/*
 * RFC 7396 JSON merge patch: apply and diff, and the null-member helpers the
 * rest of the core uses to keep stored values free of null members
 * (PROTOCOL.md, "Values").
 *
 * Nothing here deep-copies. Every function builds new objects (and arrays,
 * for tp__json_strip_nulls) only along the paths that change, and shares
 * everything else with its inputs by reference; see patch.h and
 * docs/internals/patch.md for why that is safe.
 *
 * Objects are walked with the iterator and the key-length calls
 * (json_object_iter_key_len, json_object_getn, json_object_setn_new_nocheck)
 * so that keys holding U+0000 survive, and keys are never re-validated as
 * UTF-8: they come from objects jansson has already checked.
 *
 * Allocation failure: every function returns NULL and drops every reference
 * it made. json_copy() is not used for the shallow copy because it ignores
 * failures of json_object_set() and would silently return a partial object.
 */
#include "core/patch.h"

#include "transports.h"

/* The public API takes const values; jansson's reference count is the only
 * thing ever changed through this cast, never the value itself. */
static json_t *
share(const json_t *v)
{
    return json_incref((json_t *)v);
}

/* tp__json_shallow_copy returns a new object holding new references to every
 * member of obj, in obj's order, or NULL. */
json_t *
tp__json_shallow_copy(const json_t *obj)
{
    json_t *copy = json_object();
    if (copy == NULL)
        return NULL;
    json_t *o = (json_t *)obj;
    for (void *it = json_object_iter(o); it != NULL; it = json_object_iter_next(o, it)) {
        if (json_object_setn_new_nocheck(copy, json_object_iter_key(it),
                                         json_object_iter_key_len(it),
                                         share(json_object_iter_value(it))) != 0) {
            json_decref(copy);
            return NULL;
        }
    }
    return copy;
}

/* is_scalar: strings, numbers and booleans, whose equality is cheap. */
static int
is_scalar(const json_t *v)
{
    return json_is_string(v) || json_is_number(v) || json_is_boolean(v);
}

/* ------------------------------------------------------------------------ */
/* Apply                                                                     */
/* ------------------------------------------------------------------------ */

/*
 * apply is RFC 7396 section 2's MergePatch(Target, Patch). target may be NULL
 * (absent). The result is a new reference; when the patch changes nothing in
 * an object target, it is target itself, so callers can tell "unchanged" by
 * comparing pointers and unchanged subtrees stay shared.
 */
static json_t *
apply(const json_t *target, const json_t *patch)
{
    /* "If Patch is not an Object, return Patch": arrays are replaced whole,
     * nulls inside them included. */
    if (!json_is_object(patch))
        return share(patch);

    /* "If Target is not an Object, Target = {}". */
    const json_t *base = json_is_object(target) ? target : NULL;
    /* result stays NULL until the first member that changes something, then
     * starts as a shallow copy of base (or {}). */
    json_t *result = NULL;
    json_t *p = (json_t *)patch;

    for (void *it = json_object_iter(p); it != NULL; it = json_object_iter_next(p, it)) {
        const char *key = json_object_iter_key(it);
        size_t len = json_object_iter_key_len(it);
        json_t *value = json_object_iter_value(it);
        json_t *old = base != NULL ? json_object_getn(base, key, len) : NULL;

        if (json_is_null(value)) {
            /* A null member deletes; deleting an absent member is a no-op. */
            if (old == NULL)
                continue;
            if (result == NULL && (result = tp__json_shallow_copy(base)) == NULL)
                return NULL;
            json_object_deln(result, key, len);
            continue;
        }

        /* A scalar replaced by an equal scalar changes nothing. */
        if (old != NULL && is_scalar(value) && json_equal(old, value))
            continue;

        /* Otherwise the member becomes MergePatch(old, value), which also
         * strips null members from a nested patch object when old is absent
         * or not an object. */
        json_t *merged = apply(old, value);
        if (merged == NULL)
            goto fail;
        if (merged == old) {
            /* The nested patch changed nothing: keep sharing old. */
            json_decref(merged);
            continue;
        }
        if (result == NULL) {
            result = base != NULL ? tp__json_shallow_copy(base) : json_object();
            if (result == NULL) {
                json_decref(merged);
                return NULL;
            }
        }
        /* setn_new drops merged itself when it fails. */
        if (json_object_setn_new_nocheck(result, key, len, merged) != 0)
            goto fail;
    }

    if (result == NULL)
        return base != NULL ? share(base) : json_object();
    return result;

fail:
    json_decref(result);
    return NULL;
}

TP_API json_t *
tp_merge_patch_apply(const json_t *target, const json_t *patch)
{
    if (patch == NULL)
        return NULL;
    return apply(target, patch);
}

/* ------------------------------------------------------------------------ */
/* Diff                                                                      */
/* ------------------------------------------------------------------------ */

/* diff_objects returns the smallest merge patch turning object a into object
 * b (both objects), or NULL. */
static json_t *
diff_objects(const json_t *a, const json_t *b)
{
    json_t *patch = json_object();
    if (patch == NULL)
        return NULL;
    json_t *ja = (json_t *)a, *jb = (json_t *)b;

    /* Members of a that b lacks are deleted with null. */
    for (void *it = json_object_iter(ja); it != NULL; it = json_object_iter_next(ja, it)) {
        const char *key = json_object_iter_key(it);
        size_t len = json_object_iter_key_len(it);
        if (json_object_getn(b, key, len) != NULL)
            continue;
        if (json_object_setn_new_nocheck(patch, key, len, json_null()) != 0)
            goto fail;
    }

    /* Members of b that a lacks or holds differently. */
    for (void *it = json_object_iter(jb); it != NULL; it = json_object_iter_next(jb, it)) {
        const char *key = json_object_iter_key(it);
        size_t len = json_object_iter_key_len(it);
        json_t *bv = json_object_iter_value(it);
        json_t *av = json_object_getn(a, key, len);
        json_t *member;

        /* Shared subtrees (the common case between two revisions of a
         * stored value) are skipped without being walked. */
        if (av == bv)
            continue;
        if (json_is_object(av) && json_is_object(bv)) {
            /* Recurse instead of calling json_equal first, so that each
             * member is compared once: an empty sub-patch means equal. */
            member = diff_objects(av, bv);
            if (member == NULL)
                goto fail;
            if (json_object_size(member) == 0) {
                json_decref(member);
                continue;
            }
        } else {
            if (av != NULL && json_equal(av, bv))
                continue;
            member = share(bv);
        }
        if (json_object_setn_new_nocheck(patch, key, len, member) != 0)
            goto fail;
    }
    return patch;

fail:
    json_decref(patch);
    return NULL;
}

TP_API json_t *
tp_merge_patch_diff(const json_t *a, const json_t *b)
{
    if (b == NULL)
        return NULL;
    /* A patch that is not an object replaces the target whole, and so does
     * an object patch applied to a non-object target (RFC 7396 section 2):
     * either way the patch is b itself. */
    if (!json_is_object(a) || !json_is_object(b))
        return share(b);
    return diff_objects(a, b);
}

/* ------------------------------------------------------------------------ */
/* Null members                                                              */
/* ------------------------------------------------------------------------ */

int
tp__json_has_null_member(const json_t *v)
{
    json_t *j = (json_t *)v;
    if (json_is_object(j)) {
        for (void *it = json_object_iter(j); it != NULL; it = json_object_iter_next(j, it)) {
            json_t *m = json_object_iter_value(it);
            if (json_is_null(m) || tp__json_has_null_member(m))
                return 1;
        }
    } else if (json_is_array(j)) {
        size_t n = json_array_size(j);
        for (size_t i = 0; i < n; i++) {
            if (tp__json_has_null_member(json_array_get(j, i)))
                return 1;
        }
    }
    return 0;
}

/* strip returns v without null object members: v itself (a new reference)
 * when it has none, else a new container sharing every unchanged child.
 * Like apply, it copies a container only once a child turns out to change,
 * so the whole walk is linear. */
static json_t *
strip(json_t *v)
{
    json_t *result = NULL;

    if (json_is_object(v)) {
        for (void *it = json_object_iter(v); it != NULL; it = json_object_iter_next(v, it)) {
            const char *key = json_object_iter_key(it);
            size_t len = json_object_iter_key_len(it);
            json_t *m = json_object_iter_value(it);
            if (json_is_null(m)) {
                if (result == NULL && (result = tp__json_shallow_copy(v)) == NULL)
                    return NULL;
                json_object_deln(result, key, len);
                continue;
            }
            json_t *s = strip(m);
            if (s == NULL)
                goto fail;
            if (s == m) {
                json_decref(s);
                continue;
            }
            if (result == NULL && (result = tp__json_shallow_copy(v)) == NULL) {
                json_decref(s);
                return NULL;
            }
            if (json_object_setn_new_nocheck(result, key, len, s) != 0)
                goto fail;
        }
    } else if (json_is_array(v)) {
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(v, i);
            /* Null elements stay: only object members are stripped. */
            json_t *s = strip(e);
            if (s == NULL)
                goto fail;
            if (result == NULL) {
                if (s == e) {
                    json_decref(s);
                    continue;
                }
                /* The first element that changes: copy those before it;
                 * from here on every element is appended. */
                result = json_array();
                if (result == NULL) {
                    json_decref(s);
                    return NULL;
                }
                for (size_t k = 0; k < i; k++) {
                    if (json_array_append(result, json_array_get(v, k)) != 0) {
                        json_decref(s);
                        goto fail;
                    }
                }
            }
            /* append_new drops s itself when it fails. */
            if (json_array_append_new(result, s) != 0)
                goto fail;
        }
    }
    if (result == NULL)
        return json_incref(v);
    return result;

fail:
    json_decref(result);
    return NULL;
}

json_t *
tp__json_strip_nulls(json_t *v)
{
    if (v == NULL)
        return NULL;
    return strip(v);
}
