/*
 * Presence (PROTOCOL.md): who is on a model and where their cursor is.
 *
 * A connection's state on a model is kept here, never in the model: it has
 * no rev, no history, nothing in the store, and it goes with the connection.
 * What a viewer is sent is encoded once per delivery and the same buffer is
 * queued for every viewer (DESIGN.md, "Performance shape"). With a tick
 * (hub->tick_ms > 0) a state waits for the next tick that comes at least
 * tick_ms after the connection's last delivery on that model, and a newer
 * state replaces a waiting one: each viewer gets at most one `presence` per
 * connection and model per tick_ms, the latest state winning.
 */
#include <string.h>

#include "core/conn_int.h"
#include "core/hub.h"
#include "core/model.h"
#include "core/presence.h"
#include "core/session.h"
#include "util/alloc.h"
#include "util/error.h"

static void
send_one(tp_conn *c, void *arg)
{
    tp__conn_send_plain(c, arg);
}

/* ---- Entries ---- */

static tp__presence *
find(const tp_conn *c, const tp__model *m)
{
    for (size_t i = 0; i < c->presence.len; i++) {
        tp__presence *p = c->presence.items[i];
        if (p->model == m)
            return p;
    }
    return NULL;
}

static void
undirty(tp__presence *p)
{
    if (!p->pending)
        return;
    tp_hub *hub = p->model->hub;
    tp__presence *moved = tp__vec_swap_remove(&hub->presence_dirty, p->didx);
    if (moved != NULL)
        moved->didx = p->didx;
    p->pending = 0;
}

/* Takes an entry off every list and frees it. */
static void
entry_free(tp__presence *p)
{
    undirty(p);
    tp__presence *moved = tp__vec_swap_remove(&p->model->presence, p->midx);
    if (moved != NULL)
        moved->midx = p->midx;
    if (p->conn != NULL) {
        moved = tp__vec_swap_remove(&p->conn->presence, p->cidx);
        if (moved != NULL)
            moved->cidx = p->cidx;
    }
    tp__buf_unref(p->state);
    tp__free(p->gone_tenant);
    tp__free(p);
}

/* The `presence` message of a connection's state on a model (state NULL:
 * `"state":null`), built from the model's address encoded once. */
static tp__buf *
encode(const tp__model *m, const char *conn_id, const tp__buf *state)
{
    tp__sb sb;
    tp__sb_init(&sb, 64 + m->addr_len + (state != NULL ? state->len : 4));
    tp__sb_puts(&sb, "{\"type\":\"presence\",");
    tp__sb_append(&sb, m->addr, m->addr_len);
    tp__sb_puts(&sb, ",\"conn\":\"");
    tp__sb_puts(&sb, conn_id);
    tp__sb_puts(&sb, "\",\"state\":");
    if (state != NULL)
        tp__sb_append(&sb, state->data, state->len);
    else
        tp__sb_puts(&sb, "null");
    tp__sb_puts(&sb, "}");
    return tp__sb_finish(&sb);
}

static void
tell_host(const tp__presence *p, const tp__buf *state)
{
    const tp__model *m = p->model;
    tp_hub *hub = m->hub;
    if (hub->presence_cb == NULL)
        return;
    tp_presence_event ev;
    ev.tenant = m->shared ? NULL : m->owner->tenant;
    ev.id = m->id;
    ev.conn = p->id;
    ev.conn_tenant = p->conn != NULL ? p->conn->session->tenant : p->gone_tenant;
    ev.state = state != NULL ? state->data : NULL;
    hub->presence_cb(&ev, hub->presence_user);
}

/* Sends an entry's latest state to every viewer, once encoded. A state of
 * NULL (the client left) is sent only to viewers that were shown one, and
 * the entry goes. */
static void
deliver(tp__presence *p)
{
    tp_conn *c = p->conn; /* NULL: it left, and its leave waited for the tick */
    tp__model *m = p->model;
    undirty(p);
    if (p->state != NULL || p->shown) {
        tp__buf *msg = encode(m, p->id, p->state);
        /* Out of memory: the viewers miss this state. Each of them would
         * have to be closed to stay right; presence is advisory and the
         * next state replaces it, so it is dropped instead. */
        if (msg != NULL)
            tp__each_viewer(m, c, send_one, msg);
        tp__buf_unref(msg);
        tell_host(p, p->state);
    }
    p->sent_at = tp__hub_now(m->hub);
    p->shown = p->state != NULL;
    if (p->state == NULL)
        entry_free(p);
}

/* ---- Setting ---- */

/* What a `presence` message holds around its model's address and its state:
 * {"type":"presence",  ,"conn":"c<16 hex>","state":  } */
#define PRESENCE_ENVELOPE 56

int
tp__presence_set(tp_conn *c, tp__model *m, const json_t *state, tp_error *err)
{
    tp_hub *hub = c->hub;
    tp__buf *text = NULL;
    if (state != NULL) {
        /* PROTOCOL.md: a state is at most 4 KiB, measured as the compact
         * JSON the viewers get; less when max_message_bytes is so small that
         * the `presence` message around it would not fit (every message the
         * server sends does). The size is asked first: nothing is allocated
         * for a state over it. */
        size_t limit = TP__PRESENCE_MAX, around = PRESENCE_ENVELOPE + m->addr_len;
        size_t max = hub->limits.max_message_bytes;
        if (max < limit + around)
            limit = max > around ? max - around : 0;
        size_t n = json_dumpb(state, NULL, 0, JSON_COMPACT);
        if (n > limit)
            return tp__error_set(err, TP_ETOOLARGE, "state: %zu bytes, over the limit of %zu", n,
                                 limit);
        text = tp__buf_new(n);
        if (text == NULL)
            return tp__error_set(err, TP_ENOMEM, "out of memory");
        text->len = json_dumpb(state, text->data, n, JSON_COMPACT);
        text->data[text->len] = '\0';
    }
    tp__presence *p = find(c, m);
    if (p == NULL) {
        if (text == NULL)
            return 0; /* leaving a model it had no state on: nothing to tell */
        /* Its leave of this model (access lost, then back) still waiting for
         * the tick: the new state replaces it, or viewers would drop it. */
        for (size_t i = 0; i < m->presence.len; i++) {
            tp__presence *g = m->presence.items[i];
            if (g->conn == NULL && strcmp(g->id, c->id) == 0) {
                entry_free(g);
                break;
            }
        }
        p = tp__calloc(1, sizeof *p);
        if (p == NULL || tp__vec_reserve(&m->presence, 1) != 0 ||
            tp__vec_reserve(&c->presence, 1) != 0) {
            tp__free(p);
            tp__buf_unref(text);
            return tp__error_set(err, TP_ENOMEM, "out of memory");
        }
        p->conn = c;
        p->model = m;
        memcpy(p->id, c->id, sizeof p->id);
        p->sent_at = INT64_MIN;
        p->midx = m->presence.len;
        tp__vec_push(&m->presence, p); /* reserved */
        p->cidx = c->presence.len;
        tp__vec_push(&c->presence, p); /* reserved */
    }
    tp__buf_unref(p->state);
    p->state = text;
    if (hub->tick_ms == 0) {
        deliver(p); /* no tick: nothing to coalesce with */
        return 0;
    }
    if (!p->pending) {
        if (tp__vec_push(&hub->presence_dirty, p) != 0) {
            deliver(p); /* cannot wait for the tick: better early than never */
            return 0;
        }
        p->didx = hub->presence_dirty.len - 1;
        p->pending = 1;
    }
    return 0;
}

void
tp__presence_tick(tp_hub *hub)
{
    if (hub->presence_dirty.len == 0)
        return;
    int64_t now = tp__hub_now(hub);
    /* Delivering takes the entry off the list (a swap from the end), so
     * walking down from the end visits each entry once. */
    for (size_t i = hub->presence_dirty.len; i-- > 0;) {
        if (i >= hub->presence_dirty.len)
            continue;
        tp__presence *p = hub->presence_dirty.items[i];
        /* At most one delivery per tick_ms: a state set less than tick_ms
         * after the last one waits for a later tick. */
        if (p->sent_at == INT64_MIN || now - p->sent_at >= (int64_t)hub->tick_ms)
            deliver(p);
    }
}

/* ---- Snapshots ---- */

void
tp__presence_send_snapshot(tp_conn *c, tp__model *m)
{
    size_t peers = 0;
    for (size_t i = 0; i < m->presence.len; i++) {
        const tp__presence *p = m->presence.items[i];
        peers += p->conn != c && p->state != NULL && p->conn->state != TP__CONN_CLOSING;
    }
    if (peers == 0)
        return;
    /* One message of at most max_message_bytes: the peers that do not fit
     * follow as `presence` messages, which a client adds to the snapshot's. */
    size_t room = c->hub->limits.max_message_bytes;
    tp__sb sb;
    tp__sb_init(&sb, 64 + m->addr_len + peers * 64);
    tp__sb_puts(&sb, "{\"type\":\"presence_snapshot\",");
    tp__sb_append(&sb, m->addr, m->addr_len);
    tp__sb_puts(&sb, ",\"peers\":[");
    size_t used = sb.buf != NULL ? sb.buf->len : 0, n = 0;
    tp__vec rest = {0};
    int failed = 0;
    for (size_t i = 0; i < m->presence.len; i++) {
        tp__presence *p = m->presence.items[i];
        if (p->conn == c || p->state == NULL || p->conn->state == TP__CONN_CLOSING)
            continue;
        size_t len = 32 + strlen(p->conn->id) + p->state->len;
        if (used + len + 2 > room) {
            failed |= tp__vec_push(&rest, p) != 0;
            continue;
        }
        tp__sb_puts(&sb, n++ > 0 ? ",{\"conn\":\"" : "{\"conn\":\"");
        tp__sb_puts(&sb, p->conn->id);
        tp__sb_puts(&sb, "\",\"state\":");
        tp__sb_append(&sb, p->state->data, p->state->len);
        tp__sb_puts(&sb, "}");
        used += len;
    }
    tp__sb_puts(&sb, "]}");
    tp__buf *b = tp__sb_finish(&sb);
    /* Out of memory: NULL closes the connection (it resumes), rather than
     * leave it with a wrong picture. A snapshot that none fit in (a tiny
     * max_message_bytes) is not sent: the messages say it all. */
    if (failed || n > 0)
        tp__conn_send_plain(c, failed ? NULL : b);
    tp__buf_unref(b);
    for (size_t i = 0; !failed && i < rest.len; i++) {
        tp__presence *p = rest.items[i];
        tp__buf *one = encode(m, p->id, p->state);
        tp__conn_send_plain(c, one);
        tp__buf_unref(one);
    }
    tp__vec_free(&rest);
}

/* ---- Leaving ---- */

/*
 * A connection's state on a model goes with it. Its viewers hear `state:
 * null` at the next tick, or at once when its last delivery is at least
 * tick_ms old: PROTOCOL.md's one message per connection and model per
 * tick_ms holds for leaves too. A leave that waits keeps the entry, off the
 * connection (which may be freed), with the connection's id and a copy of
 * its tenant key for the host's callback.
 */
static void
leave(tp__presence *p)
{
    tp_hub *hub = p->model->hub;
    tp_conn *c = p->conn;
    int64_t now = tp__hub_now(hub);
    if (p->shown && !hub->freeing && hub->tick_ms > 0 && p->sent_at != INT64_MIN &&
        now - p->sent_at < (int64_t)hub->tick_ms &&
        (p->gone_tenant = tp__strdup(c->session->tenant)) != NULL &&
        (p->pending || tp__vec_push(&hub->presence_dirty, p) == 0)) {
        if (!p->pending) {
            p->didx = hub->presence_dirty.len - 1;
            p->pending = 1;
        }
        tp__presence *moved = tp__vec_swap_remove(&c->presence, p->cidx);
        if (moved != NULL)
            moved->cidx = p->cidx;
        p->conn = NULL;
        tp__buf_unref(p->state);
        p->state = NULL;
        return;
    }
    if (p->shown && !hub->freeing) {
        tp__buf *msg = encode(p->model, p->id, NULL);
        if (msg != NULL)
            tp__each_viewer(p->model, c, send_one, msg);
        tp__buf_unref(msg);
        tell_host(p, NULL);
    }
    entry_free(p);
}

void
tp__presence_conn_gone(tp_conn *c)
{
    while (c->presence.len > 0)
        leave(c->presence.items[c->presence.len - 1]);
    tp__vec_free(&c->presence);
}

void
tp__presence_session_leave(tp_session *s, tp__model *m)
{
    for (size_t i = 0; i < s->conns.len; i++) {
        tp__presence *p = find(s->conns.items[i], m);
        if (p != NULL)
            leave(p);
    }
}

void
tp__presence_model_gone(tp__model *m)
{
    /* Its viewers are told `removed` (or are going): no `state: null`. */
    while (m->presence.len > 0)
        entry_free(m->presence.items[m->presence.len - 1]);
    tp__vec_free(&m->presence);
}

void
tp__presence_hub_free(tp_hub *hub)
{
    tp__vec_free(&hub->presence_dirty);
}

/* ---- The host's view ---- */

TP_API void
tp_hub_on_presence(tp_hub *hub, tp_presence_fn fn, void *user)
{
    hub->presence_cb = fn;
    hub->presence_user = user;
}

TP_API char *
tp_hub_presence(tp_hub *hub, const char *tenant, const char *id)
{
    if (hub == NULL || id == NULL)
        return NULL;
    tp__model *m = NULL;
    if (tenant == NULL) {
        m = tp__map_get(&hub->shared, id);
    } else {
        tp_session *s = tp__map_get(&hub->tenants, tenant);
        m = s != NULL ? tp__map_get(&s->models, id) : NULL;
    }
    if (m == NULL)
        return NULL;
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < m->presence.len; i++) {
        const tp__presence *p = m->presence.items[i];
        if (p->state == NULL)
            continue;
        json_t *st = json_loadb(p->state->data, p->state->len, 0, NULL);
        json_t *e = st == NULL ? NULL
                               : json_pack("{s:s,s:s,s:o}", "conn", p->id, "tenant",
                                           p->conn->session->tenant, "state", st);
        if (e == NULL || json_array_append_new(arr, e) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    /* Like tp_session_get: jansson's allocator is the library's. */
    char *out = arr != NULL ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return out;
}
