/*
 * RFC 7396 JSON merge patch: apply and diff. The public entry points are
 * tp_merge_patch_apply() and tp_merge_patch_diff() in transports.h.
 *
 * Values are shared, not copied: a result may hold references to unchanged
 * members of its inputs. The hub treats every stored json_t below a model's
 * root object as immutable, so sharing is safe there; callers that want to
 * change a result in place copy it first (json_deep_copy).
 *
 * What that means for each function:
 * - tp_merge_patch_apply builds new objects only along the paths the patch
 *   changes; every other member of the result is the target's own json_t,
 *   and a non-object patch member is the patch's own json_t. A patch that
 *   changes nothing in an object target returns target itself (a new
 *   reference), so `result == target` means "unchanged". A NULL target is
 *   absent (RFC 7396 treats it like any non-object); a NULL patch gives NULL.
 * - tp_merge_patch_diff returns b itself when a or b is not an object, and
 *   otherwise a new object whose non-null members are b's own json_t (or
 *   nested diffs). Members that are the same pointer in a and b are skipped
 *   without being compared, so diffing two revisions that share most of
 *   their tree costs little more than the changed part.
 * Both return NULL only on allocation failure (or a NULL patch / b), and
 * then hold no reference to anything.
 */
#ifndef TP_CORE_PATCH_H
#define TP_CORE_PATCH_H

#include <jansson.h>

/* tp__json_has_null_member returns 1 when an object anywhere inside v (v
 * itself included) has a member whose value is null. Arrays may hold nulls:
 * only object members count, but objects inside arrays are searched too.
 * NULL and scalars give 0. */
int tp__json_has_null_member(const json_t *v);

/* tp__json_strip_nulls returns v without null object members, recursively,
 * objects inside arrays included; null array elements stay. Ownership:
 * returns new; v itself (incref'd) when it has none, else new containers
 * along the changed paths sharing every unchanged subtree with v. NULL on
 * ENOMEM (or when v is NULL). Linear in the size of v. */
json_t *tp__json_strip_nulls(json_t *v);

/* tp__json_shallow_copy returns a new object holding new references to every
 * member of obj, in order, or NULL when out of memory. (json_copy ignores
 * failed inserts and may return a partial object.) */
json_t *tp__json_shallow_copy(const json_t *obj);

/* tp__json_size returns the size of v as the library encodes it (compact),
 * exactly for everything but reals, which count as their longest form. It
 * walks v once and allocates nothing (json.c). */
size_t tp__json_size(const json_t *v);

#endif /* TP_CORE_PATCH_H */
