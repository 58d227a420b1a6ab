/*
 * What the net layer reads of the hub, as functions (hubapi.h): the server
 * sees no field of the core's structures.
 */
#include "core/hubapi.h"
#include "core/hub.h"
#include "core/session.h"
#include "util/error.h"

int64_t
tp__hub_now(tp_hub *hub)
{
    return hub->clock(hub->clock_user);
}

const tp_limits *
tp__hub_limits(const tp_hub *hub)
{
    return &hub->limits;
}

tp__logger *
tp__hub_logger(tp_hub *hub)
{
    return &hub->log;
}

void
tp__hub_default_tick(tp_hub *hub, unsigned tick_ms)
{
    if (hub->tick_ms == 0)
        hub->tick_ms = tick_ms;
}

int
tp__hub_has_verify(const tp_hub *hub)
{
    return hub->verify != NULL;
}

int
tp__hub_verify(tp_hub *hub, const char *token, size_t len, tp_credential *cred, tp_error *err)
{
    if (hub->verify == NULL)
        return tp__error_set(err, TP_EINTERNAL, "no token verifier");
    return hub->verify(token, len, tp__hub_now(hub), cred, err, hub->verify_user);
}

size_t
tp__hub_tenant_conns(const tp_hub *hub, const char *tenant)
{
    const tp_session *s = tp__map_get(&hub->tenants, tenant);
    return s != NULL ? s->conns.len : 0;
}

void
tp__hub_each_conn(tp_hub *hub, void (*fn)(tp_conn *c, void *user), void *user)
{
    void *v;
    for (size_t it = 0; tp__map_next(&hub->tenants, &it, NULL, &v);) {
        tp_session *s = v;
        for (size_t i = 0; i < s->conns.len; i++)
            fn(s->conns.items[i], user);
    }
}

int
tp__hub_has_ready(const tp_hub *hub)
{
    return hub->ready.len > 0;
}

tp_store *
tp__hub_store(const tp_hub *hub)
{
    return hub->store;
}

const tp__observer *
tp__hub_observer(const tp_hub *hub)
{
    return hub->observer;
}

void
tp__hub_set_observer(tp_hub *hub, const tp__observer *ob)
{
    hub->observer = ob;
}
