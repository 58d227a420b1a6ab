/*
 * Merge strategies: how a write's merge patch becomes a change of a model.
 *
 *   lww      RFC 7396 in arrival order (private models always use it).
 *   lww-map  per top-level field, the greatest stamp (wall, count, tenant,
 *            conn) wins whatever the arrival order; the winner replaces the
 *            field whole; deletions leave a stamp behind (a tombstone), so an
 *            older write arriving late cannot bring the field back.
 *   custom   the user's merge(current, patch, origin) returns the new value;
 *            the change is the set of top-level members that differ.
 *
 * Every strategy yields a tp__change of top-level members; validation, the
 * published patch and the fan-out are the same for all (model.c).
 */
#include <string.h>

#include "core/conn_int.h"
#include "core/hub.h"
#include "core/merge.h"
#include "core/model.h"
#include "core/patch.h"
#include "core/schema.h"
#include "core/session.h"
#include "util/alloc.h"
#include "util/error.h"

/* ---- Changes (tp__change, model.h): what a merge computes ---- */

void
tp__change_free(tp__change *ch)
{
    for (size_t i = 0; i < ch->n; i++)
        json_decref(ch->members[i].value);
    tp__free(ch->members);
    json_decref(ch->hold);
    memset(ch, 0, sizeof *ch);
}

int
tp__change_add(tp__change *ch, const char *key, json_t *value, int same)
{
    if (ch->n == ch->cap) {
        size_t cap = ch->cap ? ch->cap * 2 : 8;
        void *members = tp__reallocarray(ch->members, cap, sizeof *ch->members);
        if (members == NULL) {
            json_decref(value);
            return TP_ENOMEM;
        }
        ch->members = members;
        ch->cap = cap;
    }
    ch->members[ch->n].key = key;
    ch->members[ch->n].value = value;
    ch->members[ch->n].same = same;
    ch->n++;
    return 0;
}

static json_t *
lww_merge(void *user, const json_t *current, const json_t *patch, const tp_origin *origin,
          tp_error *err)
{
    (void)user;
    (void)origin;
    json_t *v = tp_merge_patch_apply(current, patch);
    if (v == NULL)
        tp__error_set(err, TP_ENOMEM, "out of memory");
    return v;
}

/* Called directly, without a hub's stamps, every field of the patch wins
 * and replaces the field whole. (The hub tells the two built-in strategies
 * apart by their merge functions, and keeps lww-map's stamps itself.) */
static json_t *
lww_map_merge(void *user, const json_t *current, const json_t *patch, const tp_origin *origin,
              tp_error *err)
{
    (void)user;
    (void)origin;
    json_t *v = json_is_object(current) ? tp__json_shallow_copy(current) : json_object();
    const char *key;
    json_t *pv;
    if (v == NULL || !json_is_object(patch))
        goto fail;
    json_object_foreach((json_t *)patch, key, pv)
    {
        json_t *nv = json_is_null(pv) ? NULL : tp__json_strip_nulls(pv);
        if (json_is_null(pv))
            json_object_del(v, key);
        else if (nv == NULL || json_object_set_new(v, key, nv) != 0)
            goto fail;
    }
    return v;
fail:
    json_decref(v);
    tp__error_set(err, TP_ENOMEM, "out of memory");
    return NULL;
}

TP_API const tp_merge tp_last_write_wins = {"lww", lww_merge, NULL};
TP_API const tp_merge tp_lww_map_crdt = {"lww-map", lww_map_merge, NULL};

/* ---- Stamps: a hybrid logical clock ---- */

int
tp__stamp_cmp(const tp__stamp *a, const tp__stamp *b)
{
    if (a->wall != b->wall)
        return a->wall < b->wall ? -1 : 1;
    if (a->count != b->count)
        return a->count < b->count ? -1 : 1;
    int t = strcmp(a->tenant, b->tenant);
    if (t != 0)
        return t < 0 ? -1 : 1;
    if (a->conn != b->conn)
        return a->conn < b->conn ? -1 : 1;
    return 0;
}

void
tp__stamp_now(tp_hub *hub, tp__stamp *st)
{
    int64_t now = tp__hub_now(hub);
    if (now > hub->hlc_wall) {
        hub->hlc_wall = now;
        hub->hlc_count = 0;
    } else {
        hub->hlc_count++;
    }
    st->wall = hub->hlc_wall;
    st->count = hub->hlc_count;
}

void
tp__stamp_observe(tp_hub *hub, tp__stamp *st)
{
    /* A clock running ahead must not win every field for the next hour:
     * clamp it to the configured skew past our own clock. */
    int64_t limit = tp__hub_now(hub) + (int64_t)hub->limits.max_skew_ms;
    if (st->wall > limit)
        st->wall = limit;
    if (st->wall > hub->hlc_wall || (st->wall == hub->hlc_wall && st->count > hub->hlc_count)) {
        hub->hlc_wall = st->wall;
        hub->hlc_count = st->count;
    }
}

void
tp__stamps_free(tp__map *stamps)
{
    void *st;
    for (size_t it = 0; tp__map_next(stamps, &it, NULL, &st);)
        tp__free(st);
    tp__map_free(stamps);
}

/* ---- Computing a change ---- */

static int
lww_change(tp__model *m, const json_t *patch, tp__change *ch, tp_error *err)
{
    const char *key;
    json_t *pv;
    json_object_foreach((json_t *)patch, key, pv)
    {
        json_t *was = json_object_get(m->value, key);
        if (json_is_null(pv)) {
            /* A required Optional[X] is set to null, not deleted. */
            json_t *nv = tp__schema_keeps_null(m->schema, key) ? json_null() : NULL;
            if ((was != NULL || nv != NULL) && !(nv != NULL && json_is_null(was)) &&
                tp__change_add(ch, key, nv, 0) != 0)
                return tp__error_set(err, TP_ENOMEM, "out of memory");
            continue;
        }
        /* Object members inside arrays keep their nulls through RFC 7396
         * (arrays are replaced whole); a stored value has only those of
         * required Optional[X] members. */
        json_t *nv = tp__schema_merge(m->schema, key, was, pv);
        if (nv == NULL)
            return tp__error_set(err, TP_ENOMEM, "out of memory");
        if (was != NULL && json_equal(was, nv)) {
            json_decref(nv);
            continue;
        }
        if (tp__change_add(ch, key, nv, 0) != 0)
            return tp__error_set(err, TP_ENOMEM, "out of memory");
    }
    return 0;
}

static int
lww_map_change(tp__model *m, const json_t *patch, const tp__stamp *stamp, tp__change *ch,
               tp_error *err)
{
    const char *key;
    json_t *pv;
    size_t fresh = 0;
    ch->stamped = 1;
    ch->stamp = *stamp;
    json_object_foreach((json_t *)patch, key, pv)
    {
        const tp__stamp_entry *cur = tp__map_get(&m->stamps, key);
        if (cur != NULL && tp__stamp_cmp(stamp, &cur->st) <= 0)
            continue; /* an equal or later write already holds the field */
        /* Stamps outlive their fields (tombstones): bound them, or a client
         * could grow a model without end by deleting fields it invents. */
        if (cur == NULL && m->stamps.len + ++fresh > TP__MAX_STAMPS)
            return tp__error_set(err, TP_EINVALID,
                                 "%s: the model has too many fields, deleted ones included (%d)",
                                 key, TP__MAX_STAMPS);
        json_t *was = json_object_get(m->value, key);
        json_t *nv = NULL;
        if (json_is_null(pv) && tp__schema_keeps_null(m->schema, key))
            nv = json_null();
        else if (!json_is_null(pv) && (nv = tp__schema_strip_nulls(m->schema, key, pv)) == NULL)
            return tp__error_set(err, TP_ENOMEM, "out of memory");
        int same = nv == NULL ? was == NULL : was != NULL && json_equal(was, nv);
        if (tp__change_add(ch, key, nv, same) != 0)
            return tp__error_set(err, TP_ENOMEM, "out of memory");
    }
    return 0;
}

static int
custom_change(tp__model *m, const json_t *patch, tp_conn *origin, tp__change *ch, tp_error *err)
{
    tp_origin o = {origin ? origin->session->tenant : NULL, origin ? origin->id : "host"};
    tp_error merr = {0, ""};
    json_t *res = m->merge.merge(m->merge.user, m->value, patch, &o, &merr);
    if (res == NULL) {
        if (merr.code == TP_ENOMEM)
            return tp__error_set(err, TP_ENOMEM, "out of memory");
        /* A strategy that failed (a bug in a Lua script) is no refusal. */
        if (merr.code == TP_EINTERNAL)
            return tp__error_set(err, TP_EINTERNAL, "%s",
                                 merr.message[0] ? merr.message : "the merge strategy failed");
        return tp__error_set(err, TP_EREJECTED, "%s",
                             merr.message[0] ? merr.message
                                             : "the merge strategy refused the write");
    }
    if (!json_is_object(res)) {
        json_decref(res);
        return tp__error_set(err, TP_EINTERNAL, "merge strategy \"%s\" returned a non-object",
                             m->merge.name ? m->merge.name : "");
    }
    /* The change borrows its keys: from the merged value for members set,
     * from `gone` for members deleted (their keys in m->value are freed
     * when the member is deleted). ch->hold keeps both alive. */
    json_t *merged = tp__schema_strip_nulls(m->schema, NULL, res);
    json_decref(res);
    json_t *gone = json_object();
    ch->hold = json_array();
    if (merged == NULL || gone == NULL || ch->hold == NULL || json_array_append(ch->hold, merged) ||
        json_array_append(ch->hold, gone)) {
        json_decref(merged);
        json_decref(gone);
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    }
    json_decref(merged);
    json_decref(gone);
    const char *key;
    json_t *nv;
    json_object_foreach(merged, key, nv)
    {
        json_t *was = json_object_get(m->value, key);
        if (was != NULL && json_equal(was, nv))
            continue;
        if (tp__change_add(ch, key, json_incref(nv), 0) != 0)
            return tp__error_set(err, TP_ENOMEM, "out of memory");
    }
    json_object_foreach(m->value, key, nv)
    {
        if (json_object_get(merged, key) == NULL && json_object_set(gone, key, json_null()) != 0)
            return tp__error_set(err, TP_ENOMEM, "out of memory");
    }
    void *iter = json_object_iter(gone);
    for (; iter != NULL; iter = json_object_iter_next(gone, iter)) {
        if (tp__change_add(ch, json_object_iter_key(iter), NULL, 0) != 0)
            return tp__error_set(err, TP_ENOMEM, "out of memory");
    }
    return 0;
}

int
tp__merge_compute(tp__model *m, const json_t *patch, const tp__stamp *stamp, tp_conn *origin,
                  tp__change *ch, tp_error *err)
{
    switch (m->kind) {
    case TP__LWW_MAP: return lww_map_change(m, patch, stamp, ch, err);
    case TP__CUSTOM: return custom_change(m, patch, origin, ch, err);
    case TP__LWW:
    default: return lww_change(m, patch, ch, err);
    }
}

const tp_merge *
tp__merge_named(tp_hub *hub, const char *name)
{
    if (name == NULL || strcmp(name, "lww") == 0)
        return &tp_last_write_wins;
    if (strcmp(name, "lww-map") == 0)
        return &tp_lww_map_crdt;
    return tp__map_get(&hub->merges, name);
}
