/*
 * Restoring from the store (restore.c): the hub at start, each tenant when
 * first needed, and tenants leaving memory (tp_hub_evict).
 */
#ifndef TP_CORE_RESTORE_H
#define TP_CORE_RESTORE_H

#include "transports.h"

/* tp__hub_restore loads a store's state into a new hub (tp_hub_new). */
int tp__hub_restore(tp_hub *hub, const tp_merge *const *merges, tp_error *err);
/* tp__session_load fills a session from the store (tp__session_ready). */
int tp__session_load(tp_session *s, tp_error *err);

#endif /* TP_CORE_RESTORE_H */
