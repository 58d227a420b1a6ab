/*
 * Merge strategies (merge.c): lww, lww-map (field stamps), custom.
 */
#ifndef TP_CORE_MERGE_H
#define TP_CORE_MERGE_H

#include <jansson.h>

#include "core/model.h"
#include "transports.h"
#include "util/map.h"

/* tp__change_free frees a change's members (merge.c, beside the merges
 * that fill it: merge.c then calls nothing of model.c). */
void tp__change_free(tp__change *ch);
/* tp__change_add appends a member change (takes the value reference, even on
 * failure); returns 0 or TP_ENOMEM. */
int tp__change_add(tp__change *ch, const char *key, json_t *value, int same);
/* tp__merge_compute turns a write's merge patch into a change of the model. */
int tp__merge_compute(tp__model *m, const json_t *patch, const tp__stamp *stamp, tp_conn *origin,
                      tp__change *ch, tp_error *err);
/* tp__stamp_now takes a fresh stamp from the hub's hybrid logical clock. */
void tp__stamp_now(tp_hub *hub, tp__stamp *st);
/* tp__stamp_observe clamps a client's ts and moves the hub's clock past it. */
void tp__stamp_observe(tp_hub *hub, tp__stamp *st);
int tp__stamp_cmp(const tp__stamp *a, const tp__stamp *b);
void tp__stamps_free(tp__map *stamps);

/* A strategy by name: lww, lww-map, or one of the hub's (tp_hub_config.merges,
 * the daemon's "merges"), as a store, the host API and a cluster's catalog
 * name them; NULL (or lww) is lww. NULL when unknown. */
const tp_merge *tp__merge_named(tp_hub *hub, const char *name);

#endif /* TP_CORE_MERGE_H */
