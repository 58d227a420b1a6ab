/*
 * The host's operations as the host HTTP API needs them (HOST-API.md): each
 * takes plain arguments and JSON, answers with JSON or a TP_E... code and a
 * message naming the field, and reads the hub's structures so that the net
 * layer never does. Thread: the hub's loop thread.
 *
 * Named schemas: the API names a model's schema, the hub knows schemas only
 * by content; the names are the hub's (names.h). Names are stored with the
 * hub's state (META "sname:<name>", the schema document), in a transaction
 * of their own.
 */
#ifndef TP_CORE_HOSTOPS_H
#define TP_CORE_HOSTOPS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "transports.h"

#define TP__HOST_SCHEMAS_MAX 1024 /* named schemas: a PUT past it is refused (409) */
#define TP__HOST_LIST_MAX 1000    /* the most items one list answer carries */
#define TP__HOST_LIST_DEFAULT 100

/* An If-Match that no longer matches (412); never on the wire as a code of
 * PROTOCOL.md: the API answers precondition_failed. */
#define TP__HOST_EPRECONDITION (-101)

typedef struct tp__host tp__host;

/* tp__host_new makes the registry for a hub, with the names its store
 * holds. NULL when out of memory or the store cannot be read (err). */
tp__host *tp__host_new(tp_hub *hub, tp_error *err);
void tp__host_free(tp__host *h);

/* tp__host_name_schema gives a schema a name unless the name is taken
 * (the config's schemas at start; not stored: the config has them). */
int tp__host_name_schema(tp__host *h, const char *name, const tp_schema *schema);
/* tp__host_schema_named returns a named schema (borrowed) or NULL. */
const tp_schema *tp__host_schema_named(const tp__host *h, const char *name);

/* Outcomes: TP_OK with *out set (new reference) where there is one, else a
 * negative code with err. `created` is set to 1 when a PUT made something new. */
int tp__host_schema_put(tp__host *h, const char *name, const json_t *doc, int *created,
                        tp_error *err);
int tp__host_schema_get(tp__host *h, const char *name, json_t **out, tp_error *err);

int tp__host_tenants(tp__host *h, const char *after, size_t limit, json_t **out, tp_error *err);
int tp__host_tenant_get(tp__host *h, const char *tenant, json_t **out, tp_error *err);
int tp__host_tenant_delete(tp__host *h, const char *tenant, tp_error *err);

/* shared: 1 for /v1/shared/{id} (tenant ignored), 0 for a tenant's model.
 * if_match: the rev a PATCH or PUT requires, or -1. */
int tp__host_model_put(tp__host *h, int shared, const char *tenant, const char *id,
                       const json_t *body, int64_t if_match, int *created, json_t **out,
                       tp_error *err);
int tp__host_model_get(tp__host *h, int shared, const char *tenant, const char *id, json_t **out,
                       tp_error *err);
int tp__host_model_patch(tp__host *h, int shared, const char *tenant, const char *id,
                         const json_t *patch, int64_t if_match, json_t **out, tp_error *err);
int tp__host_model_delete(tp__host *h, int shared, const char *tenant, const char *id,
                          tp_error *err);

int tp__host_subscribers(tp__host *h, const char *sid, const char *after, size_t limit,
                         json_t **out, tp_error *err);
int tp__host_subscribe(tp__host *h, const char *sid, const char *tenant, const json_t *body,
                       tp_error *err);
int tp__host_unsubscribe(tp__host *h, const char *sid, const char *tenant, tp_error *err);

/* describe fills a connection's item ({"conn"} already set) with what the
 * transport knows of it (its peer, since when). */
typedef void (*tp__host_describe_fn)(tp_conn *c, json_t *item, void *user);
int tp__host_connections(tp__host *h, const char *tenant, const char *after, size_t limit,
                         tp__host_describe_fn describe, void *user, json_t **out, tp_error *err);
/* tp__host_close_connections closes a tenant's connections with code
 * (4403, 4404) after what they have pending; returns how many. */
int tp__host_close_connections(tp__host *h, const char *tenant, int code);
/* tp__host_close_everywhere closes them on every node of a cluster (here
 * at once, elsewhere when the catalog's change reaches them). */
int tp__host_close_everywhere(tp__host *h, const char *tenant, int code);

/*
 * tp__host_state_diff compares a hub built from a config with the hub
 * restored from storage: tenants, private models (by schema), shared models
 * (schema, merge) and subscriptions (access); values are not compared (they
 * change by design). Writes "model alice.notes (not stored), ..." into out
 * (truncated to size) and returns how many differences there are.
 */
int tp__host_state_diff(tp_hub *stored, tp_hub *config, char *out, size_t size);

#endif /* TP_CORE_HOSTOPS_H */
