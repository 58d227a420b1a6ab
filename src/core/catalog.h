/*
 * The catalog of a hub in the shared order (catalog.c; docs/internals/order.md,
 * "The catalog"): which named schemas, private models, shared models and
 * subscriptions exist, the same on every node. The host API's changes on
 * one node are announced here and made on every other node; a node that
 * starts loads the catalog, and the first node of a cluster seeds it with
 * its config.
 *
 * Items, as the log keeps them (a field and a body, both JSON text):
 *   ["n", name]          the named schema's document
 *   ["m", tenant, id]    {"schema": name}: a private model
 *   ["s", sid]           {"schema": name, "merge": name}: a shared model
 *   ["u", sid, tenant]   {"access": "read" | "write"}: a subscription
 * A model's value is not in the catalog: a node that makes a model from it
 * reads the model's record from its log.
 *
 * Thread: the hub's loop thread.
 */
#ifndef TP_CORE_CATALOG_H
#define TP_CORE_CATALOG_H

#include <jansson.h>

#include "transports.h"

/* tp__catalog_start loads the catalog (tp__hub_set_order calls it). */
int tp__catalog_start(tp_hub *hub, tp_error *err);
/* Whether the catalog is not loaded yet (a node serves once it is). */
int tp__catalog_unsynced(const tp_hub *hub);
/* A change of the host on this node (hostops.c): begin, the items, end
 * announce them as one change, with close (a tenant whose connections close
 * with code on every node) or NULL. Nothing while the change comes from the
 * catalog itself, or without an order. */
void tp__catalog_begin(tp_hub *hub);
void tp__catalog_schema(tp_hub *hub, const char *name, const json_t *doc);
void tp__catalog_model(tp_hub *hub, int shared, const char *owner, const char *id);
void tp__catalog_sub(tp_hub *hub, const char *sid, const char *tenant);
void tp__catalog_end(tp_hub *hub, const char *close, int code);
/* tp__catalog_after makes the change being built wait for a ticket (a
 * model made: announced once its log has it); tp__catalog_kick: a ticket
 * ended (the order calls it), a waiting change may go. */
void tp__catalog_after(tp_hub *hub, uint64_t ticket);
void tp__catalog_kick(tp_hub *hub);
/* Resynchronise: the link was lost (tp__order_resync). */
void tp__catalog_resync(tp_hub *hub);
/* The order's tick (retries, waits), a read for a model the hub does not
 * hold (one the catalog is making here), and the end (tp__order_free). */
void tp__catalog_tick(tp_hub *hub);
struct tp__order_read;
void tp__catalog_read_done(tp_hub *hub, const char *owner, const char *id,
                           const struct tp__order_read *res, const tp_error *err);
void tp__catalog_free(tp_hub *hub);

#endif /* TP_CORE_CATALOG_H */
