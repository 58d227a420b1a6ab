/*
 * Schemas: JSON Schema documents as pydantic emits them, compiled once into
 * a tree of nodes and used to validate values and fill in defaults.
 *
 * The public entry points are tp_schema_new, tp_schema_free, tp_schema_title
 * and tp_schema_validate in transports.h. A tp_schema is reference counted:
 * tp_schema_free drops one reference.
 */
#ifndef TP_CORE_SCHEMA_H
#define TP_CORE_SCHEMA_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "transports.h"

/* tp__schema_ref adds a reference and returns the schema. */
tp_schema *tp__schema_ref(const tp_schema *schema);

/* tp__schema_doc returns the schema's JSON document (borrowed). */
const json_t *tp__schema_doc(const tp_schema *schema);

/* tp__schema_key names a schema by its content, for storage: 16 hex digits
 * of a 64-bit FNV-1a hash of its compact encoding with sorted keys, computed
 * once. NULL when out of memory. */
const char *tp__schema_key(const tp_schema *schema);

/*
 * tp__schema_validate checks a whole value. Returns TP_OK, or TP_EINVALID
 * with err->message naming the first bad field's path and the reason:
 *   "body: expected string, got number"
 *   "items[3].qty: 0 is less than the minimum 1"
 *   "title: required field is missing"
 * A member absent from an object satisfies `required` when the property's
 * schema accepts null (pydantic's required Optional[...]): an absent member
 * and a null one are the same thing (PROTOCOL.md, "Values").
 */
int tp__schema_validate(const tp_schema *schema, const json_t *value, tp_error *err);

/*
 * tp__schema_validate_member checks one top-level member of a root value
 * after a change: `value` is the member's new value, or NULL when the member
 * is now absent. It checks the property's schema (or additionalProperties
 * for an undeclared key) and `required`. It gives the same verdict as
 * tp__schema_validate on the whole value when every other member is
 * unchanged and was valid, so a write validates only the members it touches.
 */
int tp__schema_validate_member(const tp_schema *schema, const char *key, const json_t *value,
                               tp_error *err);

/*
 * tp__schema_fill_defaults fills in, in place, every absent member that has
 * a non-null default, in the root object and in nested models (objects
 * reached through properties, $ref, anyOf-with-null, and array items).
 * Defaults are deep-copied. Returns TP_OK or TP_ENOMEM. `value` must not be
 * shared (refcount 1 along the changed path): the hub calls it on values it
 * has just parsed.
 */
int tp__schema_fill_defaults(const tp_schema *schema, json_t *value);

/*
 * Nulls. A required member whose schema accepts null and has no default
 * (pydantic's required Optional[X]) holds null as a value: it is kept in
 * stored values, and its absence is an error. Every other null object
 * member means "absent" and is never stored (docs/protocol.md, "Values").
 *
 * tp__schema_strip_nulls returns v without its null object members, at
 * any depth, except those values: for the whole value (key NULL) or for
 * the top-level member `key`. tp__schema_merge is RFC 7396's MergePatch of
 * a top-level member (was may be NULL), stripped the same way, in which a
 * patch's null sets such a member to null instead of deleting it.
 * tp__schema_keeps_null says whether the top-level member `key` is one.
 * The first two return a new reference, or NULL when out of memory.
 */
/*
 * tp__schema_budget_begin and _end bracket one write: every pattern check
 * between them shares one step budget (TP__PATTERN_BUDGET_STEPS), so a
 * value with many strings, or a patch with many members, cannot take it
 * many times over. A check outside any
 * bracket has a budget of its own. They nest; validations bracket
 * themselves.
 */
void tp__schema_budget_begin(const tp_schema *schema);
/* Returns, when the outermost bracket ends, the steps its pattern checks
 * took (0 when no pattern was checked, or inside). */
uint64_t tp__schema_budget_end(const tp_schema *schema);

/*
 * A tenant's share of pattern checking (conn.c): the steps its writes'
 * pattern checks take are a debt that drains at TP__PATTERN_SHARE_STEPS
 * per second of the hub's clock; while it is over TP__PATTERN_SHARE_STEPS,
 * the tenant's writes are refused with rate_limited. That is about 100 ms
 * of pattern work per second (seven budgets of TP__PATTERN_BUDGET_STEPS,
 * about 15 ms each), so one tenant takes at most about a tenth of the loop
 * thread for patterns, however many writes or connections it has.
 */
#define TP__PATTERN_SHARE_STEPS 21000000.0

json_t *tp__schema_strip_nulls(const tp_schema *schema, const char *key, json_t *value);
json_t *tp__schema_merge(const tp_schema *schema, const char *key, const json_t *was,
                         json_t *patch);
bool tp__schema_keeps_null(const tp_schema *schema, const char *key);

#endif /* TP_CORE_SCHEMA_H */
