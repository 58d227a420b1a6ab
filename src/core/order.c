/*
 * The shared order (order.h; docs/internals/order.md): a model's changes are
 * merged at the rev the node holds, appended to the log at that rev, and
 * applied only when the log has them.
 *
 * Each model in the order has a queue of changes waiting (tp__op: a client's
 * write or a host's value) and at most one call to the log in flight. The
 * driver, advance(), runs whenever that call answers or a change arrives:
 * it reads the model from the log when the node may be behind (never read
 * yet, a conflict, a gap in the messages, an append whose outcome is
 * unknown), else merges the queue's first change on the model as it is and
 * appends it. Messages of appends (this node's and the others') are applied
 * in rev order when the model is idle; while a call is in flight they only
 * raise `seen`, and the driver reads what it missed afterwards.
 */
#include <string.h>

#include "core/catalog.h"
#include "core/conn_int.h"
#include "core/hub.h"
#include "core/merge.h"
#include "core/model.h"
#include "core/order_int.h"
#include "core/patch.h"
#include "core/schema.h"
#include "core/session.h"
#include "core/ticket.h"
#include "core/wire.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/error.h"

enum { ORD_IDLE, ORD_READING, ORD_APPENDING };

/* tp__client.olog: what the node knows of a client's outcomes in the log. */
enum { OLOG_KNOWN, OLOG_LOADING, OLOG_UNKNOWN };

/* A change waiting for its turn: a client's write or a host's value. */
typedef struct tp__op {
    struct tp__op *next;
    json_t *patch;       /* the merge patch (owned) */
    json_t *value;       /* or a host's whole value (owned): patched in its turn */
    tp__stamp stamp;     /* its stamp (lww-map) */
    tp_session *session; /* the writer's session, NULL for the host */
    tp_conn *conn;       /* the writer, NULL for the host or once it closed */
    tp_conn *resent;     /* a connection that sent the same ref again while it waited */
    char origin[24];     /* the writer's connection id, or "host" */
    char *client;        /* the writer's client id, or NULL */
    json_int_t ref;
    size_t sidx;     /* index in session->ord_ops */
    tp__model *m;    /* the model whose queue it is in */
    int64_t at;      /* hub clock ms when it was queued */
    int check;       /* exactly-once check still to do: the client's outcomes were loading */
    int already;     /* the log said its ref has an outcome already (conflict 2) */
    uint64_t ticket; /* a host API change's ticket, or 0 */
} tp__op;

struct tp__ord {
    tp__op *head, *tail;
    int busy;        /* ORD_*: the call in flight */
    int synced;      /* read from the log (or created there) at least once */
    int need_read;   /* the node may be behind the log */
    int64_t seen;    /* the highest rev a message announced */
    int64_t wanted;  /* a rev a resuming client holds, past the node's */
    int stalled;     /* the log cannot be reached: waiting for tp__order_resync */
    int dormant;     /* a model no connection here sees: not followed, maybe behind */
    size_t watchers; /* a shared model: its subscribed sessions with a connection here */
    size_t sidx;     /* index in hub->ord_stalled while stalled */
    /* The append in flight: the change and what it publishes. */
    tp__change ch;
    tp__buf *msg;
    size_t bytes;
    int64_t base;
    uint64_t ticket; /* the host made the model: its ticket ends when the log has it */
    json_t *put;     /* and its value, which wins over a record the log has already */
    uint64_t fresh;  /* tp__order_refresh's ticket: ends when a read answers */
    /* A batch: the changes appended with the first (ch, msg, bytes) in one
     * call, each prepared on the model as the ones before it leave it. */
    struct ord_more *more;
    size_t nmore, capmore;
    size_t nsent; /* the queue's first nsent changes are in the append in flight */
};

/* A change of a batch after its first. */
typedef struct ord_more {
    tp__change ch;
    tp__buf *msg;
    size_t bytes;
} ord_more;

/* The most changes of a model one append takes (TP__CLOG_BATCH_MAX allows
 * more): a closed loop's window of writes goes in one round trip. */
#define ORD_BATCH 32

/* ---- Finding models ---- */

static tp__model *
model_named(tp_hub *hub, const char *owner, const char *id)
{
    if (owner[0] == '\0')
        return tp__map_get(&hub->shared, id);
    tp_session *s = tp__map_get(&hub->tenants, owner);
    return s != NULL ? tp__map_get(&s->models, id) : NULL;
}

static const char *
owner_of(const tp__model *m)
{
    return m->shared ? "" : m->owner->tenant;
}

/* ---- Ops ---- */

static void
op_free(tp_hub *hub, tp__op *op)
{
    if (op->session != NULL && !hub->freeing) {
        tp__op *moved = tp__vec_swap_remove(&op->session->ord_ops, op->sidx);
        if (moved != NULL)
            moved->sidx = op->sidx;
    }
    json_decref(op->patch);
    json_decref(op->value);
    tp__free(op->client);
    tp__free(op);
}

static tp__op *
pop(tp__model *m)
{
    tp__op *op = m->ord->head;
    m->hub->ord_queued--;
    m->ord->head = op->next;
    if (m->ord->head == NULL)
        m->ord->tail = NULL;
    return op;
}

/* Ends the queue's first change with an error (not recorded as an outcome:
 * the client may send it again). */
static void
fail_op(tp__model *m, int code, const char *message)
{
    tp__op *op = pop(m);
    if (op->session != NULL)
        tp__conn_write_done(op->session, op->conn, op->resent, op->client, op->ref,
                            tp__wire_error(1, op->ref, tp_error_name(code), message), code, message,
                            code != TP_EDUPLICATE);
    tp__ticket_end(m->hub, op->ticket, code, message);
    op_free(m->hub, op);
}

/*
 * The exactly-once check of a write queued while its client's outcomes were
 * read from the log. Returns 1 when the write goes on, 0 when it waits, -1
 * when it ended here (answered from the record, a duplicate, or unknown).
 */
static int
check_once(tp__model *m)
{
    tp__op *op = m->ord->head;
    if (!op->check)
        return 1;
    tp__client *cl = tp__map_get(&op->session->clients, op->client);
    if (cl == NULL) {
        op->check = 0; /* dropped meanwhile: nothing recorded to go by */
        return 1;
    }
    if (cl->olog == OLOG_LOADING)
        return 0;
    if (cl->olog == OLOG_UNKNOWN) {
        fail_op(m, TP_EINTERNAL,
                "cluster: this client's outcomes cannot be read from the shared log, resend");
        return -1;
    }
    op->check = 0;
    tp__buf *was;
    int seen = tp__client_seen(cl, op->ref, &was);
    if (seen == 0)
        return 1;
    if (seen < 0) {
        fail_op(m, TP_EDUPLICATE, TP__DUPLICATE_MESSAGE);
        return -1;
    }
    op = pop(m);
    tp__conn_write_done(op->session, op->conn, op->resent, op->client, op->ref, tp__buf_ref(was),
                        TP_OK, NULL, 0);
    op_free(m->hub, op);
    return -1;
}

static void
fail_all(tp__model *m, const char *message)
{
    while (m->ord->head != NULL)
        fail_op(m, TP_EINTERNAL, message);
    if (!m->ord->synced) {
        tp__ticket_end(m->hub, m->ord->ticket, TP_EINTERNAL, message);
        tp__catalog_kick(m->hub);
    }
}

/* Ends the first change as applied (or as changing nothing) at the model's rev. */
static void
ack_op(tp__model *m, int changed, int64_t from)
{
    tp__op *op = pop(m);
    if (op->session != NULL) {
        tp__buf *ack = tp__buf_new(TP__WIRE_ACK_ROOM(m->addr_len));
        if (ack != NULL)
            ack = tp__wire_ack(ack, op->ref, m->addr, m->addr_len, m->rev,
                               changed > 0 && !m->shared ? from : -1);
        if (ack != NULL)
            m->hub->writes_accepted++;
        tp__conn_write_done(op->session, op->conn, op->resent, op->client, op->ref, ack,
                            ack != NULL ? TP_OK : TP_EINTERNAL, NULL, 1);
    }
    tp__ticket_end(m->hub, op->ticket, TP_OK, NULL);
    op_free(m->hub, op);
}

static void
prepared_clear(struct tp__ord *o)
{
    tp__change_free(&o->ch);
    memset(&o->ch, 0, sizeof o->ch);
    tp__buf_unref(o->msg);
    o->msg = NULL;
    for (size_t i = 0; i < o->nmore; i++) {
        tp__change_free(&o->more[i].ch);
        tp__buf_unref(o->more[i].msg);
    }
    o->nmore = 0;
}

/* ---- Records and entries ---- */

static void
stamp_json(tp__sb *sb, const tp__stamp *st)
{
    tp__sb_append(sb, "[", 1);
    tp__sb_int(sb, st->wall);
    tp__sb_append(sb, ",", 1);
    tp__sb_int(sb, st->count);
    tp__sb_append(sb, ",", 1);
    tp__wire_string(sb, st->tenant, strlen(st->tenant));
    tp__sb_append(sb, ",", 1);
    tp__sb_int(sb, (int64_t)st->conn);
    tp__sb_append(sb, "]", 1);
}

/* A value after a change (new reference), or NULL (out of memory). */
static json_t *
value_after(json_t *value, const tp__change *ch)
{
    json_t *v = tp__json_shallow_copy(value);
    for (size_t i = 0; v != NULL && i < ch->n; i++) {
        const struct tp__member *mb = &ch->members[i];
        if (mb->same)
            continue;
        if (mb->value == NULL)
            json_object_del(v, mb->key);
        else if (json_object_set(v, mb->key, mb->value) != 0) {
            json_decref(v);
            v = NULL;
        }
    }
    return v;
}

/*
 * The model's record after the change ch (NULL: as it is) at rev:
 * {"rev":R,"value":V[,"stamps":{field:[wall,count,tenant,conn],...}]}. The
 * schema and the merge are the config's, the same on every node.
 */
static int
record(tp__sb *sb, const tp__model *m, const tp__change *ch, int64_t rev)
{
    json_t *v = m->value;
    if (ch != NULL && (v = value_after(m->value, ch)) == NULL)
        return TP_ENOMEM;
    tp__sb_reset(sb);
    tp__sb_puts(sb, "{\"rev\":");
    tp__sb_int(sb, rev);
    tp__sb_puts(sb, ",\"value\":");
    tp__wire_value(sb, v);
    if (v != m->value)
        json_decref(v);
    if (m->kind == TP__LWW_MAP) {
        tp__sb_puts(sb, ",\"stamps\":{");
        int first = 1;
        void *e;
        const char *field;
        for (size_t it = 0; tp__map_next(&m->stamps, &it, &field, &e);) {
            const tp__stamp *st = &((const tp__stamp_entry *)e)->st;
            for (size_t i = 0; ch != NULL && ch->stamped && i < ch->n; i++)
                if (strcmp(ch->members[i].key, field) == 0)
                    st = &ch->stamp;
            if (!first)
                tp__sb_append(sb, ",", 1);
            first = 0;
            tp__wire_string(sb, field, strlen(field));
            tp__sb_append(sb, ":", 1);
            stamp_json(sb, st);
        }
        for (size_t i = 0; ch != NULL && ch->stamped && i < ch->n; i++) {
            if (tp__map_get(&m->stamps, ch->members[i].key) != NULL)
                continue;
            if (!first)
                tp__sb_append(sb, ",", 1);
            first = 0;
            tp__wire_string(sb, ch->members[i].key, strlen(ch->members[i].key));
            tp__sb_append(sb, ":", 1);
            stamp_json(sb, &ch->stamp);
        }
        tp__sb_append(sb, "}", 1);
    }
    tp__sb_append(sb, "}", 1);
    return sb->failed ? TP_ENOMEM : TP_OK;
}

/* Reads a stamp [wall, count, tenant, conn]; the tenant is interned. */
static int
stamp_read(tp_hub *hub, const json_t *j, tp__stamp *st)
{
    json_int_t wall, count, conn;
    const char *tenant;
    if (json_unpack((json_t *)j, "[IIsI]", &wall, &count, &tenant, &conn) != 0)
        return TP_EINVALID;
    const char *t = tenant[0] != '\0' ? tp__hub_intern(hub, tenant) : "";
    if (t == NULL)
        return TP_ENOMEM;
    *st = (tp__stamp){wall, count, t, (uint64_t)conn};
    /* The clock goes on from the greatest stamp it saw: never backwards. */
    if (wall > hub->hlc_wall || (wall == hub->hlc_wall && count > hub->hlc_count)) {
        hub->hlc_wall = wall;
        hub->hlc_count = count;
    }
    return TP_OK;
}

static void
send_snapshot(tp_conn *c, void *arg)
{
    tp__model *m = arg;
    tp_access access = TP_WRITE;
    if (m->shared) {
        tp__sub *sub = tp__session_sub(c->session, m->id);
        if (sub == NULL)
            return;
        access = sub->access;
    }
    tp__conn_send_snapshot(c, m, access);
}

/* Makes the model what a record says, and tells its viewers with a snapshot. */
static int
load_record(tp__model *m, const char *text, size_t len, int64_t rev, int notify)
{
    json_error_t jerr;
    json_t *o = json_loadb(text, len, 0, &jerr);
    json_t *value = json_object_get(o, "value");
    json_t *stamps = json_object_get(o, "stamps");
    json_int_t r = json_integer_value(json_object_get(o, "rev"));
    if (!json_is_object(value) || r != rev || (stamps != NULL && !json_is_object(stamps))) {
        json_decref(o);
        return TP_EINVALID;
    }
    tp__map fresh;
    tp__map_init(&fresh, m->hub->seed ^ 0x5bd1e995U);
    const char *field;
    json_t *sj;
    int rc = TP_OK;
    json_object_foreach(stamps, field, sj)
    {
        size_t flen = strlen(field);
        tp__stamp_entry *e = tp__malloc(sizeof(tp__stamp_entry) + flen + 1);
        if (e == NULL || (rc = stamp_read(m->hub, sj, &e->st)) != TP_OK) {
            tp__free(e);
            rc = rc != TP_OK ? rc : TP_ENOMEM;
            break;
        }
        memcpy(e->field, field, flen + 1);
        if (tp__map_put(&fresh, e->field, e) != 0) {
            tp__free(e);
            rc = TP_ENOMEM;
            break;
        }
    }
    if (rc != TP_OK) {
        tp__stamps_free(&fresh);
        json_decref(o);
        return rc;
    }
    int moved = rev != m->rev || !json_equal(value, m->value);
    tp__stamps_free(&m->stamps);
    m->stamps = fresh;
    json_decref(m->value);
    m->value = json_incref(value);
    m->bytes = tp__value_bytes(value);
    json_decref(o);
    if (rev != m->rev)
        tp__model_history_clear(m); /* its patches no longer lead to rev */
    m->rev = rev;
    m->hub->ostats.snapshots++;
    if (moved && notify)
        tp__each_viewer(m, NULL, send_snapshot, m);
    return TP_OK;
}

/*
 * An entry: the `patch` message the writer's node encoded, then, for a
 * lww-map change, a newline and the change's stamp (the message has no raw
 * newline: JSON escapes it in strings). Applying it applies the message's
 * patch member by member and sends the same bytes to the node's viewers.
 */
static int
apply_entry(tp__model *m, const tp__order_entry *e)
{
    const char *nl = memchr(e->entry, '\n', e->entry_len);
    size_t mlen = nl != NULL ? (size_t)(nl - e->entry) : e->entry_len;
    if (mlen == 0)
        return TP_EINVALID; /* a creation: the record says what the model is */
    json_error_t jerr;
    json_t *frame = json_loadb(e->entry, mlen, 0, &jerr);
    json_t *patch = json_object_get(frame, "patch");
    if (!json_is_object(patch) || json_integer_value(json_object_get(frame, "rev")) != m->rev + 1) {
        json_decref(frame);
        return TP_EINVALID;
    }
    tp__change ch = {0};
    ch.quiet = 1; /* webhooks fire once, on the node that appended it */
    int rc = TP_OK;
    if (nl != NULL) {
        json_t *sj = json_loadb(nl + 1, e->entry_len - mlen - 1, 0, &jerr);
        rc = sj != NULL ? stamp_read(m->hub, sj, &ch.stamp) : TP_EINVALID;
        json_decref(sj);
        ch.stamped = rc == TP_OK;
    }
    const char *key;
    json_t *pv;
    json_object_foreach(patch, key, pv)
    {
        if (rc != TP_OK)
            break;
        json_t *nv =
            json_is_null(pv) ? NULL : tp_merge_patch_apply(json_object_get(m->value, key), pv);
        if (!json_is_null(pv) && nv == NULL)
            rc = TP_ENOMEM;
        else
            rc = tp__change_add(&ch, key, nv, 0);
    }
    size_t bytes = 0;
    tp__buf *msg = NULL;
    tp_error err;
    if (rc == TP_OK && (rc = tp__model_prepare(m, &ch, 0, NULL, NULL, &bytes, &err)) >= 0) {
        msg = tp__buf_copy(e->entry, mlen);
        rc = msg != NULL ? tp__model_apply(m, &ch, msg, bytes, NULL, &err) : TP_ENOMEM;
    }
    tp__buf_unref(msg);
    tp__change_free(&ch);
    json_decref(frame);
    if (rc >= 0)
        m->hub->ostats.applied++;
    return rc < 0 ? rc : TP_OK;
}

/* ---- The driver ---- */

static void advance(tp__model *m);
static int enqueue(tp__model *m, json_t *patch, json_t *value, const tp__stamp *stamp, tp_conn *c,
                   const char *client, json_int_t ref, uint64_t ticket);

/*
 * The log cannot be reached (the link is down): the model's changes wait for
 * it to come back (tp__order_resync), at most the wait (tp__order_tick ends
 * older ones with `internal`). Returns 0 when the stall list cannot grow
 * (the caller then ends the change at once).
 */
static int
stall(tp__model *m)
{
    struct tp__ord *o = m->ord;
    if (o->stalled)
        return 1;
    if (tp__vec_push(&m->hub->ord_stalled, m) != 0)
        return 0;
    o->stalled = 1;
    /* A refresh ends: the caller answers from what the node holds (a read)
     * or refuses (a change). */
    tp__ticket_end(m->hub, o->fresh, TP_EINTERNAL,
                   "cluster: the shared log cannot be reached; retry");
    o->fresh = 0;
    o->sidx = m->hub->ord_stalled.len - 1;
    return 1;
}

static void
unstall(tp__model *m)
{
    struct tp__ord *o = m->ord;
    if (!o->stalled)
        return;
    tp__model *moved = tp__vec_swap_remove(&m->hub->ord_stalled, o->sidx);
    if (moved != NULL)
        moved->ord->sidx = o->sidx;
    o->stalled = 0;
}

static void
start_read(tp__model *m, int64_t after)
{
    tp_hub *hub = m->hub;
    tp_error err = {0, ""};
    if (hub->order->read(hub->order_be, owner_of(m), m->id, after, &err) != TP_OK) {
        if (err.code == TP_ECLOSED && stall(m))
            return;
        char why[sizeof err.message + 48];
        snprintf(why, sizeof why, "cluster: the shared log cannot be read: %s", err.message);
        fail_all(m, why);
        return;
    }
    hub->ostats.reads++;
    m->ord->busy = ORD_READING;
}

/*
 * The model as a batch's changes leave it, the model itself unchanged: its
 * own value, rev and size, and a stamps map pointing at the model's entries
 * but for the fields the batch stamped (entries in owned). The rest of the
 * struct is the model's, read only.
 */
typedef struct shadow {
    tp__model m;
    tp__vec owned;
} shadow;

static int
shadow_step(shadow *s, const tp__change *ch, size_t bytes)
{
    json_t *v = value_after(s->m.value, ch);
    if (v == NULL)
        return TP_ENOMEM;
    json_decref(s->m.value);
    s->m.value = v;
    s->m.bytes = bytes;
    s->m.rev++;
    for (size_t i = 0; ch->stamped && i < ch->n; i++) {
        size_t flen = strlen(ch->members[i].key);
        tp__stamp_entry *en = tp__malloc(sizeof(tp__stamp_entry) + flen + 1);
        if (en == NULL || tp__vec_push(&s->owned, en) != 0) {
            tp__free(en);
            return TP_ENOMEM;
        }
        en->st = ch->stamp;
        memcpy(en->field, ch->members[i].key, flen + 1);
        if (tp__map_put(&s->m.stamps, en->field, en) != 0)
            return TP_ENOMEM;
    }
    return TP_OK;
}

static void
shadow_free(shadow *s)
{
    json_decref(s->m.value);
    tp__map_free(&s->m.stamps);
    for (size_t i = 0; i < s->owned.len; i++)
        tp__free(s->owned.items[i]);
    tp__vec_free(&s->owned);
}

/* The shadow of m after the queue's first change (prepared in m->ord). */
static int
shadow_start(shadow *s, tp__model *m, size_t bytes)
{
    memset(s, 0, sizeof *s);
    s->m = *m;
    s->m.value = json_incref(m->value);
    tp__map_init(&s->m.stamps, m->hub->seed ^ 0x2f6b1c3dU);
    const char *field;
    void *en;
    for (size_t it = 0; tp__map_next(&m->stamps, &it, &field, &en);)
        if (tp__map_put(&s->m.stamps, field, en) != 0)
            return TP_ENOMEM;
    return shadow_step(s, &m->ord->ch, bytes);
}

/* The changes after the queue's first that go in its append, prepared on
 * the shadow one after the other: client writes and host patches whose
 * exactly-once check is done, up to the first that is refused or changes
 * nothing (it is handled alone in its turn). Returns how many. */
static size_t
gather(tp__model *m, shadow *sh)
{
    struct tp__ord *o = m->ord;
    size_t k = 0;
    for (tp__op *op = o->head->next; op != NULL && k + 1 < ORD_BATCH; op = op->next) {
        if (op->check || op->value != NULL)
            break;
        if (o->nmore == o->capmore) {
            size_t cap = o->capmore ? o->capmore * 2 : 4;
            ord_more *p = tp__realloc(o->more, cap * sizeof *p);
            if (p == NULL)
                break;
            o->more = p;
            o->capmore = cap;
        }
        ord_more *mo = &o->more[o->nmore];
        memset(mo, 0, sizeof *mo);
        tp_error err = {0, ""};
        tp__schema_budget_begin(m->schema);
        int rc = tp__merge_compute(&sh->m, op->patch, &op->stamp, op->conn, &mo->ch, &err);
        size_t bytes = 0;
        if (rc == 0)
            rc = tp__model_prepare(&sh->m, &mo->ch, 1, op->origin, &mo->msg, &bytes, &err);
        uint64_t steps = tp__schema_budget_end(m->schema);
        if (steps > 0 && op->session != NULL)
            op->session->pattern_debt += (double)steps;
        if (rc <= 0 || shadow_step(sh, &mo->ch, bytes) != TP_OK) {
            tp__change_free(&mo->ch);
            tp__buf_unref(mo->msg);
            break;
        }
        mo->bytes = bytes;
        o->nmore++;
        k++;
    }
    return k;
}

/* Appends the queue's first change, merged on the model as it is, and the
 * ones after it that can go with it (gather). Returns 1 when an append is
 * in flight, 0 when the first change ended here. */
static int
start_append(tp__model *m)
{
    struct tp__ord *o = m->ord;
    tp__op *op = o->head;
    tp_hub *hub = m->hub;
    tp_error err = {0, ""};
    tp__change *ch = &o->ch;
    if (op->value != NULL) {
        /* A host's value: its patch against the model as it is now. */
        json_decref(op->patch);
        op->patch = tp__host_patch(m, op->value);
        if (op->patch == NULL) {
            fail_op(m, TP_EINTERNAL, "out of memory");
            return 0;
        }
    }
    tp__schema_budget_begin(m->schema);
    int rc = tp__merge_compute(m, op->patch, &op->stamp, op->conn, ch, &err);
    size_t bytes = 0;
    if (rc == 0)
        rc = tp__model_prepare(m, ch, 1, op->origin, &o->msg, &bytes, &err);
    uint64_t steps = tp__schema_budget_end(m->schema);
    if (steps > 0 && op->session != NULL)
        op->session->pattern_debt += (double)steps;
    if (rc < 0) {
        prepared_clear(o);
        fail_op(m, rc == TP_ENOMEM ? TP_EINTERNAL : rc, err.message);
        return 0;
    }
    if (rc == 0) {
        /* Nothing changes: acked at the current rev, as on one node. A
         * lww-map stamp it won is this node's alone (docs/internals/order.md). */
        (void)tp__model_apply(m, ch, NULL, bytes, NULL, &err);
        prepared_clear(o);
        ack_op(m, 0, m->rev);
        return 0;
    }
    shadow sh;
    size_t n = 1;
    int batch = hub->order->append_many != NULL && op->next != NULL;
    if (batch && shadow_start(&sh, m, bytes) == TP_OK)
        n += gather(m, &sh);
    tp__sb rec;
    tp__sb_init(&rec, m->bytes + 64);
    tp__sb *ents = tp__calloc(n, sizeof *ents);
    tp__buf **acks = tp__calloc(n, sizeof *acks);
    tp__order_append *as = tp__calloc(n, sizeof *as);
    rc = ents && acks && as ? TP_OK : TP_ENOMEM;
    if (rc == TP_OK)
        rc = n > 1 ? record(&rec, &sh.m, NULL, m->rev + (int64_t)n)
                   : record(&rec, m, ch, m->rev + 1);
    tp__op *p = op;
    for (size_t i = 0; rc == TP_OK && i < n; i++, p = p->next) {
        const tp__change *ci = i == 0 ? ch : &o->more[i - 1].ch;
        const tp__buf *mi = i == 0 ? o->msg : o->more[i - 1].msg;
        tp__sb_init(&ents[i], mi->len + 64);
        tp__sb_append(&ents[i], mi->data, mi->len);
        if (ci->stamped) {
            tp__sb_append(&ents[i], "\n", 1);
            stamp_json(&ents[i], &ci->stamp);
        }
        if (ents[i].failed)
            rc = TP_ENOMEM;
        int64_t at = m->rev + (int64_t)i; /* the rev this change goes from */
        if (rc == TP_OK && p->client != NULL) {
            /* The outcome goes into the log with the change (a private write's
             * in the same script), so that any node can answer a resend. */
            acks[i] = tp__buf_new(TP__WIRE_ACK_ROOM(m->addr_len));
            acks[i] = acks[i] ? tp__wire_ack(acks[i], p->ref, m->addr, m->addr_len, at + 1,
                                             m->shared ? -1 : at)
                              : NULL;
            rc = acks[i] != NULL ? TP_OK : TP_ENOMEM;
        }
        as[i] = (tp__order_append){owner_of(m),
                                   m->id,
                                   at,
                                   ents[i].buf ? ents[i].buf->data : NULL,
                                   ents[i].buf ? ents[i].buf->len : 0,
                                   rec.buf ? rec.buf->data : NULL,
                                   rec.buf ? rec.buf->len : 0,
                                   p->session != NULL ? p->session->tenant : NULL,
                                   p->client,
                                   p->ref,
                                   acks[i] ? acks[i]->data : NULL,
                                   acks[i] ? acks[i]->len : 0};
    }
    if (rc == TP_OK)
        rc = n > 1 ? hub->order->append_many(hub->order_be, as, n, &err)
                   : hub->order->append(hub->order_be, &as[0], &err);
    else
        tp__error_set(&err, TP_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (ents != NULL)
            tp__sb_free(&ents[i]);
        if (acks != NULL)
            tp__buf_unref(acks[i]);
    }
    tp__free(ents);
    tp__free(acks);
    tp__free(as);
    tp__sb_free(&rec);
    if (batch)
        shadow_free(&sh);
    if (rc != TP_OK) {
        prepared_clear(o);
        if (err.code == TP_ECLOSED && stall(m))
            return 1;
        char why[sizeof err.message + 48];
        snprintf(why, sizeof why, "cluster: the shared log cannot take the write: %s", err.message);
        fail_op(m, TP_EINTERNAL, why);
        return 0;
    }
    hub->ostats.appends++;
    o->bytes = bytes;
    o->base = m->rev;
    o->nsent = n;
    o->busy = ORD_APPENDING;
    return 1;
}

static void
advance(tp__model *m)
{
    struct tp__ord *o = m->ord;
    while (o != NULL && o->busy == ORD_IDLE && !o->stalled &&
           !(o->dormant && o->synced && o->head == NULL && o->fresh == 0)) {
        if (!o->synced) {
            start_read(m, 0);
            return;
        }
        if (o->need_read || o->seen > m->rev || o->wanted > m->rev) {
            start_read(m, m->rev);
            return;
        }
        if (o->head == NULL)
            return;
        int go = check_once(m);
        if (go == 0 || (go > 0 && start_append(m)))
            return;
    }
}

/* ---- The backend's answers ---- */

void
tp__order_appended(tp_hub *hub, const char *owner, const char *id, int conflict, int64_t rev,
                   const char *was, size_t was_len, const tp_error *err)
{
    tp__order_appended_many(hub, owner, id, conflict, rev, 0, was, was_len, err);
}

/* The op at index i of the queue (0: its head), or NULL. */
static tp__op *
op_at(struct tp__ord *o, size_t i)
{
    tp__op *p = o->head;
    while (p != NULL && i-- > 0)
        p = p->next;
    return p;
}

static void unlink_op(tp__op *op);

void
tp__order_appended_many(tp_hub *hub, const char *owner, const char *id, int conflict, int64_t rev,
                        size_t dup, const char *was, size_t was_len, const tp_error *err)
{
    tp__model *m = model_named(hub, owner, id);
    struct tp__ord *o = m != NULL ? m->ord : NULL;
    if (o == NULL || o->busy != ORD_APPENDING)
        return; /* the model went meanwhile */
    o->busy = ORD_IDLE;
    size_t nsent = o->nsent;
    o->nsent = 0;
    if (!o->synced) {
        /* The creation of a model the log did not have. */
        if (err == NULL && !conflict) {
            o->synced = 1;
            hub->unsynced--;
            tp__ticket_end(hub, o->ticket, TP_OK, NULL);
            json_decref(o->put); /* created with it */
            o->put = NULL;
            tp__catalog_kick(hub);
        }
    } else if (err != NULL) {
        /* Unknown: the script may have run. The write is not acked; the
         * node reads the log before anything else. */
        char why[sizeof err->message + 48];
        snprintf(why, sizeof why, "cluster: the shared log did not answer, resend: %s",
                 err->message);
        prepared_clear(o);
        hub->ostats.failures++;
        o->need_read = 1;
        for (size_t i = 0; i < nsent && o->head != NULL; i++)
            fail_op(m, TP_EINTERNAL, why);
    } else if (conflict == 2 && dup > 0) {
        /* A change of the batch after its first is in the log already
         * (resent through another node): it gets the outcome recorded, the
         * others are merged again. */
        prepared_clear(o);
        o->need_read = 1;
        tp__op *op = dup < nsent ? op_at(o, dup) : NULL;
        tp__buf *b =
            op != NULL && was != NULL && op->session != NULL ? tp__buf_copy(was, was_len) : NULL;
        if (b != NULL) {
            unlink_op(op);
            tp__conn_write_done(op->session, op->conn, op->resent, op->client, op->ref, b, TP_OK,
                                NULL, 1);
            tp__ticket_end(hub, op->ticket, TP_OK, NULL);
            op_free(hub, op);
        }
    } else if (conflict == 2) {
        /* The write is in the log already, appended for its client through
         * another node: answered from the client's outcomes, never again. */
        prepared_clear(o);
        o->need_read = 1;
        tp__op *op = o->head;
        tp__client *cl = op->session != NULL && op->client != NULL
                             ? tp__map_get(&op->session->clients, op->client)
                             : NULL;
        tp__buf *b = was != NULL && op->session != NULL ? tp__buf_copy(was, was_len) : NULL;
        if (b != NULL) {
            /* The log gave the outcome it recorded: the writer gets it. */
            op = pop(m);
            tp__conn_write_done(op->session, op->conn, op->resent, op->client, op->ref, b, TP_OK,
                                NULL, 1);
            tp__ticket_end(hub, op->ticket, TP_OK, NULL);
            op_free(hub, op);
        } else if (cl == NULL || op->already++ > 0) {
            fail_op(m, TP_EINTERNAL, "cluster: the write's outcome cannot be read, resend");
        } else {
            op->check = 1;
            tp__order_client_named(cl);
        }
    } else if (conflict || m->rev != o->base) {
        /* Another node's change came first: catch up, merge again. */
        prepared_clear(o);
        hub->ostats.conflicts++;
        o->need_read = 1;
        if (rev > o->seen)
            o->seen = rev;
    } else {
        /* Applied in the log's order: each change was prepared on the model
         * as the ones before it leave it. */
        int failed = 0;
        for (size_t i = 0; i < nsent && o->head != NULL; i++) {
            tp__op *op = o->head;
            tp_error aerr;
            int64_t from = m->rev;
            tp__change *ci = i == 0 ? &o->ch : &o->more[i - 1].ch;
            tp__buf *mi = i == 0 ? o->msg : o->more[i - 1].msg;
            size_t bi = i == 0 ? o->bytes : o->more[i - 1].bytes;
            int rc =
                failed ? -1 : tp__model_apply(m, ci, mi, bi, m->shared ? NULL : op->conn, &aerr);
            if (rc >= 0) {
                ack_op(m, rc, from);
            } else {
                failed = 1;
                fail_op(m, TP_EINTERNAL, "out of memory");
            }
        }
        prepared_clear(o);
        if (failed)
            o->synced = 0, hub->unsynced++; /* the log has them: read it back */
        else if (m->rev != rev)
            o->need_read = 1;
    }
    advance(m);
}

/* The log says the model was deleted (through another node, which wrote the
 * tombstone): it goes here too, its connections told `removed`. m is freed. */
static void
gone_from_log(tp__model *m)
{
    tp_hub *hub = m->hub;
    char *id = tp__strdup(m->id);
    if (id == NULL)
        return;          /* out of memory: the catalog's change removes it */
    hub->cat_applying++; /* no tombstone of its own: the log has one */
    if (m->shared)
        (void)tp_hub_unshare(hub, id);
    else
        (void)tp_session_delete(m->owner, id);
    hub->cat_applying--;
    tp__free(id);
}

void
tp__order_read_done(tp_hub *hub, const char *owner, const char *id, const tp__order_read *res,
                    const tp_error *err)
{
    tp__model *m = model_named(hub, owner, id);
    struct tp__ord *o = m != NULL ? m->ord : NULL;
    if (o == NULL) {
        tp__catalog_read_done(hub, owner, id, res, err); /* a model the catalog makes here */
        return;
    }
    if (o->busy != ORD_READING)
        return;
    o->busy = ORD_IDLE;
    o->wanted = 0;
    tp__ticket_end(hub, o->fresh, err != NULL ? TP_EINTERNAL : TP_OK,
                   err != NULL ? "cluster: the shared log cannot be read; retry" : NULL);
    o->fresh = 0;
    if (err != NULL) {
        char why[sizeof err->message + 48];
        snprintf(why, sizeof why, "cluster: the shared log cannot be read: %s", err->message);
        fail_all(m, why);
        return; /* tried again on the next change, or at resync */
    }
    int was_synced = o->synced;
    switch (res->state) {
    case TP__ORDER_ABSENT:
    case TP__ORDER_DELETED:
        if (res->state == TP__ORDER_DELETED &&
            (o->synced || (hub->cat != NULL && o->put == NULL && o->ticket == 0))) {
            /* Deleted through another node: it goes here too (a node that
             * held it, or whose config made it, never makes it again from
             * its copy; only the host's new model is made after a tombstone). */
            gone_from_log(m);
            return;
        }
        if (!o->synced) {
            /* The log has no such model: this node creates it there, as
             * the config (or the host) made it here. */
            tp__sb rec;
            tp__sb_init(&rec, m->bytes + 64);
            int64_t base = res->state == TP__ORDER_DELETED ? res->rev : 0;
            tp_error aerr = {0, ""};
            int rc = record(&rec, m, NULL, base + 1);
            tp__order_append a = {owner_of(m),
                                  m->id,
                                  base,
                                  "",
                                  0,
                                  rec.buf ? rec.buf->data : "",
                                  rec.buf ? rec.buf->len : 0,
                                  NULL,
                                  NULL,
                                  0,
                                  NULL,
                                  0};
            if (rc == TP_OK && base + 1 != m->rev)
                m->rev = base + 1; /* a model made again goes on from its tombstone */
            if (rc == TP_OK && hub->order->append(hub->order_be, &a, &aerr) == TP_OK)
                o->busy = ORD_APPENDING;
            tp__sb_free(&rec);
            if (o->busy != ORD_APPENDING)
                fail_all(m, "cluster: the shared log cannot take the model");
            return;
        }
        /* Gone from the log under a node that held it: keep what it holds. */
        o->need_read = 0;
        break;
    case TP__ORDER_SNAPSHOT:
        if (load_record(m, res->record, res->record_len, res->rev, 1) != TP_OK) {
            fail_all(m, "cluster: the shared log holds a record this node cannot read");
            return;
        }
        o->synced = 1;
        o->need_read = 0;
        if (!was_synced && o->put != NULL) {
            /* The host put a model the log has a record of (one whose
             * deletion was not logged, or made again at once): its value
             * goes to the log as a host change, under the put's ticket. */
            tp__stamp st;
            tp__stamp_now(hub, &st);
            json_t *v = o->put;
            uint64_t t = o->ticket;
            o->put = NULL;
            o->ticket = 0;
            if (enqueue(m, NULL, v, &st, NULL, NULL, 0, t) != TP_OK)
                tp__ticket_end(hub, t, TP_EINTERNAL, "cluster: the value cannot be queued");
            json_decref(v);
        }
        break;
    case TP__ORDER_ENTRIES:
        o->need_read = 0;
        for (size_t i = 0; i < res->n; i++) {
            const tp__order_entry *e = &res->entries[i];
            if (e->rev <= m->rev)
                continue;
            if (e->kind == 'd' && e->rev == m->rev + 1) {
                gone_from_log(m);
                return;
            }
            if (e->rev != m->rev + 1 || e->kind != 'a' || apply_entry(m, e) != TP_OK) {
                o->synced = 0; /* read the snapshot instead */
                if (was_synced)
                    hub->unsynced++;
                was_synced = 0;
                break;
            }
        }
        break;
    }
    if (!was_synced && o->synced) {
        hub->unsynced--;
        tp__ticket_end(hub, o->ticket, TP_OK, NULL);
        tp__catalog_kick(hub);
    }
    advance(m);
}

void
tp__order_message(tp_hub *hub, const char *owner, const char *id, const tp__order_entry *e)
{
    tp__model *m = model_named(hub, owner, id);
    struct tp__ord *o = m != NULL ? m->ord : NULL;
    if (o == NULL || o->dormant || e->rev <= m->rev)
        return; /* this node's own append, one it read already, or no longer followed */
    if (e->rev > o->seen)
        o->seen = e->rev;
    if (o->busy != ORD_IDLE || !o->synced)
        return; /* the driver reads it once the call in flight answers */
    if (e->rev == m->rev + 1 && e->kind == 'a' && apply_entry(m, e) == TP_OK) {
        advance(m);
        return;
    }
    o->need_read = 1;
    advance(m);
}

void
tp__order_behind(tp__model *m, int64_t rev)
{
    /* Not `seen`: a client's word is not the log's. One read answers it,
     * whatever the rev said (tp__order_read_done clears it). */
    if (rev > m->ord->wanted)
        m->ord->wanted = rev;
    advance(m);
}

static void
each_model(tp_hub *hub, void (*fn)(tp__model *m))
{
    void *v;
    for (size_t it = 0; tp__map_next(&hub->shared, &it, NULL, &v);)
        fn(v);
    for (size_t it = 0; tp__map_next(&hub->tenants, &it, NULL, &v);) {
        tp_session *s = v;
        void *mv;
        for (size_t jt = 0; tp__map_next(&s->models, &jt, NULL, &mv);)
            fn(mv);
    }
}

static void
resync_one(tp__model *m)
{
    if (m->ord != NULL) {
        unstall(m);
        m->ord->need_read = 1;
        advance(m);
    }
}

void
tp__order_resync(tp_hub *hub)
{
    each_model(hub, resync_one);
    tp__catalog_resync(hub);
}

void
tp__order_tick(tp_hub *hub)
{
    int64_t now = tp__hub_now(hub);
    for (size_t i = hub->ord_stalled.len; i-- > 0;) {
        if (i >= hub->ord_stalled.len)
            continue;
        tp__model *m = hub->ord_stalled.items[i];
        while (m->ord->head != NULL && now - m->ord->head->at >= (int64_t)hub->ord_wait_ms)
            fail_op(m, TP_EINTERNAL,
                    "cluster: the shared log cannot be reached; the write was not applied, "
                    "resend");
    }
    tp__catalog_tick(hub);
}

void
tp__order_set_wait(tp_hub *hub, uint32_t wait_ms, size_t max_queued)
{
    hub->ord_wait_ms = wait_ms;
    hub->ord_max_queued = max_queued;
}

size_t
tp__order_unsynced(const tp_hub *hub)
{
    return hub->unsynced + (size_t)tp__catalog_unsynced(hub);
}

void
tp__order_get_stats(const tp_hub *hub, tp__order_stats *out)
{
    *out = hub->ostats;
}

/* ---- Models joining and leaving ---- */

static void
follow(tp__model *m, int on)
{
    tp_hub *hub = m->hub;
    tp_error err = {0, ""};
    if (hub->order->follow(hub->order_be, owner_of(m), m->id, on, &err) != TP_OK)
        tp__log(&hub->log, TP_LOG_WARN, "cluster: cannot %sfollow %s/%s: %s", on ? "" : "stop to ",
                owner_of(m), m->id, err.message);
}

int
tp__order_model_added(tp__model *m)
{
    tp_hub *hub = m->hub;
    if (hub->order == NULL || m->ord != NULL)
        return TP_OK;
    m->ord = tp__calloc(1, sizeof *m->ord);
    if (m->ord == NULL)
        return TP_ENOMEM;
    /* Read (or created) now all the same: a node starts from the log. */
    if (m->shared) {
        for (size_t i = 0; i < m->subs.len; i++)
            m->ord->watchers += ((tp__sub *)m->subs.items[i])->session->conns.len > 0;
        m->ord->dormant = m->ord->watchers == 0;
    } else {
        m->ord->dormant = m->owner->conns.len == 0;
    }
    if (!m->ord->dormant)
        follow(m, 1);
    if (hub->adopt_record != NULL &&
        load_record(m, hub->adopt_record, hub->adopt_len, hub->adopt_rev, 0) == TP_OK) {
        /* Made from the log's record (catalog.c): synced, nothing to create. */
        m->ord->synced = 1;
        m->ord->need_read = 1; /* what came after the record, if anything */
    } else {
        hub->unsynced++;
    }
    advance(m);
    return TP_OK;
}

static void
set_dormant(tp__model *m, int dormant)
{
    struct tp__ord *o = m->ord;
    if (o == NULL || o->dormant == dormant)
        return;
    o->dormant = dormant;
    follow(m, !dormant);
    /* Woken: behind by whatever happened while it slept. Dormant: the next
     * change reads the log first. */
    o->need_read = 1;
    advance(m);
}

void
tp__order_session_seen(tp_session *s, int seen)
{
    void *v;
    for (size_t it = 0; tp__map_next(&s->models, &it, NULL, &v);)
        set_dormant(v, !seen);
    for (size_t it = 0; tp__map_next(&s->subs, &it, NULL, &v);)
        tp__order_watch(((tp__sub *)v)->model, seen);
}

void
tp__order_watch(tp__model *m, int on)
{
    struct tp__ord *o = m->ord;
    if (o == NULL)
        return;
    if (on)
        o->watchers++;
    else if (o->watchers > 0)
        o->watchers--;
    set_dormant(m, o->watchers == 0);
}

void
tp__order_model_gone(tp__model *m)
{
    struct tp__ord *o = m->ord;
    if (o == NULL)
        return;
    tp_hub *hub = m->hub;
    if (!hub->freeing) {
        tp_error err = {0, ""};
        if (!o->dormant)
            (void)hub->order->follow(hub->order_be, owner_of(m), m->id, 0, &err);
        while (o->head != NULL)
            fail_op(m, TP_ENOTFOUND, "id: the model is gone");
        if (!o->synced)
            hub->unsynced--;
        tp__ticket_end(hub, o->ticket, TP_ENOTFOUND, "id: the model is gone");
        tp__ticket_end(hub, o->fresh, TP_OK, NULL);
        /* Deleted here by the host, not by the catalog (another node's
         * deletion, whose tombstone that node wrote): the log gets a
         * tombstone, so that a model made again under the id goes on from
         * its rev instead of loading the old record. */
        if (!hub->cat_applying && o->synced && hub->order->remove != NULL &&
            hub->order->remove(hub->order_be, owner_of(m), m->id, m->rev, &err) != TP_OK)
            tp__log(&hub->log, TP_LOG_WARN, "cluster: the deletion of %s/%s cannot be logged: %s",
                    owner_of(m), m->id, err.message);
    } else {
        while (o->head != NULL)
            op_free(hub, pop(m));
    }
    unstall(m);
    prepared_clear(o);
    tp__free(o->more);
    json_decref(o->put);
    tp__free(o);
    m->ord = NULL;
}

static void
add_one(tp__model *m)
{
    (void)tp__order_model_added(m);
}

void
tp__order_free(tp_hub *hub)
{
    tp__ticket_free(hub);
    tp__catalog_free(hub);
}

int
tp__hub_set_order(tp_hub *hub, const tp__order_ops *ops, void *be, tp_error *err)
{
    if (hub->order != NULL || hub->store != NULL)
        return tp__error_set(err, TP_EARG, "cluster: a hub in the shared order keeps no store");
    hub->order = ops;
    hub->order_be = be;
    if (hub->ord_wait_ms == 0)
        tp__order_set_wait(hub, TP__ORDER_WAIT_MS, TP__ORDER_MAX_QUEUED);
    each_model(hub, add_one);
    return tp__catalog_start(hub, err);
}

/* ---- Changes joining the queue ---- */

static int
enqueue(tp__model *m, json_t *patch, json_t *value, const tp__stamp *stamp, tp_conn *c,
        const char *client, json_int_t ref, uint64_t ticket)
{
    if (m->hub->ord_queued >= m->hub->ord_max_queued)
        return TP_ERATELIMITED;
    tp__op *op = tp__calloc(1, sizeof *op);
    if (op == NULL || (client != NULL && (op->client = tp__strdup(client)) == NULL)) {
        tp__free(op);
        return TP_ENOMEM;
    }
    if (c != NULL) {
        if (tp__vec_push(&c->session->ord_ops, op) != 0) {
            tp__free(op->client);
            tp__free(op);
            return TP_ENOMEM;
        }
        op->session = c->session;
        op->sidx = c->session->ord_ops.len - 1;
        op->conn = c;
        snprintf(op->origin, sizeof op->origin, "%s", c->id);
    } else {
        snprintf(op->origin, sizeof op->origin, "host");
    }
    op->patch = json_incref(patch);
    op->value = json_incref(value);
    op->stamp = *stamp;
    op->ref = ref;
    op->ticket = ticket;
    op->m = m;
    op->at = tp__hub_now(m->hub);
    m->hub->ord_queued++;
    op->check = c != NULL && c->client != NULL && c->client->olog != OLOG_KNOWN;
    if (m->ord->tail != NULL)
        m->ord->tail->next = op;
    else
        m->ord->head = op;
    m->ord->tail = op;
    advance(m);
    return TP_OK;
}

int
tp__order_write(tp__model *m, tp_conn *c, const json_t *patch, const tp__stamp *stamp,
                json_int_t ref)
{
    return enqueue(m, (json_t *)patch, NULL, stamp, c, c->client ? c->client->id : NULL, ref, 0);
}

int
tp__order_host(tp__model *m, json_t *value, const tp__stamp *stamp)
{
    return enqueue(m, NULL, value, stamp, NULL, NULL, 0, 0);
}

int
tp__order_host_patch(tp__model *m, const json_t *patch, const tp__stamp *stamp)
{
    uint64_t t = tp__ticket_open(m->hub);
    int rc = enqueue(m, (json_t *)patch, NULL, stamp, NULL, NULL, 0, t);
    if (rc != TP_OK)
        tp__ticket_end(m->hub, t, rc,
                       rc == TP_ERATELIMITED ? "cluster: too many changes wait for the log"
                                             : "out of memory");
    return TP_OK;
}

uint64_t
tp__order_refresh(tp_hub *hub, const char *owner, const char *id)
{
    tp__model *m = hub->order != NULL ? model_named(hub, owner, id) : NULL;
    struct tp__ord *o = m != NULL ? m->ord : NULL;
    if (o == NULL || !o->synced || o->stalled)
        return 0;
    if (o->fresh == 0 && (o->fresh = tp__ticket_open(hub)) == 0)
        return 0;
    o->need_read = 1;
    advance(m);
    return o->fresh;
}

uint64_t
tp__order_track(tp__model *m)
{
    struct tp__ord *o = m->ord;
    if (o == NULL || o->synced || o->ticket != 0)
        return 0;
    o->ticket = tp__ticket_open(m->hub);
    o->put = json_incref(m->value);
    return o->ticket;
}

int
tp__order_resent(tp_conn *c, const char *client, json_int_t ref)
{
    tp_session *s = c->session;
    for (size_t i = 0; i < s->ord_ops.len; i++) {
        tp__op *op = s->ord_ops.items[i];
        if (op->ref == ref && op->client != NULL && strcmp(op->client, client) == 0) {
            if (op->conn != c)
                op->resent = c;
            return 1;
        }
    }
    return 0;
}

/* Whether the op's append is in flight (it can no longer be called back). */
static int
in_flight(const tp__op *op)
{
    struct tp__ord *o = op->m->ord;
    if (o->busy != ORD_APPENDING)
        return 0;
    size_t i = 0;
    for (tp__op *p = o->head; p != NULL && i < o->nsent; p = p->next, i++)
        if (p == op)
            return 1;
    return 0;
}

/* Takes an op that is not in flight out of its queue. */
static void
unlink_op(tp__op *op)
{
    struct tp__ord *o = op->m->ord;
    tp__op *prev = NULL;
    for (tp__op *p = o->head; p != NULL && p != op; p = p->next)
        prev = p;
    if (prev != NULL)
        prev->next = op->next;
    else
        o->head = op->next;
    if (o->tail == op)
        o->tail = prev;
    op->m->hub->ord_queued--;
}

void
tp__order_conn_gone(tp_conn *c)
{
    tp_session *s = c->session;
    for (size_t i = s->ord_ops.len; i-- > 0;) {
        if (i >= s->ord_ops.len)
            continue;
        tp__op *op = s->ord_ops.items[i];
        if (op->resent == c)
            op->resent = NULL;
        if (op->conn != c)
            continue;
        op->conn = NULL;
        if (op->resent != NULL || in_flight(op))
            continue; /* sent again on a live connection, or already in the log's hands */
        /* Never applied, never acked: dropped, so that the client's resend
         * (here or on another node) is the one applied. */
        tp__model *m = op->m;
        unlink_op(op);
        op_free(c->hub, op);
        advance(m);
    }
}

/* ---- Clients' outcomes ---- */

void
tp__order_client_named(tp__client *cl)
{
    tp_hub *hub = cl->session->hub;
    if (hub->order->outcomes == NULL || cl->olog == OLOG_LOADING)
        return;
    tp_error err = {0, ""};
    if (hub->order->outcomes(hub->order_be, cl->session->tenant, cl->id, &err) == TP_OK)
        cl->olog = OLOG_LOADING;
    else
        cl->olog = OLOG_UNKNOWN; /* its writes are refused until it is read */
}

int
tp__order_client_loading(const tp__client *cl)
{
    return cl->olog != OLOG_KNOWN;
}

void
tp__order_outcomes_done(tp_hub *hub, const char *tenant, const char *client,
                        const tp__order_outcomes *res, const tp_error *err)
{
    tp_session *s = tp__map_get(&hub->tenants, tenant);
    tp__client *cl = s != NULL ? tp__map_get(&s->clients, client) : NULL;
    if (cl == NULL || cl->olog != OLOG_LOADING)
        return;
    if (err != NULL) {
        cl->olog = OLOG_UNKNOWN;
        tp__log(&hub->log, TP_LOG_WARN,
                "cluster: the outcomes of a client of tenant %s cannot be read: %s", tenant,
                err->message);
    } else {
        tp__client_merge(cl, res);
        cl->olog = OLOG_KNOWN;
    }
    /* Its writes waiting at the head of their queues go on. */
    tp__vec models = {0};
    for (size_t i = 0; i < s->ord_ops.len; i++) {
        tp__op *op = s->ord_ops.items[i];
        if (op->check && strcmp(op->client, client) == 0 && op->m->ord->head == op)
            (void)tp__vec_push(&models, op->m);
    }
    for (size_t i = 0; i < models.len; i++)
        advance(models.items[i]);
    tp__vec_free(&models);
}
