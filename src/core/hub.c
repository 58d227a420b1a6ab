/*
 * The hub: tenants and their sessions, private and shared models,
 * subscriptions, and host-side writes that wait for the next sync.
 */
#include <stdio.h>
#include <string.h>

#include "core/conn_int.h"
#include "core/hub.h"
#include "core/journal.h"
#include "core/json.h"
#include "core/merge.h"
#include "core/model.h"
#include "core/names.h"
#include "core/notes.h"
#include "core/order_int.h"
#include "core/patch.h"
#include "core/presence.h"
#include "core/restore.h"
#include "core/schema.h"
#include "core/session.h"
#include "core/wire.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/error.h"

TP_API const char *
tp_version(void)
{
    return TP_VERSION;
}

static void
limits_default(tp_limits *l)
{
    if (l->max_message_bytes == 0)
        l->max_message_bytes = 1024 * 1024;
    if (l->max_outbox_bytes == 0)
        l->max_outbox_bytes = 8 * 1024 * 1024;
    if (l->writes_per_second == 0)
        l->writes_per_second = 1000;
    if (l->history_patches == 0)
        l->history_patches = 256;
    if (l->history_bytes == 0)
        l->history_bytes = 256 * 1024;
    if (l->client_records == 0)
        l->client_records = 1024;
    if (l->client_record_bytes == 0)
        l->client_record_bytes = 1024 * 1024;
    if (l->max_skew_ms == 0)
        l->max_skew_ms = 60000;
}

/* ---- Life cycle ---- */

TP_API tp_hub *
tp_hub_new(const tp_hub_config *config, tp_error *err)
{
    tp_hub *hub = tp__calloc(1, sizeof *hub);
    if (hub == NULL) {
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    if (config != NULL) {
        hub->key = config->key;
        hub->key_user = config->key_user;
        hub->verify = config->verify;
        hub->verify_user = config->verify_user;
        hub->clock = config->clock;
        hub->clock_user = config->clock_user;
        hub->limits = config->limits;
        hub->tick_ms = config->tick_ms;
        hub->log = (tp__logger){config->log, config->log_user, config->log_level};
        hub->evict_idle_ms = config->evict_idle_ms;
        hub->memory_budget = config->memory_budget;
        memcpy(hub->conn_key, config->conn_key, sizeof hub->conn_key);
    }
    if (hub->evict_idle_ms == 0)
        hub->evict_idle_ms = 60000;
    if (hub->memory_budget == 0)
        hub->memory_budget = (size_t)256 << 20;
    if (hub->clock == NULL)
        hub->clock = tp__clock_wall_ms;
    limits_default(&hub->limits);
    hub->seed = tp__seed(hub);
    static const unsigned char zero[sizeof hub->conn_key];
    if (memcmp(hub->conn_key, zero, sizeof zero) == 0) {
        /* No key given: not secret, but no two hubs count alike. */
        uint64_t k[2] = {hub->seed ^ tp__seed(&k),
                         tp__seed(&hub->conn_key) * 0x9e3779b97f4a7c15ULL};
        memcpy(hub->conn_key, k, sizeof k);
    }
    tp__map_init(&hub->tenants, hub->seed);
    tp__map_init(&hub->shared, hub->seed ^ 0x9e3779b97f4a7c15ULL);
    tp__map_init(&hub->gone_sids, hub->seed ^ 0x6);
    tp__map_init(&hub->names, hub->seed ^ 0x9);
    tp_store *store = config ? config->store : NULL;
    if (store != NULL && store->hub != NULL) {
        tp__error_set(err, TP_EARG, "store: already used by another hub");
        store = NULL;
    } else {
        hub->store = store;
        if (store != NULL)
            store->hub = hub;
    }
    if ((config && config->store && store == NULL) ||
        tp__hub_restore(hub, config ? config->merges : NULL, err) != TP_OK ||
        tp__hub_persist_start(hub, err) != TP_OK) {
        /* What was restored goes without being stored again. */
        if (hub->store != NULL)
            hub->store->hub = NULL;
        hub->store = NULL;
        tp_error keep = err ? *err : (tp_error){0, ""};
        tp_hub_free(hub);
        if (err != NULL)
            *err = keep;
        return NULL;
    }
    tp__error_clear(err);
    return hub;
}

/*
 * Ids that named a model or a subscription once. When one names a new model
 * or subscription, a client away since may still hold revs of the old one
 * and list them in a resume: those get a snapshot (tp__model.reborn,
 * tp__sub.access_rev). Keys and values are the same owned copy.
 */
static int
remember_gone(tp__map *gone, const char *id)
{
    if (tp__map_get(gone, id) != NULL)
        return TP_OK;
    char *copy = tp__strdup(id);
    if (copy == NULL || tp__map_put(gone, copy, copy) != 0) {
        tp__free(copy);
        return TP_ENOMEM;
    }
    return TP_OK;
}

/* Forgets a gone id; returns 1 when it was there. */
static int
take_gone(tp__map *gone, const char *id)
{
    char *copy = tp__map_del(gone, id);
    tp__free(copy);
    return copy != NULL;
}

static void
gone_free(tp__map *gone)
{
    void *v;
    for (size_t it = 0; tp__map_next(gone, &it, NULL, &v);)
        tp__free(v);
    tp__map_free(gone);
}

void
tp__client_free(tp__client *cl)
{
    for (unsigned i = 0; i < cl->len; i++)
        tp__buf_unref(cl->outcomes[(cl->start + i) % TP__OUTCOMES].msg);
    tp__free(cl);
}

void
tp__session_clear(tp_session *s)
{
    void *v;
    for (size_t it = 0; tp__map_next(&s->models, &it, NULL, &v);) {
        tp__order_model_gone(v);
        tp__model_free(v);
    }
    tp__map_free(&s->models);
    for (size_t it = 0; tp__map_next(&s->subs, &it, NULL, &v);) {
        tp__sub *sub = v;
        tp__sub *moved = tp__vec_swap_remove(&sub->model->subs, sub->idx);
        if (moved != NULL)
            moved->idx = sub->idx;
        tp__free(sub);
    }
    tp__map_free(&s->subs);
    for (size_t it = 0; tp__map_next(&s->clients, &it, NULL, &v);)
        tp__client_free(v);
    tp__map_free(&s->clients);
    s->client_bytes = 0;
    gone_free(&s->gone);
    gone_free(&s->gone_ids);
    tp__vec_free(&s->ord_ops);
}

void
tp__session_free(tp_session *s)
{
    /* A hub freed under live connections frees them too: the transport
     * must not use them (nor call tp_conn_close) afterwards. */
    while (s->conns.len > 0)
        tp_conn_close(s->conns.items[s->conns.len - 1]);
    tp__vec_free(&s->conns);
    tp__session_clear(s);
    tp__free(s->tenant_json);
    tp__free(s->tenant);
    tp__free(s);
}

TP_API void
tp_hub_free(tp_hub *hub)
{
    if (hub == NULL)
        return;
    tp__hub_persist_free(hub); /* commits what is not yet stored */
    hub->freeing = 1;
    void *v;
    for (size_t it = 0; tp__map_next(&hub->tenants, &it, NULL, &v);)
        tp__session_free(v);
    tp__map_free(&hub->tenants);
    for (size_t it = 0; tp__map_next(&hub->shared, &it, NULL, &v);) {
        tp__order_model_gone(v);
        tp__model_free(v);
    }
    tp__map_free(&hub->shared);
    gone_free(&hub->gone_sids);
    gone_free(&hub->names);
    tp__vec_free(&hub->dirty);
    tp__vec_free(&hub->ready);
    tp__vec_free(&hub->ord_stalled);
    tp__order_free(hub);
    tp__names_free(hub->snames);
    tp__presence_hub_free(hub);
    tp__free(hub);
}

TP_API const char *
tp_hub_key(tp_hub *hub, const tp_request *req)
{
    if (hub->key != NULL)
        return hub->key(req, hub->key_user);
    return tp_request_path_param(req, "tenant");
}

/* ---- Values ---- */

static int
valid_key(const char *key)
{
    return tp__valid_key(key);
}

int
tp__valid_key(const char *key)
{
    if (key == NULL)
        return 0;
    /* Keys travel in JSON (hello, snapshots): UTF-8 only. */
    size_t n = strnlen(key, TP__KEY_MAX + 1);
    return n > 0 && n <= TP__KEY_MAX && tp__utf8_valid(key);
}

json_t *
tp__parse_value(const tp_hub *hub, const tp_schema *schema, const char *text, tp_error *err)
{
    if (text == NULL) {
        tp__error_set(err, TP_EARG, "value: missing");
        return NULL;
    }
    json_error_t jerr;
    json_t *parsed = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (parsed == NULL) {
        tp__error_set(err, TP_EBADREQUEST, "value: not JSON: %s (line %d, column %d)", jerr.text,
                      jerr.line, jerr.column);
        return NULL;
    }
    /* Stripping and filling choose anyOf branches by checking them: one
     * pattern budget for all of it. */
    tp__schema_budget_begin(schema);
    json_t *v = tp__schema_strip_nulls(schema, NULL, parsed);
    json_decref(parsed);
    int rc = v == NULL ? TP_ENOMEM : TP_OK;
    if (rc == TP_OK && json_is_object(v))
        rc = tp__schema_fill_defaults(schema, v);
    if (rc != TP_OK)
        tp__error_set(err, TP_ENOMEM, "out of memory");
    else if ((rc = tp__schema_validate(schema, v, err)) == TP_OK)
        rc = tp__check_size(hub, tp__value_bytes(v), err);
    tp__schema_budget_end(schema);
    if (rc != TP_OK) {
        json_decref(v);
        return NULL;
    }
    return v;
}

static void
dirty_remove(tp__model *m)
{
    if (m->pending == NULL)
        return;
    tp__model *moved = tp__vec_swap_remove(&m->hub->dirty, m->dirty_idx);
    if (moved != NULL)
        moved->dirty_idx = m->dirty_idx;
    json_decref(m->pending);
    m->pending = NULL;
}

/* Makes v the model's pending host value (takes the reference). */
static int set_pending(tp__model *m, json_t *v, tp_error *err);

/* tp_session_set and tp_hub_set_shared: the value is checked now and
 * becomes the model's pending value, published on the next sync. */
static int
host_set(tp__model *m, const char *value, tp_error *err)
{
    tp_error local;
    if (tp__hub_writable(m->hub, err ? err : &local) != TP_OK)
        return TP_EINTERNAL;
    json_t *v = tp__parse_value(m->hub, m->schema, value, err ? err : &local);
    if (v == NULL)
        return err ? err->code : local.code;
    return set_pending(m, v, err);
}

/* Makes v the model's pending host value (takes the reference). */
static int
set_pending(tp__model *m, json_t *v, tp_error *err)
{
    return tp__set_pending(m, v, err);
}

int
tp__set_pending(tp__model *m, json_t *v, tp_error *err)
{
    if (m->pending == NULL) {
        if (tp__vec_push(&m->hub->dirty, m) != 0) {
            json_decref(v);
            return tp__error_set(err, TP_ENOMEM, "out of memory");
        }
        m->dirty_idx = m->hub->dirty.len - 1;
    } else {
        json_decref(m->pending);
    }
    m->pending = v;
    return TP_OK;
}

json_t *
tp__host_patch(const tp__model *m, const json_t *value)
{
    json_t *patch = tp_merge_patch_diff(m->value, value);
    if (patch == NULL)
        return NULL;
    /* A lww-map field's winner replaces the field whole, so the host's write
     * names each changed field with its whole new value, not a nested diff. */
    if (m->kind == TP__LWW_MAP) {
        const char *key;
        json_t *pv;
        json_object_foreach(patch, key, pv)
        {
            json_t *whole = json_object_get(value, key);
            if (whole != NULL && json_object_set(patch, key, whole) != 0) {
                json_decref(patch);
                return NULL;
            }
        }
    }
    return patch;
}

int
tp__publish_pending(tp__model *m)
{
    if (m->pending == NULL)
        return 0;
    tp_error err;
    tp__change ch = {0};
    tp__stamp stamp = {0, 0, "", 0};
    tp__stamp_now(m->hub, &stamp);
    if (m->ord != NULL) {
        /* In the shared order the value waits for its turn (order.c), and
         * its patch is taken then, from the model as the log has it. */
        int rc = tp__order_host(m, m->pending, &stamp);
        if (rc != TP_OK)
            return rc;
        dirty_remove(m);
        return 1;
    }
    json_t *patch = tp__host_patch(m, m->pending);
    if (patch == NULL)
        return TP_ENOMEM;
    tp__schema_budget_begin(m->schema);
    int rc = tp__merge_compute(m, patch, &stamp, NULL, &ch, &err);
    if (rc == 0)
        rc = tp__model_commit(m, &ch, NULL, NULL, &err);
    tp__schema_budget_end(m->schema);
    tp__change_free(&ch);
    json_decref(patch);
    if (rc == TP_ENOMEM)
        return rc; /* still pending: the next sync tries again */
    /* Published, or refused by a custom merge or the schema: either way the
     * host's value has had its turn. */
    dirty_remove(m);
    return rc;
}

TP_API int
tp_hub_sync(tp_hub *hub)
{
    int published = 0;
    /* Publishing removes the model from the dirty list (swap-remove from
     * the end keeps the indices below valid); a model that stays dirty on
     * failure is left for the next sync. */
    for (size_t i = hub->dirty.len; i-- > 0;) {
        if (i >= hub->dirty.len)
            continue;
        /* > 0: members changed and a patch went out; 0: the pending value
         * equalled the current one; < 0: refused or out of memory. */
        int rc = tp__publish_pending(hub->dirty.items[i]);
        if (rc > 0)
            published++;
    }
    if (published > 0)
        hub->syncs++;
    tp__presence_tick(hub); /* the tick: presence that waited for it goes out */
    if (hub->order != NULL)
        tp__order_tick(hub);
    return published;
}

TP_API void
tp_hub_get_stats(const tp_hub *hub, tp_hub_stats *out)
{
    memset(out, 0, sizeof *out);
    /* What the hub holds is counted here, when asked (a metrics scrape),
     * rather than kept up to date on every change. */
    void *v;
    for (size_t it = 0; tp__map_next(&hub->tenants, &it, NULL, &v);) {
        const tp_session *s = v;
        out->tenants++;
        out->models_private += s->models.len;
        out->connections += s->conns.len;
        for (size_t i = 0; i < s->conns.len; i++)
            out->outbox_bytes += ((const tp_conn *)s->conns.items[i])->out_bytes;
    }
    out->models_shared = hub->shared.len;
    out->writes_accepted = hub->writes_accepted;
    memcpy(out->writes_refused, hub->refused, sizeof out->writes_refused);
    out->deliveries = hub->deliveries;
    out->syncs = hub->syncs;
    tp__hub_persist_stats(hub, &out->commits, &out->commit_failures);
    out->evictions = hub->evictions;
    out->loads = hub->loads;
    out->resident_bytes = hub->resident_bytes;
}

static char *
dump_value(const tp__model *m)
{
    return tp__json_dumps(m->pending ? m->pending : m->value, JSON_COMPACT);
}

/* ---- Sessions and private models ---- */

const char *
tp__hub_intern(tp_hub *hub, const char *tenant)
{
    const char *name = tp__map_get(&hub->names, tenant);
    if (name != NULL)
        return name;
    return remember_gone(&hub->names, tenant) == TP_OK ? tp__map_get(&hub->names, tenant) : NULL;
}

int
tp__session_ready(tp_session *s)
{
    s->idle_since = tp__hub_now(s->hub);
    if (s->loaded)
        return TP_OK;
    tp_error err;
    int rc = tp__session_load(s, &err);
    if (rc != TP_OK) {
        char qt[TP__LOG_VALUE_MAX];
        tp__log(&s->hub->log, TP_LOG_ERROR, "tenant %s cannot be loaded: %s",
                tp__log_value(s->tenant, qt, sizeof qt), err.message);
    }
    return rc;
}

tp_session *
tp__hub_session(tp_hub *hub, const char *tenant, int pin)
{
    if (!valid_key(tenant))
        return NULL;
    tp_session *s = tp__map_get(&hub->tenants, tenant);
    if (s != NULL) {
        s->pinned |= pin;
        return tp__session_ready(s) == TP_OK ? s : NULL;
    }
    s = tp__calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->hub = hub;
    s->pinned = pin;
    s->next_id = 1;
    s->tenant = tp__strdup(tenant);
    json_t *jt = json_string(tenant);
    s->tenant_json = jt ? tp__json_dumps(jt, JSON_ENCODE_ANY) : NULL;
    json_decref(jt);
    tp__map_init(&s->models, hub->seed ^ 0x1);
    tp__map_init(&s->subs, hub->seed ^ 0x2);
    tp__map_init(&s->clients, hub->seed ^ 0x3);
    tp__map_init(&s->gone, hub->seed ^ 0x4);
    tp__map_init(&s->gone_ids, hub->seed ^ 0x5);
    if (s->tenant == NULL || s->tenant_json == NULL ||
        tp__map_put(&hub->tenants, s->tenant, s) != 0) {
        tp__free(s->tenant_json);
        tp__free(s->tenant);
        tp__free(s);
        return NULL;
    }
    /* With a store, what it holds of the tenant comes first. */
    s->loaded = !hub->lazy;
    if (tp__session_ready(s) != TP_OK) {
        tp__map_del(&hub->tenants, s->tenant);
        tp__session_free(s);
        return NULL;
    }
    return s;
}

TP_API tp_session *
tp_hub_tenant(tp_hub *hub, const char *tenant)
{
    /* The host holds on to what this returns: the session lives as long as
     * the hub. */
    return tp__hub_session(hub, tenant, 1);
}

void
tp__session_release(tp_session *s)
{
    /* A session that only connections made (the key function let a client
     * name any tenant) goes with its last connection when it holds
     * nothing, so clients cannot grow the hub by naming new tenants. */
    if (s->pinned || s->conns.len > 0 || s->models.len > 0 || s->subs.len > 0 || s->gone.len > 0 ||
        s->gone_ids.len > 0)
        return;
    tp__journal_session_gone(s);
    tp__map_del(&s->hub->tenants, s->tenant);
    tp__session_free(s);
}

int
tp__session_close(tp_session *s, int code)
{
    int n = 0;
    for (size_t i = 0; i < s->conns.len; i++) {
        tp_conn *c = s->conns.items[i];
        if (c->close_code == 0) {
            c->close_code = code;
            c->state = TP__CONN_CLOSING;
            tp__conn_mark_ready(c);
            n++;
        }
    }
    return n;
}

TP_API const char *
tp_session_tenant(const tp_session *s)
{
    return s->tenant;
}

/* Sends a model's snapshot to every live connection of a session. */
static void
announce(tp_session *s, tp__model *m, tp_access access)
{
    for (size_t i = 0; i < s->conns.len; i++) {
        tp_conn *c = s->conns.items[i];
        if (c->state == TP__CONN_LIVE)
            tp__conn_send_snapshot(c, m, access);
    }
}

static void
tell(tp_session *s, tp__buf *msg)
{
    for (size_t i = 0; msg != NULL && i < s->conns.len; i++) {
        tp_conn *c = s->conns.items[i];
        if (c->state == TP__CONN_LIVE)
            tp__conn_send(c, msg);
    }
}

static const char *
host_private(tp_session *s, const char *id, const tp_schema *schema, const char *value,
             tp_error *err)
{
    char assigned[24];
    if (s == NULL || schema == NULL) {
        tp__error_set(err, TP_EARG, s ? "schema: missing" : "session: missing");
        return NULL;
    }
    if (tp__hub_writable(s->hub, err) != TP_OK)
        return NULL;
    if (tp__session_ready(s) != TP_OK) {
        tp__error_set(err, TP_EINTERNAL, "tenant \"%s\": its stored state cannot be loaded",
                      s->tenant);
        return NULL;
    }
    if (id == NULL) {
        do
            snprintf(assigned, sizeof assigned, "%llu", (unsigned long long)s->next_id++);
        while (tp__map_get(&s->models, assigned) != NULL);
        id = assigned;
    } else if (!valid_key(id)) {
        tp__error_set(err, TP_EARG, "id: must be 1 to %d bytes of UTF-8", TP__KEY_MAX);
        return NULL;
    } else if (tp__map_get(&s->models, id) != NULL) {
        tp__error_set(err, TP_EEXIST, "id: \"%s\" is already hosted in tenant \"%s\"", id,
                      s->tenant);
        return NULL;
    }
    json_t *v = tp__parse_value(s->hub, schema, value, err);
    if (v == NULL)
        return NULL;
    tp__model *m = tp__model_new(s->hub, 0, id, schema, v);
    json_decref(v);
    if (m == NULL || tp__map_put(&s->models, m->id, m) != 0) {
        tp__model_free(m);
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    m->owner = s;
    m->reborn = take_gone(&s->gone_ids, m->id);
    tp__journal_model(m);
    tp__journal_session(s); /* next_id, gone_ids */
    if (tp__order_model_added(m) != TP_OK) {
        tp__map_del(&s->models, m->id);
        tp__model_free(m);
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    announce(s, m, TP_WRITE);
    tp__error_clear(err);
    return m->id;
}

TP_API const char *
tp_session_host(tp_session *s, const tp_schema *schema, const char *value, tp_error *err)
{
    return host_private(s, NULL, schema, value, err);
}

TP_API const char *
tp_session_host_as(tp_session *s, const char *id, const tp_schema *schema, const char *value,
                   tp_error *err)
{
    if (id == NULL) {
        tp__error_set(err, TP_EARG, "id: missing");
        return NULL;
    }
    return host_private(s, id, schema, value, err);
}

/* A session's private model; NULL for a NULL session (tp_hub_tenant out of
 * memory) as for an unknown id. */
static tp__model *
private_model(tp_session *s, const char *id)
{
    return s && id && tp__session_ready(s) == TP_OK ? tp__map_get(&s->models, id) : NULL;
}

TP_API int
tp_session_set(tp_session *s, const char *id, const char *value, tp_error *err)
{
    tp__model *m = private_model(s, id);
    if (m == NULL)
        return tp__error_set(err, s ? TP_ENOTFOUND : TP_EARG,
                             "id: no private model \"%s\" in tenant \"%s\"", id ? id : "",
                             s ? s->tenant : "");
    return host_set(m, value, err);
}

TP_API char *
tp_session_get(tp_session *s, const char *id)
{
    tp__model *m = private_model(s, id);
    return m ? dump_value(m) : NULL;
}

TP_API int64_t
tp_session_rev(tp_session *s, const char *id)
{
    tp__model *m = private_model(s, id);
    return m ? m->rev : TP_ENOTFOUND;
}

TP_API int
tp_session_delete(tp_session *s, const char *id)
{
    tp__model *m = private_model(s, id);
    if (m == NULL)
        return TP_ENOTFOUND;
    if (tp__hub_writable(s->hub, NULL) != TP_OK)
        return TP_EINTERNAL;
    if (remember_gone(&s->gone_ids, m->id) != TP_OK)
        return TP_ENOMEM;
    tp__buf *msg = tp__wire_removed(m->addr, m->addr_len);
    tell(s, msg);
    tp__buf_unref(msg);
    dirty_remove(m);
    tp__journal_model_gone(m);
    tp__journal_session(s);
    tp__map_del(&s->models, m->id);
    tp__order_model_gone(m);
    tp__model_free(m);
    return TP_OK;
}

/* ---- Shared models ---- */

static tp__model *
shared_model(tp_hub *hub, const char *sid)
{
    return sid ? tp__map_get(&hub->shared, sid) : NULL;
}

TP_API const char *
tp_hub_share_as(tp_hub *hub, const char *sid, const tp_schema *schema, const char *value,
                const tp_merge *merge, tp_error *err)
{
    char assigned[24];
    if (schema == NULL) {
        tp__error_set(err, TP_EARG, "schema: missing");
        return NULL;
    }
    if (merge != NULL && merge->merge == NULL) {
        tp__error_set(err, TP_EARG, "merge: the strategy has no merge function");
        return NULL;
    }
    if (tp__hub_writable(hub, err) != TP_OK)
        return NULL;
    if (sid == NULL) {
        do
            snprintf(assigned, sizeof assigned, "s%llu", (unsigned long long)++hub->next_sid);
        while (tp__map_get(&hub->shared, assigned) != NULL);
        sid = assigned;
    } else if (!valid_key(sid)) {
        tp__error_set(err, TP_EARG, "sid: must be 1 to %d bytes of UTF-8", TP__KEY_MAX);
        return NULL;
    } else if (tp__map_get(&hub->shared, sid) != NULL) {
        tp__error_set(err, TP_EEXIST, "sid: \"%s\" is already shared", sid);
        return NULL;
    }
    json_t *v = tp__parse_value(hub, schema, value, err);
    if (v == NULL)
        return NULL;
    tp__model *m = tp__model_new(hub, 1, sid, schema, v);
    json_decref(v);
    if (m == NULL || tp__map_put(&hub->shared, m->id, m) != 0) {
        tp__model_free(m);
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    if (merge != NULL) {
        /* The struct is copied, its name too (storage finds custom
         * strategies by name); the user pointer stays the caller's. */
        m->merge = *merge;
        m->merge.name = m->merge_name = tp__strdup(merge->name ? merge->name : "");
        if (m->merge_name == NULL) {
            tp__map_del(&hub->shared, m->id);
            tp__model_free(m);
            tp__error_set(err, TP_ENOMEM, "out of memory");
            return NULL;
        }
    }
    /* The built-in strategies are recognised by their merge function: the
     * hub, not the callback, keeps lww-map's per-field stamps. */
    if (m->merge.merge == tp_lww_map_crdt.merge)
        m->kind = TP__LWW_MAP;
    else if (m->merge.merge == tp_last_write_wins.merge)
        m->kind = TP__LWW;
    else
        m->kind = TP__CUSTOM;
    m->reborn = take_gone(&hub->gone_sids, m->id);
    tp__journal_model(m);
    tp__journal_meta(hub); /* next_sid, gone_sids */
    if (tp__order_model_added(m) != TP_OK) {
        tp__map_del(&hub->shared, m->id);
        tp__model_free(m);
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    tp__error_clear(err);
    return m->id;
}

TP_API const char *
tp_hub_share(tp_hub *hub, const tp_schema *schema, const char *value, const tp_merge *merge,
             tp_error *err)
{
    return tp_hub_share_as(hub, NULL, schema, value, merge, err);
}

TP_API int
tp_hub_subscribe(tp_hub *hub, const char *tenant, const char *sid, tp_access access)
{
    if (access != TP_READ && access != TP_WRITE)
        return TP_EARG;
    tp__model *m = shared_model(hub, sid);
    if (m == NULL)
        return TP_ENOTFOUND;
    if (!valid_key(tenant))
        return TP_EARG;
    if (tp__hub_writable(hub, NULL) != TP_OK)
        return TP_EINTERNAL;
    tp_session *s = tp__hub_session(hub, tenant, 0);
    if (s == NULL)
        return TP_ENOMEM;
    tp__sub *sub = tp__session_sub(s, m->id);
    if (sub != NULL) {
        if (sub->access != access) {
            sub->access = access;
            sub->access_rev = m->rev;
            tp__journal_sub(s, m->id);
            tp__buf *msg = tp__wire_access(m->addr, m->addr_len, access);
            tell(s, msg);
            tp__buf_unref(msg);
        }
        return TP_OK;
    }
    sub = tp__calloc(1, sizeof *sub);
    if (sub == NULL || tp__vec_reserve(&m->subs, 1) != 0 ||
        tp__map_put(&s->subs, m->id, sub) != 0) {
        tp__free(sub);
        tp__session_release(s);
        return TP_ENOMEM;
    }
    sub->session = s;
    sub->model = m;
    sub->access = access;
    /* A first subscription: any rev a client lists came from it, with this
     * access. Subscribed again after an unsubscription: a client away since
     * may hold the old subscription's revs and access. */
    sub->access_rev = take_gone(&s->gone, m->id) ? m->rev : 0;
    sub->idx = m->subs.len;
    tp__vec_push(&m->subs, sub); /* reserved */
    if (s->conns.len > 0)
        tp__order_watch(m, 1);
    tp__journal_sub(s, m->id);
    tp__journal_session(s); /* new, or its gone list changed */
    announce(s, m, access);
    return TP_OK;
}

/* Removes a subscription. `gone` is a copy of the sid (or NULL) that the
 * session keeps, so that subscribing again knows a client may hold the old
 * subscription's revs (tp__sub.access_rev). */
static void
sub_remove(tp__sub *sub, int notify, char *gone)
{
    tp__model *m = sub->model;
    tp_session *s = sub->session;
    if (gone != NULL)
        tp__map_put(&s->gone, gone, gone); /* reserved by the caller */
    if (notify) {
        tp__buf *msg = tp__wire_removed(m->addr, m->addr_len);
        tell(s, msg);
        tp__buf_unref(msg);
    }
    tp__sub *moved = tp__vec_swap_remove(&m->subs, sub->idx);
    if (moved != NULL)
        moved->idx = sub->idx;
    if (s->conns.len > 0 && !s->hub->freeing)
        tp__order_watch(m, 0);
    /* Access withdrawn: the tenant's connections leave the model's
     * presence (its own connections were just told `removed`). */
    tp__presence_session_leave(s, m);
    tp__journal_sub(s, m->id);
    tp__journal_session(s);
    tp__map_del(&s->subs, m->id);
    tp__free(sub);
    tp__session_release(s);
}

TP_API int
tp_hub_unsubscribe(tp_hub *hub, const char *tenant, const char *sid)
{
    tp_session *s = valid_key(tenant) ? tp__map_get(&hub->tenants, tenant) : NULL;
    tp__sub *sub = s && sid ? tp__session_sub(s, sid) : NULL;
    if (sub == NULL)
        return TP_ENOTFOUND;
    if (tp__hub_writable(hub, NULL) != TP_OK)
        return TP_EINTERNAL;
    char *gone = tp__strdup(sid);
    if (gone == NULL || tp__map_reserve(&s->gone, 1) != 0) {
        tp__free(gone);
        return TP_ENOMEM;
    }
    sub_remove(sub, 1, gone);
    return TP_OK;
}

TP_API int
tp_hub_unshare(tp_hub *hub, const char *sid)
{
    tp__model *m = shared_model(hub, sid);
    if (m == NULL)
        return TP_ENOTFOUND;
    if (tp__hub_writable(hub, NULL) != TP_OK)
        return TP_EINTERNAL;
    if (remember_gone(&hub->gone_sids, m->id) != TP_OK)
        return TP_ENOMEM;
    while (m->subs.len > 0) {
        tp__sub *sub = m->subs.items[m->subs.len - 1];
        char *gone = tp__strdup(m->id);
        if (gone != NULL && tp__map_reserve(&sub->session->gone, 1) != 0) {
            tp__free(gone);
            gone = NULL; /* out of memory: the sid is in hub->gone_sids all the same */
        }
        sub_remove(sub, 1, gone);
    }
    dirty_remove(m);
    tp__journal_model_gone(m);
    tp__journal_meta(hub);
    tp__map_del(&hub->shared, m->id);
    tp__order_model_gone(m);
    tp__model_free(m);
    return TP_OK;
}

TP_API int
tp_hub_set_shared(tp_hub *hub, const char *sid, const char *value, tp_error *err)
{
    tp__model *m = shared_model(hub, sid);
    if (m == NULL)
        return tp__error_set(err, TP_ENOTFOUND, "sid: no shared model \"%s\"", sid ? sid : "");
    return host_set(m, value, err);
}

TP_API char *
tp_hub_get_shared(tp_hub *hub, const char *sid)
{
    tp__model *m = shared_model(hub, sid);
    return m ? dump_value(m) : NULL;
}

TP_API int64_t
tp_hub_shared_rev(tp_hub *hub, const char *sid)
{
    tp__model *m = shared_model(hub, sid);
    return m ? m->rev : TP_ENOTFOUND;
}
