/*
 * RFC 7396 JSON merge patch: apply and diff. The public entry points are
 * tp_merge_patch_apply() and tp_merge_patch_diff() in transports.h.
 *
 * Values are shared, not copied: a result may hold references to unchanged
 * members of its inputs. The hub treats every stored json_t below a model's
 * root object as immutable, so sharing is safe there; callers that want to
 * change a result in place copy it first (json_deep_copy).
 */
#ifndef TP_CORE_PATCH_H
#define TP_CORE_PATCH_H

#include <jansson.h>

/* tp__json_has_null_member returns 1 when an object anywhere inside v (v
 * itself included) has a member whose value is null. Arrays may hold nulls:
 * only object members count. */
int tp__json_has_null_member(const json_t *v);

/* tp__json_strip_nulls returns v without null object members, recursively
 * (a new reference; v itself, incref'd, when it has none). NULL on ENOMEM. */
json_t *tp__json_strip_nulls(json_t *v);

#endif /* TP_CORE_PATCH_H */
