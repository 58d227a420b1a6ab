/*
 * A connection: PROTOCOL.md without sockets. The transport feeds it the
 * text of each frame received; everything the client must get lands in the
 * outbox (outbox.c). Each branch names the rule of PROTOCOL.md it follows.
 */
#include <stdio.h>
#include <string.h>

#include "core/conn_int.h"
#include "core/envelope.h"
#include "core/hub.h"
#include "core/merge.h"
#include "core/model.h"
#include "core/notes.h"
#include "core/order_int.h"
#include "core/patch.h"
#include "core/presence.h"
#include "core/schema.h"
#include "core/session.h"
#include "core/wire.h"
#include "util/alloc.h"
#include "util/error.h"
#include "util/prp.h"

/* A member of a message's envelope (envelope.h). */
/* apply_write's code for a write queued in the shared order (order.c). */
#define TP__WRITE_QUEUED 1

#define MEMBER(env, name) (&(env)->m[TP__M_##name])

/* ---- Encoding the messages meant for one connection ---- */

/* An error; has_ref says whether the refused message had a usable ref. */
static tp__buf *
msg_error(int has_ref, json_int_t ref, int code, const char *message)
{
    return tp__wire_error(has_ref, ref, tp_error_name(code), message);
}

/* Counts and logs a refused message (every `error` the hub answers with). */
static void
note_refused(tp_conn *c, int has_ref, json_int_t ref, int code, const char *message)
{
    if (code <= TP_EBADREQUEST && code >= TP_EINTERNAL)
        c->hub->refused[-code]++;
    if (tp__log_on(&c->hub->log, TP_LOG_INFO)) {
        char refs[32] = "";
        if (has_ref)
            snprintf(refs, sizeof refs, " ref=%lld", (long long)ref);
        char qt[TP__LOG_VALUE_MAX];
        tp__log(&c->hub->log, TP_LOG_INFO, "refused tenant=%s conn=%s%s code=%s: %s",
                tp__log_value(c->session->tenant, qt, sizeof qt), c->id, refs, tp_error_name(code),
                message);
    }
}

static void
send_error(tp_conn *c, int has_ref, json_int_t ref, int code, const char *message)
{
    /* Messages built here quote what the client sent, cut to fit. */
    char repaired[256];
    snprintf(repaired, sizeof repaired, "%s", message);
    tp__utf8_repair(repaired);
    note_refused(c, has_ref, ref, code, repaired);
    tp__buf *b = msg_error(has_ref, ref, code, repaired);
    /* An error that is not a recorded outcome reveals no stored state: it
     * waits for nothing but what is before it (so writes refused while the
     * store fails are answered at once). */
    tp__conn_send_plain(c, b);
    tp__buf_unref(b);
}

void
tp__conn_send_snapshot(tp_conn *c, tp__model *m, tp_access access)
{
    tp__conn_send(c, tp__model_snapshot(m, access));
    /* A shared model's snapshot is kept for its many subscribers; a private
     * one is seen by its tenant's few connections, and keeping it would
     * cost every idle connection its size. */
    if (!m->shared) {
        int w = access == TP_WRITE;
        tp__buf_unref(m->snap[w]);
        m->snap[w] = NULL;
    }
    tp__presence_send_snapshot(c, m); /* PROTOCOL.md: with a model's snapshot */
}

/* Every model the tenant can see, unless marked with `skip` (resume). */
static void
send_snapshots(tp_conn *c, uint64_t skip)
{
    tp_session *s = c->session;
    void *v;
    for (size_t it = 0; c->state != TP__CONN_CLOSING && tp__map_next(&s->models, &it, NULL, &v);) {
        tp__model *m = v;
        if (skip == 0 || m->mark != skip)
            tp__conn_send_snapshot(c, m, TP_WRITE);
    }
    for (size_t it = 0; c->state != TP__CONN_CLOSING && tp__map_next(&s->subs, &it, NULL, &v);) {
        tp__sub *sub = v;
        if (skip == 0 || sub->model->mark != skip)
            tp__conn_send_snapshot(c, sub->model, sub->access);
    }
}

/* Sends a message built for this connection alone. */
static void
send_built(tp_conn *c, tp__buf *b)
{
    tp__conn_send(c, b);
    tp__buf_unref(b);
}

/* The same, for a message that reveals no state (tp__conn_send_plain). */
static void
send_plain(tp_conn *c, tp__buf *b)
{
    tp__conn_send_plain(c, b);
    tp__buf_unref(b);
}

/* ---- Life cycle ---- */

TP_API tp_conn *
tp_conn_open(tp_hub *hub, const char *tenant, int flags, tp_error *err)
{
    tp_session *s = tp__hub_session(hub, tenant, 0);
    if (s == NULL) {
        if (!tp__valid_key(tenant))
            tp__error_set(err, TP_EARG, "tenant: must be 1 to %d bytes of UTF-8", TP__KEY_MAX);
        else if (hub->store != NULL)
            tp__error_set(err, TP_EINTERNAL, "tenant: cannot be loaded from the store");
        else
            tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    tp_conn *c = tp__calloc(1, sizeof *c);
    if (c == NULL || tp__vec_push(&s->conns, c) != 0) {
        tp__free(c);
        tp__session_release(s);
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    c->hub = hub;
    c->session = s;
    c->idx = s->conns.len - 1;
    if (hub->order != NULL && s->conns.len == 1)
        tp__order_session_seen(s, 1); /* its private models are followed again */
    c->num = ++hub->next_conn;
    if (hub->store != NULL && c->num > hub->conn_bound) {
        /* Connection ids stay unique across restarts (PROTOCOL.md: `conn`
         * is unique in the hub; old patches name theirs as origin): the
         * store keeps a bound, raised a block at a time, and committed
         * before the hello that names this id leaves. */
        hub->conn_bound = c->num + 1023;
        tp__journal_meta(hub);
    }
    /* Issue 11: the id is a keyed permutation of the number, in 16 hex
     * digits: unique as the number is, and telling nothing of it. */
    c->idnum = tp__prp64(hub->conn_key, c->num);
    /* "c%016llx", without snprintf: thousands of clients may reconnect at once. */
    static const char hex[] = "0123456789abcdef";
    c->id[0] = 'c';
    for (int i = 0; i < 16; i++)
        c->id[1 + i] = hex[(c->idnum >> (60 - 4 * i)) & 0xF];
    c->id[17] = '\0';
    c->tokens = hub->limits.writes_per_second;
    c->tokens_at = tp__hub_now(hub);
    c->state = (flags & TP_CONN_RESUME) ? TP__CONN_AWAIT_RESUME : TP__CONN_LIVE;
    c->syncing = 1;

    /* Built from pieces encoded once (the tenant's JSON string), since
     * thousands of clients may reconnect at once. */
    send_built(c, tp__wire_hello(s->tenant_json, c->id, hub->tick_ms,
                                 (int64_t)hub->limits.max_message_bytes));
    /* PROTOCOL.md: without resume=1, snapshots right after hello, then synced. */
    if (c->state == TP__CONN_LIVE) {
        send_snapshots(c, 0);
        send_built(c, tp__wire_synced());
    }
    c->syncing = 0;
    if (hub->observer != NULL)
        hub->observer->conn_event(hub->observer->user, s->tenant, c->id, 1);
    tp__error_clear(err);
    return c;
}

TP_API void
tp_conn_close(tp_conn *c)
{
    if (c == NULL)
        return;
    tp_session *s = c->session;
    if (s->hub->observer != NULL && !s->hub->freeing)
        s->hub->observer->conn_event(s->hub->observer->user, s->tenant, c->id, 0);
    tp__presence_conn_gone(c); /* its viewers hear it leave */
    tp_conn *moved = tp__vec_swap_remove(&s->conns, c->idx);
    if (moved != NULL)
        moved->idx = c->idx;
    tp__conn_unready(c);
    tp__conn_outbox_clear(c);
    tp__journal_conn_gone(c);
    if (s->hub->order != NULL) {
        tp__order_conn_gone(c);
        if (s->conns.len == 0 && !s->hub->freeing)
            tp__order_session_seen(s, 0);
    }
    if (c->client != NULL)
        c->client->conns--;
    tp__free(c->out);
    tp__free(c->out_tag);
    tp__buf_unref(c->taken);
    tp__sb_free(&c->frame);
    tp__free(c);
    if (s->conns.len == 0)
        s->idle_since = tp__hub_now(s->hub);
    if (!s->hub->freeing)
        tp__session_release(s);
}

TP_API const char *
tp_conn_id(const tp_conn *c)
{
    return c->id;
}

TP_API const char *
tp_conn_tenant(const tp_conn *c)
{
    return c->session->tenant;
}

/* ---- Exactly once: client records ---- */

/* The characters (code points) of a UTF-8 string: jansson has checked it. */
static size_t
utf8_chars(const char *s, size_t n)
{
    size_t chars = 0;
    for (size_t i = 0; i < n; i++)
        chars += ((unsigned char)s[i] & 0xC0) != 0x80;
    return chars;
}

/* Forgets a client record (its stored records go with the next commit). */
static void
client_drop(tp_session *s, tp__client *cl)
{
    tp__journal_client_gone(cl);
    tp__map_del(&s->clients, cl->id);
    s->client_bytes -= cl->bytes;
    tp__client_free(cl);
}

/* The least recently used record no live connection holds, but `keep`. */
static tp__client *
client_oldest(tp_session *s, const tp__client *keep)
{
    tp__client *oldest = NULL;
    void *v;
    for (size_t it = 0; tp__map_next(&s->clients, &it, NULL, &v);) {
        tp__client *o = v;
        if (o != keep && o->conns == 0 && (oldest == NULL || o->used < oldest->used))
            oldest = o;
    }
    return oldest;
}

/* Takes a record's oldest outcome off its ring (its seq stays: the window
 * then no longer covers every ref it recorded). */
static void
outcome_drop_oldest(tp_session *s, tp__client *cl)
{
    tp__buf *msg = cl->outcomes[cl->start].msg;
    size_t cost = TP__OUTCOME_COST(msg->len);
    cl->bytes -= cost;
    s->client_bytes -= cost;
    tp__buf_unref(msg);
    cl->outcomes[cl->start].msg = NULL;
    cl->start = (cl->start + 1) % TP__OUTCOMES;
    cl->len--;
}

void
tp__client_trim(tp_session *s, tp__client *keep)
{
    /* Issue 11: a tenant cycling client ids must not grow what the store
     * keeps (and what loading the tenant reads back) without bound: the
     * bytes are capped, not just the records. */
    const size_t cap = s->hub->limits.client_record_bytes;
    tp__client *o;
    while (s->client_bytes > cap && (o = client_oldest(s, keep)) != NULL)
        client_drop(s, o);
    if (keep == NULL || s->client_bytes <= cap || keep->len <= 1)
        return;
    tp__journal_client(keep);
    while (s->client_bytes > cap && keep->len > 1)
        outcome_drop_oldest(s, keep);
}

/* Names the connection's client (PROTOCOL.md: in `resume` or a first `ping`). */
static int
set_client(tp_conn *c, const tp__jv *jid, tp_error *err)
{
    if (jid->kind == TP__JV_ABSENT)
        return 0;
    if (jid->kind != TP__JV_STRING || jid->len == 0 || jid->len > 4 * TP__CLIENT_ID_MAX ||
        utf8_chars(jid->str, jid->len) > TP__CLIENT_ID_MAX || strlen(jid->str) != jid->len)
        return tp__error_set(err, TP_EBADREQUEST, "client: expected a string of 1 to %d characters",
                             TP__CLIENT_ID_MAX);
    const char *id = jid->str;
    if (c->client != NULL) {
        if (strcmp(c->client->id, id) == 0)
            return 0;
        return tp__error_set(err, TP_EBADREQUEST,
                             "client: this connection already named itself \"%s\"", c->client->id);
    }
    tp_session *s = c->session;
    tp__client *cl = tp__map_get(&s->clients, id);
    if (cl == NULL) {
        /* Bounded per tenant: the least recently used record that no live
         * connection holds makes room. */
        if (s->clients.len >= s->hub->limits.client_records) {
            tp__client *oldest = client_oldest(s, NULL);
            if (oldest != NULL)
                client_drop(s, oldest);
        }
        cl = tp__calloc(1, sizeof *cl);
        if (cl == NULL)
            return tp__error_set(err, TP_ENOMEM, "out of memory");
        memcpy(cl->id, id, jid->len + 1);
        cl->session = s;
        cl->highest = INT64_MIN;
        cl->bytes = TP__CLIENT_COST(jid->len);
        if (tp__map_put(&s->clients, cl->id, cl) != 0) {
            tp__free(cl);
            return tp__error_set(err, TP_ENOMEM, "out of memory");
        }
        s->client_bytes += cl->bytes;
        tp__client_trim(s, cl);
    }
    cl->conns++;
    cl->used = ++s->client_uses;
    c->client = cl;
    /* A cluster node asks the log what the client's writes became on any
     * node (its writes wait for the answer). */
    if (s->hub->order != NULL)
        tp__order_client_named(cl);
    return 0;
}

static tp__buf *
outcome_find(const tp__client *cl, json_int_t ref)
{
    for (unsigned i = 0; i < cl->len; i++) {
        unsigned k = (cl->start + i) % TP__OUTCOMES;
        if (cl->outcomes[k].ref == ref)
            return cl->outcomes[k].msg;
    }
    return NULL;
}

/* Whether a ref at or below the highest was never recorded: true while the
 * remembered outcomes reach back past it. */
static int
outcome_window_covers(const tp__client *cl, json_int_t ref)
{
    if (cl->len == cl->seq)
        return 1; /* every recorded outcome is still here */
    for (unsigned i = 0; i < cl->len; i++)
        if (cl->outcomes[(cl->start + i) % TP__OUTCOMES].ref < ref)
            return 1;
    return 0;
}

static void
outcome_record(tp__client *cl, json_int_t ref, tp__buf *msg)
{
    if (msg == NULL)
        return;
    tp__journal_client(cl); /* before: the record to go back to */
    if (ref > cl->highest)
        cl->highest = ref;
    tp_session *s = cl->session;
    if (cl->len == TP__OUTCOMES)
        outcome_drop_oldest(s, cl);
    unsigned k = (cl->start + cl->len++) % TP__OUTCOMES;
    cl->outcomes[k].ref = ref;
    cl->outcomes[k].msg = tp__buf_ref(msg);
    cl->seq++;
    cl->bytes += TP__OUTCOME_COST(msg->len);
    s->client_bytes += TP__OUTCOME_COST(msg->len);
    tp__client_trim(s, cl);
}

int
tp__client_seen(const tp__client *cl, json_int_t ref, tp__buf **was)
{
    *was = NULL;
    if (ref > cl->highest)
        return 0;
    /* PROTOCOL.md, exactly once: a ref not above the highest is answered
     * with its original outcome and never applied twice. */
    if ((*was = outcome_find(cl, ref)) != NULL)
        return 1;
    /* Within the remembered window and not recorded: never applied
     * (refused with rate_limited or internal), so it is new. */
    return outcome_window_covers(cl, ref) ? 0 : -1;
}

void
tp__client_merge(tp__client *cl, const tp__order_outcomes *log)
{
    /* What the log forgot counts as recorded and dropped: a ref below the
     * oldest kept is then a duplicate, as it would be on its own node. */
    cl->seq += log->forgotten;
    for (size_t i = 0; i < log->n; i++) {
        if (outcome_find(cl, log->items[i].ref) != NULL)
            continue;
        tp__buf *b = tp__buf_copy(log->items[i].bytes, log->items[i].len);
        outcome_record(cl, log->items[i].ref, b);
        tp__buf_unref(b);
    }
    if (log->highest > cl->highest && log->n > 0)
        cl->highest = log->highest;
}

/* ---- Writes ---- */

/*
 * Whether the tenant's writes may check patterns now: its debt of pattern
 * steps, drained at TP__PATTERN_SHARE_STEPS per second of the hub's clock,
 * is at most that much (schema.h).
 */
static int
pattern_share_left(tp_hub *hub, tp_session *s)
{
    int64_t now = tp__hub_now(hub);
    if (s->pattern_debt > 0 && now > s->pattern_at)
        s->pattern_debt -= (double)(now - s->pattern_at) * TP__PATTERN_SHARE_STEPS / 1000.0;
    s->pattern_at = now;
    if (s->pattern_debt < 0)
        s->pattern_debt = 0;
    return s->pattern_debt <= TP__PATTERN_SHARE_STEPS;
}

static int
take_token(tp_conn *c)
{
    const double rate = c->hub->limits.writes_per_second;
    int64_t now = tp__hub_now(c->hub);
    if (now > c->tokens_at) {
        c->tokens += (double)(now - c->tokens_at) * rate / 1000.0;
        if (c->tokens > rate)
            c->tokens = rate;
    }
    c->tokens_at = now;
    if (c->tokens < 1.0)
        return 0;
    c->tokens -= 1.0;
    return 1;
}

/* Finds the model a message names; fills err as PROTOCOL.md's echo rules say. */
static tp__model *
find_model(tp_conn *c, const tp__jv *jscope, const tp__jv *jid, const char *where, int *shared,
           tp_access *access, tp_error *err)
{
    const char *scope = jscope->kind == TP__JV_STRING ? jscope->str : NULL;
    if (scope == NULL || (strcmp(scope, "private") != 0 && strcmp(scope, "shared") != 0)) {
        tp__error_set(err, TP_EBADREQUEST, "%sscope: expected \"private\" or \"shared\"", where);
        return NULL;
    }
    if (jid->kind != TP__JV_STRING || jid->len == 0) {
        tp__error_set(err, TP_EBADREQUEST, "%sid: expected a non-empty string", where);
        return NULL;
    }
    const char *id = jid->str;
    *shared = scope[0] == 's';
    if (jid->len > TP__KEY_MAX || strlen(id) != jid->len) {
        tp__error_set(err, TP_ENOTFOUND, "%sid: no model \"%.64s\" in scope \"%s\"", where, id,
                      scope);
        return NULL;
    }
    if (!*shared) {
        tp__model *m = tp__map_get(&c->session->models, id);
        *access = TP_WRITE;
        if (m == NULL)
            tp__error_set(err, TP_ENOTFOUND, "%sid: no model \"%s\" in scope \"private\"", where,
                          id);
        return m;
    }
    /* A tenant cannot tell a model it may not see from one that does not
     * exist: both are not_found. */
    tp__sub *sub = tp__session_sub(c->session, id);
    if (sub == NULL) {
        tp__error_set(err, TP_ENOTFOUND, "%sid: no model \"%s\" in scope \"shared\"", where, id);
        return NULL;
    }
    *access = sub->access;
    return sub->model;
}

static int
parse_ts(const tp__jv *ts, tp__stamp *st, tp_error *err)
{
    const json_t *jts = ts->kind == TP__JV_OBJECT ? ts->json : NULL;
    const json_t *wall = json_object_get(jts, "wall");
    const json_t *count = json_object_get(jts, "count");
    /* The count is bounded so that the hub's clock, which counts on from
     * every ts it accepts, can never overflow. */
    if (!json_is_object(jts) || !json_is_integer(wall) || !json_is_integer(count) ||
        json_integer_value(wall) < 0 || json_integer_value(count) < 0 ||
        json_integer_value(count) > TP__TS_COUNT_MAX)
        return tp__error_set(err, TP_EBADREQUEST,
                             "ts: expected {\"wall\": milliseconds >= 0, \"count\": 0 to %d}",
                             TP__TS_COUNT_MAX);
    st->wall = json_integer_value(wall);
    st->count = json_integer_value(count);
    return 0;
}

/* The error answering a refused write, counted and logged. */
static tp__buf *
refuse_write(tp_conn *c, json_int_t ref, int code, const char *message)
{
    note_refused(c, 1, ref, code, message);
    return msg_error(1, ref, code, message);
}

/* Applies a write; returns the ack or error to send (NULL: out of memory)
 * and sets *code to the outcome. */
static tp__buf *
apply_write(tp_conn *c, const tp__env *msg, json_int_t ref, int *code)
{
    tp_error err = {0, ""};
    int shared = 0;
    tp_access access = TP_READ;
    const tp__jv *jpatch = MEMBER(msg, patch);
    const json_t *patch = jpatch->kind == TP__JV_OBJECT ? jpatch->json : NULL;
    const tp__jv *jts = MEMBER(msg, ts);
    int has_ts = jts->kind != TP__JV_ABSENT;
    tp__stamp stamp = {0, 0, c->session->tenant, c->idnum};
    tp__model *m = find_model(c, MEMBER(msg, scope), MEMBER(msg, id), "", &shared, &access, &err);
    if (m != NULL && patch == NULL)
        tp__error_set(&err, TP_EBADREQUEST, "patch: expected an object");
    else if (m != NULL && has_ts && parse_ts(jts, &stamp, &err) != 0)
        m = NULL;
    else if (m != NULL && access != TP_WRITE)
        tp__error_set(&err, TP_EFORBIDDEN, "id: shared model \"%s\" is read-only for this tenant",
                      m->id);
    if (err.code != 0) {
        *code = err.code;
        return refuse_write(c, ref, err.code, err.message);
    }
    /* PROTOCOL.md: a pending host change of the model is published before
     * any other patch of it, so revs stay in order. */
    if (tp__publish_pending(m) == TP_ENOMEM) {
        *code = TP_EINTERNAL;
        return refuse_write(c, ref, TP_EINTERNAL, "out of memory");
    }
    if (m->kind == TP__LWW_MAP) {
        /* A stamp outlives the session (which may be evicted): it names the
         * tenant with a copy the hub keeps. */
        if (c->session->iname == NULL)
            c->session->iname = tp__hub_intern(c->hub, c->session->tenant);
        if (c->session->iname == NULL) {
            *code = TP_EINTERNAL;
            return refuse_write(c, ref, TP_EINTERNAL, "out of memory");
        }
        stamp.tenant = c->session->iname;
        if (has_ts)
            tp__stamp_observe(c->hub, &stamp);
        else
            tp__stamp_now(c->hub, &stamp); /* stamped on arrival */
    }
    if (m->ord != NULL) {
        /* The shared order: merged and applied in the model's turn, acked
         * by tp__conn_write_done once the log has it. */
        int rc = tp__order_write(m, c, patch, &stamp, ref);
        if (rc == TP_ERATELIMITED) {
            *code = rc;
            return refuse_write(c, ref, rc,
                                "ref: too many writes wait for the shared log, resend later");
        }
        if (rc != TP_OK) {
            *code = TP_EINTERNAL;
            return refuse_write(c, ref, TP_EINTERNAL, "out of memory");
        }
        *code = TP__WRITE_QUEUED;
        return NULL;
    }
    tp__buf *ack = tp__buf_new(TP__WIRE_ACK_ROOM(m->addr_len));
    if (ack == NULL) {
        *code = TP_EINTERNAL;
        return refuse_write(c, ref, TP_EINTERNAL, "out of memory");
    }
    tp__change ch = {0};
    int64_t from = m->rev;
    /* One pattern budget for the whole write, whatever its members; the
     * steps it took are the tenant's debt. */
    tp__schema_budget_begin(m->schema);
    int rc = tp__merge_compute(m, patch, &stamp, c, &ch, &err);
    if (rc == 0)
        rc = tp__model_commit(m, &ch, c, shared ? NULL : c, &err);
    uint64_t pattern_steps = tp__schema_budget_end(m->schema);
    if (pattern_steps > 0) {
        (void)pattern_share_left(c->hub, c->session);
        c->session->pattern_debt += (double)pattern_steps;
    }
    tp__change_free(&ch);
    if (rc < 0) {
        tp__buf_unref(ack);
        *code = rc == TP_ENOMEM ? TP_EINTERNAL : rc;
        return refuse_write(c, ref, *code, err.message);
    }
    *code = TP_OK;
    c->hub->writes_accepted++;
    /* PROTOCOL.md: a private write's ack carries `from` when it changed the
     * model; a shared writer already got the patch; a write that changed
     * nothing is acked with the current rev and no `from`. */
    return tp__wire_ack(ack, ref, m->addr, m->addr_len, m->rev, rc > 0 && !shared ? from : -1);
}

void
tp__conn_write_done(tp_session *s, tp_conn *c, tp_conn *resent, const char *client, json_int_t ref,
                    tp__buf *out, int code, const char *message, int record)
{
    if (out == NULL) {
        code = TP_EINTERNAL;
        out = msg_error(1, ref, TP_EINTERNAL, "out of memory");
        if (out == NULL)
            return;
    }
    tp__client *cl = client != NULL ? tp__map_get(&s->clients, client) : NULL;
    if (c == NULL) {
        c = resent; /* the writer closed: the connection that sent it again gets it */
        resent = NULL;
    }
    if (code != TP_OK && c != NULL)
        note_refused(c, 1, ref, code, message != NULL ? message : "out of memory");
    else if (code != TP_OK && code <= TP_EBADREQUEST && code >= TP_EINTERNAL) {
        s->hub->refused[-code]++;
    }
    if (record && cl != NULL && code != TP_ERATELIMITED && code != TP_EINTERNAL)
        outcome_record(cl, ref, out);
    if (c != NULL)
        tp__conn_send(c, out);
    if (resent != NULL && resent != c)
        tp__conn_send(resent, out);
    tp__buf_unref(out);
}

static void
handle_write(tp_conn *c, const tp__env *msg)
{
    const tp__jv *jref = MEMBER(msg, ref);
    if (jref->kind != TP__JV_INTEGER) {
        send_error(c, 0, 0, TP_EBADREQUEST, "ref: required, an integer");
        return;
    }
    json_int_t ref = jref->num;
    tp__client *cl = c->client;
    /* A resend of a write still waiting for the shared log: its outcome
     * reaches the client when the log answers (tp__conn_write_done). */
    if (cl != NULL && c->hub->order != NULL && tp__order_resent(c, cl->id, ref))
        return;
    /* While a cluster node reads the client's outcomes from the log, the
     * check waits in the model's queue (order.c). */
    tp__buf *was;
    int seen = cl != NULL && !tp__order_client_loading(cl) ? tp__client_seen(cl, ref, &was) : 0;
    if (seen > 0) {
        tp__conn_send(c, was);
        return;
    }
    if (seen < 0) {
        send_error(c, 1, ref, TP_EDUPLICATE, TP__DUPLICATE_MESSAGE);
        return;
    }
    tp_error serr;
    if (tp__hub_writable(c->hub, &serr) != TP_OK) {
        /* The store fails: memory is ahead of it, and goes no further. */
        send_error(c, 1, ref, TP_EINTERNAL, serr.message);
        return;
    }
    if (!take_token(c)) {
        send_error(c, 1, ref, TP_ERATELIMITED,
                   "ref: writes per second over the limit, resend later");
        return;
    }
    if (!pattern_share_left(c->hub, c->session)) {
        send_error(c, 1, ref, TP_ERATELIMITED,
                   "ref: this tenant's writes used their share of pattern checking, resend later");
        return;
    }
    int code = TP_OK;
    tp__buf *out = apply_write(c, msg, ref, &code);
    if (code == TP__WRITE_QUEUED)
        return;
    /* Recorded before it is sent (sending may close the connection), and
     * recording cannot fail: an applied write always has its ack recorded.
     * rate_limited and internal outcomes are not recorded: the ref may be
     * sent again. */
    if (cl != NULL && code != TP_ERATELIMITED && code != TP_EINTERNAL)
        outcome_record(cl, ref, out);
    tp__conn_send(c, out);
    tp__buf_unref(out);
}

/* ---- Resume ---- */

static int
check_resume(const tp_conn *c, const tp__jv *jmodels, tp_error *err)
{
    if (jmodels->kind == TP__JV_ABSENT)
        return 0;
    if (jmodels->kind != TP__JV_ARRAY)
        return tp__error_set(err, TP_EBADREQUEST, "models: expected an array");
    const json_t *models = jmodels->json;
    /* Each entry may cost a snapshot: a client lists each model it holds
     * once, so more entries than the tenant can see (and a few it may have
     * lost since) is refused before any work. */
    size_t visible = c->session->models.len + c->session->subs.len;
    if (json_array_size(models) > visible + TP__RESUME_EXTRA)
        return tp__error_set(err, TP_EBADREQUEST,
                             "models: %zu entries, more than the %zu models this tenant can see "
                             "and %d more",
                             json_array_size(models), visible, TP__RESUME_EXTRA);
    size_t i;
    const json_t *e;
    json_array_foreach(models, i, e)
    {
        const char *scope = json_string_value(json_object_get(e, "scope"));
        const json_t *rev = json_object_get(e, "rev");
        if (!json_is_object(e))
            return tp__error_set(err, TP_EBADREQUEST, "models[%zu]: expected an object", i);
        if (scope == NULL || (strcmp(scope, "private") != 0 && strcmp(scope, "shared") != 0))
            return tp__error_set(err, TP_EBADREQUEST,
                                 "models[%zu].scope: expected \"private\" or \"shared\"", i);
        if (!json_is_string(json_object_get(e, "id")))
            return tp__error_set(err, TP_EBADREQUEST, "models[%zu].id: expected a string", i);
        if (!json_is_integer(rev) || json_integer_value(rev) < 0)
            return tp__error_set(err, TP_EBADREQUEST, "models[%zu].rev: expected an integer >= 0",
                                 i);
    }
    return 0;
}

/* What one resume has answered so far. gone: ids it listed that name no
 * model it can see, per scope, answered with one `removed` each however
 * often listed (keys borrowed from the message). patch_room: the bytes of
 * patches it may still send where a snapshot would be smaller. */
typedef struct resume_seen {
    tp__map gone[2];
    size_t patch_room;
} resume_seen;

/* The bytes of a model's kept patches from history index i on. */
static size_t
history_bytes_from(const tp__model *m, unsigned i)
{
    size_t n = 0;
    for (unsigned k = i; k < m->hist_len; k++)
        n += tp__model_history_at(m, k)->len;
    return n;
}

/* Answers one listed model: missed patches, a snapshot, or removed. A model
 * listed again in the same resume (the mark says so) is answered once, by
 * its first entry. */
static void
resume_one(tp_conn *c, const json_t *e, uint64_t mark, resume_seen *seen)
{
    tp_error err;
    int shared;
    tp_access access;
    tp__jv jscope, jid;
    tp__jv_from_json(&jscope, json_object_get(e, "scope"));
    tp__jv_from_json(&jid, json_object_get(e, "id"));
    tp__model *m = find_model(c, &jscope, &jid, "", &shared, &access, &err);
    if (m == NULL) {
        const char *id = json_string_value(json_object_get(e, "id"));
        tp__map *gone = &seen->gone[json_string_value(json_object_get(e, "scope"))[0] == 's'];
        if (tp__map_get(gone, id) != NULL)
            return;
        if (tp__map_put(gone, id, (void *)id) != 0) {
            tp__conn_send(c, NULL); /* out of memory: closed, the client resumes */
            return;
        }
        send_built(c, tp__wire_removed_id(jscope.str[0] == 's', jid.str, jid.len));
        return;
    }
    if (m->mark == mark)
        return;
    m->mark = mark;
    int64_t rev = json_integer_value(json_object_get(e, "rev"));
    /* The client may not know its access when it changed at or after its
     * rev: a snapshot tells it. */
    int access_known =
        (!shared || rev > tp__session_sub(c->session, m->id)->access_rev) && rev > m->reborn;
    if (rev == m->rev && access_known) {
        tp__presence_send_snapshot(c, m); /* PROTOCOL.md: after resume */
        return;
    }
    if (m->ord != NULL && rev > m->rev && access_known) {
        /* A cluster node behind the rev the client got from another node:
         * a snapshot now would take the client back. The node reads the
         * log; the patches it then applies reach the client, which ignores
         * those at or below its rev (PROTOCOL.md, "State per model"). */
        tp__order_behind(m, rev);
        tp__presence_send_snapshot(c, m);
        return;
    }
    long i = access_known ? tp__model_history_find(m, rev) : -1;
    /* Patches are the answer while they fit in what is left of the
     * resume's room (max_outbox_bytes), or take no more than the snapshot:
     * a resume's answer is at most every visible model's snapshot and that
     * much of patches, however far behind the listed revs are. */
    size_t bytes = i < 0 ? 0 : history_bytes_from(m, (unsigned)i);
    if (i < 0 || (bytes > seen->patch_room && bytes > m->bytes + TP__ENVELOPE)) {
        tp__conn_send_snapshot(c, m, access);
        return;
    }
    seen->patch_room -= bytes < seen->patch_room ? bytes : seen->patch_room;
    for (unsigned k = (unsigned)i; k < m->hist_len; k++)
        tp__conn_send(c, tp__model_history_at(m, k));
    tp__presence_send_snapshot(c, m); /* PROTOCOL.md: after resume */
}

/* msg: NULL for the empty resume a first message that is not one counts as. */
static void
handle_resume(tp_conn *c, const tp__env *msg)
{
    static const tp__env none; /* no members */
    tp_error err = {0, ""};
    int first = c->state == TP__CONN_AWAIT_RESUME;
    /* A later resume (after a rev gap) may cost a snapshot per model it
     * lists: it takes a token from the writes' budget, so a client cannot
     * make the hub encode snapshots in a loop. */
    int take = msg != NULL;
    if (msg == NULL)
        msg = &none;
    const tp__jv *jmodels = MEMBER(msg, models);
    const tp__jv *jref = MEMBER(msg, ref);
    int has_ref = jref->kind == TP__JV_INTEGER;
    json_int_t ref = has_ref ? jref->num : 0;
    if (!first && take && !take_token(c)) {
        send_error(c, has_ref, ref, TP_ERATELIMITED,
                   "resume: over the limit of writes per second, resend later");
        return;
    }
    const json_t *models = jmodels->kind == TP__JV_ARRAY ? jmodels->json : NULL;
    if (check_resume(c, jmodels, &err) != 0 || set_client(c, MEMBER(msg, client), &err) != 0) {
        send_error(c, has_ref, ref, err.code, err.message);
        if (!first)
            return;
        models = NULL; /* PROTOCOL.md: then handled as an empty resume */
    }
    uint64_t mark = ++c->hub->mark_gen;
    resume_seen seen;
    seen.patch_room = c->hub->limits.max_outbox_bytes;
    tp__map_init(&seen.gone[0], c->hub->seed ^ 0xa);
    tp__map_init(&seen.gone[1], c->hub->seed ^ 0xb);
    size_t i;
    const json_t *e;
    /* The first resume is the initial sync; a later one (after a rev gap)
     * counts against the outbox limit like anything else. Each visible
     * model is answered at most once, so the first resume's answer is
     * bounded by what a fresh connection gets (and a `removed` for at most
     * TP__RESUME_EXTRA ids it no longer sees). */
    c->syncing = first;
    json_array_foreach(models, i, e)
    {
        if (c->state == TP__CONN_CLOSING)
            break; /* closed (1013): encoding more would be for nobody */
        resume_one(c, e, mark, &seen);
    }
    tp__map_free(&seen.gone[0]);
    tp__map_free(&seen.gone[1]);
    /* PROTOCOL.md: after the listed models, snapshots of the visible models
     * the client did not list, then synced. A resume later on a live
     * connection (after a rev gap) answers just the models it lists. */
    if (first) {
        if (c->state != TP__CONN_CLOSING)
            c->state = TP__CONN_LIVE;
        send_snapshots(c, mark);
        send_built(c, tp__wire_synced());
    }
    c->syncing = 0;
}

/* ---- Messages ---- */

static void
handle_ping(tp_conn *c, const tp__env *msg)
{
    tp_error err;
    const tp__jv *jref = MEMBER(msg, ref);
    if (jref->kind != TP__JV_INTEGER) {
        send_error(c, 0, 0, TP_EBADREQUEST, "ref: required, an integer");
        return;
    }
    if (set_client(c, MEMBER(msg, client), &err) != 0) {
        send_error(c, 1, jref->num, err.code, err.message);
        return;
    }
    send_plain(c, tp__wire_pong(jref->num)); /* a pong reveals nothing */
}

/*
 * `auth`: a fresh credential for the same tenant (PROTOCOL.md). It costs a
 * signature check, so it counts toward the write rate like a write. A
 * refusal leaves the connection as it was: it still closes with 4401 when
 * the credential it has expires. Messages never hold the token.
 */
static void
handle_auth(tp_conn *c, const tp__env *msg)
{
    const tp__jv *jref = MEMBER(msg, ref);
    if (jref->kind != TP__JV_ABSENT && jref->kind != TP__JV_INTEGER) {
        send_error(c, 0, 0, TP_EBADREQUEST, "ref: expected an integer");
        return;
    }
    int has_ref = jref->kind != TP__JV_ABSENT;
    json_int_t ref = has_ref ? jref->num : 0;
    const tp__jv *jtok = MEMBER(msg, token);
    if (jtok->kind != TP__JV_STRING || jtok->len == 0) {
        send_error(c, has_ref, ref, TP_EBADREQUEST, "token: required, a non-empty string");
        return;
    }
    if (c->hub->verify == NULL) {
        send_error(c, has_ref, ref, TP_EBADREQUEST, "auth: this server takes no tokens");
        return;
    }
    if (!take_token(c)) {
        send_error(c, has_ref, ref, TP_ERATELIMITED,
                   "auth: messages per second over the limit, resend later");
        return;
    }
    tp_credential cred;
    memset(&cred, 0, sizeof cred);
    tp_error err = {0, ""};
    int64_t now = tp__hub_now(c->hub);
    int rc = c->hub->verify(jtok->str, jtok->len, now, &cred, &err, c->hub->verify_user);
    if (rc != TP_OK) {
        send_error(c, has_ref, ref, rc == TP_EFORBIDDEN ? TP_EFORBIDDEN : TP_EINTERNAL,
                   err.message[0] != '\0' ? err.message : "token: refused");
        return;
    }
    cred.tenant[sizeof cred.tenant - 1] = '\0';
    /* A token for another tenant never moves this connection: the message
     * does not say which tenant it names. */
    if (strcmp(cred.tenant, c->session->tenant) != 0) {
        send_error(c, has_ref, ref, TP_EFORBIDDEN, "token: names another tenant");
        return;
    }
    if (cred.expires_at_ms != 0 && cred.expires_at_ms <= now) {
        send_error(c, has_ref, ref, TP_EFORBIDDEN, "token expired");
        return;
    }
    c->expires_at_ms = cred.expires_at_ms;
    if (tp__log_on(&c->hub->log, TP_LOG_DEBUG)) {
        char qt[TP__LOG_VALUE_MAX];
        tp__log(&c->hub->log, TP_LOG_DEBUG, "auth renewed tenant=%s conn=%s expires_in_s=%lld",
                tp__log_value(c->session->tenant, qt, sizeof qt), c->id,
                (long long)(cred.expires_at_ms != 0 ? (cred.expires_at_ms - now) / 1000 : -1));
    }
    send_built(c, tp__wire_auth_ack(has_ref, ref));
}

/*
 * `presence` (PROTOCOL.md): the connection's ephemeral state on a model it
 * can see, READ access included. It counts toward the write rate; nothing
 * is stored and no rev moves (presence.c). It has no ref (PROTOCOL.md lists
 * none): a refusal is an error without one, named by its field.
 */
static void
handle_presence(tp_conn *c, const tp__env *msg)
{
    if (!take_token(c)) {
        send_error(c, 0, 0, TP_ERATELIMITED,
                   "presence: messages per second over the limit, resend later");
        return;
    }
    tp_error err = {0, ""};
    int shared;
    tp_access access;
    tp__model *m = find_model(c, MEMBER(msg, scope), MEMBER(msg, id), "", &shared, &access, &err);
    const tp__jv *state = MEMBER(msg, state);
    if (m != NULL && state->kind != TP__JV_OBJECT && state->kind != TP__JV_NULL)
        tp__error_set(&err, TP_EBADREQUEST, "state: required, an object or null");
    else if (m != NULL)
        tp__presence_set(c, m, state->kind == TP__JV_NULL ? NULL : state->json, &err);
    if (err.code != 0)
        send_error(c, 0, 0, err.code == TP_ENOMEM ? TP_EINTERNAL : err.code, err.message);
}

TP_API void
tp_conn_set_expiry(tp_conn *c, int64_t expires_at_ms)
{
    c->expires_at_ms = expires_at_ms;
}

TP_API int64_t
tp_conn_expiry(const tp_conn *c)
{
    return c->expires_at_ms;
}

TP_API int
tp_conn_expire(tp_conn *c, int64_t now_ms)
{
    if (c->close_code != 0)
        return c->close_code == 4401 ? 4401 : 0;
    if (c->expires_at_ms == 0 || now_ms < c->expires_at_ms)
        return 0;
    c->close_code = 4401;
    c->state = TP__CONN_CLOSING;
    return 4401;
}

/* msg: the message's envelope, or NULL when the message is not an object. */
static void
handle_message(tp_conn *c, const tp__env *msg, size_t index, int batched)
{
    const tp__jv *jtype = msg != NULL ? MEMBER(msg, type) : NULL;
    const char *type = jtype != NULL && jtype->kind == TP__JV_STRING ? jtype->str : NULL;
    int is_resume = type != NULL && strcmp(type, "resume") == 0;
    /* PROTOCOL.md: with resume=1, a first message that is not `resume`
     * (whatever it is, even a refused one) counts as an empty resume and is
     * then handled as usual. */
    if (c->state == TP__CONN_AWAIT_RESUME && !is_resume)
        handle_resume(c, NULL);
    if (msg == NULL) {
        char m[96];
        if (batched)
            snprintf(m, sizeof m, "[%zu]: expected a message object", index);
        else
            snprintf(m, sizeof m, "(root): expected a message object or a batch array");
        send_error(c, 0, 0, TP_EBADREQUEST, m);
        return;
    }
    const tp__jv *jref = MEMBER(msg, ref);
    int has_ref = jref->kind == TP__JV_INTEGER;
    json_int_t ref = has_ref ? jref->num : 0;
    if (type == NULL) {
        send_error(c, has_ref, ref, TP_EBADREQUEST, "type: required, a string");
        return;
    }
    if (strcmp(type, "write") == 0)
        handle_write(c, msg);
    else if (is_resume)
        handle_resume(c, msg);
    else if (strcmp(type, "ping") == 0)
        handle_ping(c, msg);
    else if (strcmp(type, "auth") == 0)
        handle_auth(c, msg);
    else if (strcmp(type, "presence") == 0)
        handle_presence(c, msg);
    else {
        char m[128];
        snprintf(m, sizeof m, "type: unknown message type \"%.64s\"", type);
        send_error(c, has_ref, ref, TP_EBADREQUEST, m);
    }
}

TP_API int
tp_conn_feed(tp_conn *c, const char *text, size_t len)
{
    if (c->state == TP__CONN_CLOSING)
        return TP_ECLOSED;
    if (len > c->hub->limits.max_message_bytes) {
        char m[128];
        snprintf(m, sizeof m, "message: %zu bytes, over the limit of %zu", len,
                 c->hub->limits.max_message_bytes);
        send_error(c, 0, 0, TP_ETOOLARGE, m);
        c->close_code = 1009;
        c->state = TP__CONN_CLOSING;
        return TP_ECLOSED;
    }
    /* The common message without a jansson tree (envelope.h); anything
     * else (a batch, a refusal, a rarer form) the way it always went. */
    tp__text t;
    if (tp__env_scan(&t, text, len) == TP__ENV_OK) {
        /* A batch: its messages in order, each answered on its own. */
        for (size_t i = 0; i < t.n && c->state != TP__CONN_CLOSING; i++)
            handle_message(c, &t.msgs[i], i, t.batch);
        tp__text_clear(&t);
        return c->state == TP__CONN_CLOSING ? TP_ECLOSED : TP_OK;
    }
    tp__env env;
    json_error_t jerr;
    json_t *msg = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (msg == NULL) {
        if (c->state == TP__CONN_AWAIT_RESUME)
            handle_resume(c, NULL); /* a first message that is not `resume` */
        char m[256];
        snprintf(m, sizeof m, "message: not JSON: %s (column %d)", jerr.text, jerr.column);
        send_error(c, 0, 0, TP_EBADREQUEST, m);
    } else if (json_is_array(msg)) {
        /* A batch: its messages in order, each answered on its own. */
        size_t i;
        json_t *e;
        json_array_foreach(msg, i, e)
        {
            if (c->state == TP__CONN_CLOSING)
                break;
            if (json_is_object(e))
                tp__env_from_json(&env, e);
            handle_message(c, json_is_object(e) ? &env : NULL, i, 1);
        }
    } else {
        if (json_is_object(msg))
            tp__env_from_json(&env, msg);
        handle_message(c, json_is_object(msg) ? &env : NULL, 0, 0);
    }
    json_decref(msg);
    return c->state == TP__CONN_CLOSING ? TP_ECLOSED : TP_OK;
}
