/*
 * Webhooks (HOST-API.md, "Webhooks"): model.changed (debounced per model),
 * connection.opened and connection.closed, POSTed as signed JSON to the
 * backend. At least once: each event is a record stored in the same
 * transaction as the change that caused it (the hub's observer, core/hubapi.h)
 * and deleted once the receiver answered 2xx; retries back off
 * exponentially with jitter up to 24 h and resume after a restart.
 * Deliveries run on worker threads (libcurl), never on the loop thread.
 */
#ifndef TP_NET_WEBHOOK_H
#define TP_NET_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "transports.h"

#define TP__WEBHOOKS_MAX 16
#define TP__WH_MODEL_CHANGED 1u
#define TP__WH_CONN_OPENED 2u
#define TP__WH_CONN_CLOSED 4u

/* One endpoint as the config gives it. */
typedef struct tp__webhook_config {
    char *url;
    unsigned events; /* TP__WH_* bits */
    char *secret_env;
    unsigned debounce_ms;  /* default 1000 */
    unsigned max_delay_ms; /* default 10000, at least debounce_ms */
    unsigned timeout_ms;   /* default 10000: a delivery not answered by then is retried */
    unsigned retry_min_ms; /* default 1000: the first retry's delay (doubling to 24 h) */
} tp__webhook_config;

typedef struct tp__webhooks tp__webhooks;

/*
 * tp__server_webhooks starts delivery for a server: n endpoints, secrets[i]
 * the secret of cfg[i] (copied). Reads the events a previous run left
 * stored and delivers them again. Returns TP_OK, or an error with err.
 */
int tp__server_webhooks(tp_server *s, const tp__webhook_config *cfg, const char *const *secrets,
                        size_t n, tp_error *err);
/* tp__webhooks_free stores what was noted, stops the workers (deliveries in
 * flight are sent again after a restart) and detaches from the hub. */
void tp__webhooks_free(tp__webhooks *w);
/* tp__webhooks_stats fills delivered, failed (attempts) and pending events;
 * 0 when w is NULL (no webhooks). */
int tp__webhooks_stats(const tp__webhooks *w, uint64_t out[3]);
/* tp__webhooks_release frees w itself, once the loop closed its timer. */
void tp__webhooks_release(tp__webhooks *w);

#endif /* TP_NET_WEBHOOK_H */
