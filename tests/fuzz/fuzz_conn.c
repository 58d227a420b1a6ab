/*
 * fuzz_conn: the protocol end to end through tp_conn (src/core/conn.c,
 * hub.c, model.c, merge.c, outbox.c), as a client that may send anything.
 *
 * The world: a hub with four schemas (plain "Document", nested "Order",
 * "Constrained", "Board" with additionalProperties: false), tenants alice,
 * bob and carol, private models (alice: notes, order; bob: notes, c) and
 * shared models roadmap (lww; alice write, bob read), board (lww-map; alice
 * and bob write), order (lww; bob write, carol read) and veto (a custom
 * merge that refuses some writes, fails others, and keeps a reference to
 * the value it was given, which the hub must not change; alice and carol
 * write).
 * Six connection slots: 0-2 alice, 3-4 bob, 5 carol; 1 and 4 open with
 * TP_CONN_RESUME. The clock is fake and only moves when the input says so.
 *
 * Input: lines. The first byte of a line says what to do with the rest:
 *   0-5 TEXT       feed TEXT as one frame to that slot (opened first if closed)
 *   o S [r]        (re)open slot S, with TP_CONN_RESUME when 'r' follows
 *   x S            close slot S            d S  drain slot S    n S  take one frame
 *   D              drain every ready connection (tp_hub_next_ready)
 *   s              tp_hub_sync             c    checkpoint (below)
 *   t N            advance the clock by N ms (decimal)
 *   h I JSON       tp_hub_set_shared on shared model I
 *   p T I JSON     tp_session_set on tenant T's private model I
 *   H T K JSON     tp_session_host for tenant T with schema K
 *   X T I          tp_session_delete      R K M JSON  tp_hub_share (M: 0 lww, 1 lww-map, 2 custom)
 *   Z I            tp_hub_unshare          S T I r|w   tp_hub_subscribe     U T I  unsubscribe
 *   L P            (first line only) limits profile P: 0 small, 1 tiny, 2 the defaults
 * S, T, I, K, M, P are single bytes taken modulo the count (so any byte
 * works); a missing argument counts as 0. Other lines are ignored.
 *
 * Checked on every frame drained: valid JSON; a batch (array) of at most
 * 64 KiB, a single message of at most max_message_bytes; hello first and
 * once, synced at most once; nothing but hello while a resumed connection
 * waits for its first message; every patch continues the rev the
 * connection holds (from == last rev, rev == from + 1), except answers to a
 * resume the input sent, which continue a rev it listed; every fed message
 * with an integer ref is answered exactly once, in order, with that ref (ack
 * or error for a write, pong or error for a ping), except a resume, which
 * gets an error with its ref exactly when it is refused (malformed models or
 * client, or a second client name);
 * an ack with `from` continues the rev held, or is an old outcome replayed;
 * snapshot values validate against their model's schema; presence and
 * presence_snapshot only about a held model, from another connection the hub
 * made (of the same tenant for a private model), with states of at most
 * 4 KiB; every replica
 * computed from a snapshot, a patch or a private writer's own patch agrees
 * with every other replica of that model at that rev; no connection is
 * closed with 1011 (internal error), nor with 1009 unless it sent too much.
 * At a checkpoint (and at the end): after tp_hub_sync and a full drain, the
 * server's value of every model validates against its schema and equals
 * the replicas at its rev, and every open connection holds exactly the
 * models its tenant can see, at the server's rev, with the right access.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "transports.h"

/* ---- The schemas (tests/cases/schema/{plain,nested,constrained,forbid}) ---- */

static const char *const schema_texts[] = {
    /* plain: "Document" */
    "{\"properties\":{\"title\":{\"title\":\"Title\",\"type\":\"string\"},\"body\":{\"defau"
    "lt\":\"\",\"title\":\"Body\",\"type\":\"string\"},\"tags\":{\"default\":[],\"items\":{"
    "\"type\":\"string\"},\"title\":\"Tags\",\"type\":\"array\"},\"views\":{\"default\":0,\""
    "title\":\"Views\",\"type\":\"integer\"},\"published\":{\"default\":false,\"title\":\"P"
    "ublished\",\"type\":\"boolean\"},\"rating\":{\"default\":0.5,\"title\":\"Rating\",\"ty"
    "pe\":\"number\"}},\"required\":[\"title\"],\"title\":\"Document\",\"type\":\"object\"}",
    /* nested: "Order" */
    "{\"$defs\":{\"Address\":{\"properties\":{\"street\":{\"title\":\"Street\",\"type\":\"s"
    "tring\"},\"city\":{\"title\":\"City\",\"type\":\"string\"},\"country\":{\"default\":\""
    "FR\",\"title\":\"Country\",\"type\":\"string\"}},\"required\":[\"street\",\"city\"],\""
    "title\":\"Address\",\"type\":\"object\"},\"Customer\":{\"properties\":{\"name\":{\"tit"
    "le\":\"Name\",\"type\":\"string\"},\"address\":{\"$ref\":\"#/$defs/Address\"}},\"requi"
    "red\":[\"name\",\"address\"],\"title\":\"Customer\",\"type\":\"object\"},\"Line\":{\"p"
    "roperties\":{\"sku\":{\"title\":\"Sku\",\"type\":\"string\"},\"qty\":{\"minimum\":1,\""
    "title\":\"Qty\",\"type\":\"integer\"},\"price\":{\"exclusiveMinimum\":0,\"title\":\"Pr"
    "ice\",\"type\":\"number\"},\"gift\":{\"default\":false,\"title\":\"Gift\",\"type\":\"b"
    "oolean\"}},\"required\":[\"sku\",\"qty\",\"price\"],\"title\":\"Line\",\"type\":\"obje"
    "ct\"}},\"properties\":{\"customer\":{\"$ref\":\"#/$defs/Customer\"},\"lines\":{\"defau"
    "lt\":[],\"items\":{\"$ref\":\"#/$defs/Line\"},\"title\":\"Lines\",\"type\":\"array\"},"
    "\"shipping\":{\"anyOf\":[{\"$ref\":\"#/$defs/Address\"},{\"type\":\"null\"}],\"default"
    "\":null},\"notes\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"null\"}],\"title\":\""
    "Notes\"}},\"required\":[\"customer\",\"notes\"],\"title\":\"Order\",\"type\":\"object\""
    "}",
    /* constrained: "Constrained" */
    "{\"properties\":{\"name\":{\"maxLength\":5,\"minLength\":2,\"title\":\"Name\",\"type\""
    ":\"string\"},\"code\":{\"pattern\":\"^[A-Z]{3}-\\\\d{3}$\",\"title\":\"Code\",\"type\""
    ":\"string\"},\"qty\":{\"default\":1,\"maximum\":10,\"minimum\":1,\"title\":\"Qty\",\"t"
    "ype\":\"integer\"},\"price\":{\"default\":1.0,\"exclusiveMaximum\":100,\"exclusiveMini"
    "mum\":0,\"title\":\"Price\",\"type\":\"number\"},\"step\":{\"default\":0,\"multipleOf\""
    ":5,\"title\":\"Step\",\"type\":\"integer\"},\"ratio\":{\"default\":0.5,\"multipleOf\":"
    "0.25,\"title\":\"Ratio\",\"type\":\"number\"},\"tags\":{\"default\":[\"a\"],\"items\":"
    "{\"type\":\"string\"},\"maxItems\":3,\"minItems\":1,\"title\":\"Tags\",\"type\":\"arra"
    "y\"},\"ids\":{\"default\":[],\"items\":{\"type\":\"integer\"},\"title\":\"Ids\",\"type"
    "\":\"array\",\"uniqueItems\":true},\"point\":{\"default\":[0,0],\"maxItems\":2,\"minIt"
    "ems\":2,\"prefixItems\":[{\"type\":\"integer\"},{\"type\":\"integer\"}],\"title\":\"Po"
    "int\",\"type\":\"array\"}},\"required\":[\"name\",\"code\"],\"title\":\"Constrained\","
    "\"type\":\"object\"}",
    /* forbid: "Board" */
    "{\"$defs\":{\"Item\":{\"additionalProperties\":false,\"properties\":{\"label\":{\"titl"
    "e\":\"Label\",\"type\":\"string\"},\"done\":{\"default\":false,\"title\":\"Done\",\"ty"
    "pe\":\"boolean\"}},\"required\":[\"label\"],\"title\":\"Item\",\"type\":\"object\"}},\""
    "additionalProperties\":false,\"properties\":{\"name\":{\"title\":\"Name\",\"type\":\"s"
    "tring\"},\"counts\":{\"additionalProperties\":{\"type\":\"integer\"},\"default\":{},\""
    "title\":\"Counts\",\"type\":\"object\"},\"items\":{\"additionalProperties\":{\"$ref\":"
    "\"#/$defs/Item\"},\"default\":{},\"title\":\"Items\",\"type\":\"object\"}},\"required\""
    ":[\"name\"],\"title\":\"Board\",\"type\":\"object\"}",
};

enum { SCH_DOC, SCH_ORDER, SCH_CONSTRAINED, SCH_BOARD, NSCHEMAS };

/* Loaded once: schemas are immutable and reference counted, and a hub holds
 * its own references. */
static tp_schema *schemas[NSCHEMAS];

static void
load_schemas(void)
{
    if (schemas[0] != NULL)
        return;
    for (int i = 0; i < NSCHEMAS; i++) {
        tp_error err;
        schemas[i] = tp_schema_new(schema_texts[i], &err);
        TPF_CHECK(schemas[i] != NULL, "schema %d does not load: %s", i, err.message);
    }
}

/* ---- The custom merge strategy of the shared model "veto" ---- */

/* What the strategy keeps between calls (its `user`): a reference to the
 * last value it was given, as a strategy may, and a copy to tell whether the
 * hub changed that value under it (it must copy a root someone else holds). */
typedef struct veto_state {
    json_t *held, *copy;
} veto_state;

/* RFC 7396, except that a patch setting name to "VETO" is refused and one
 * setting step to 35 makes the strategy return a non-object (an internal
 * error the hub must report, not trust). */
static json_t *
veto_merge(void *user, const json_t *current, const json_t *patch, const tp_origin *origin,
           tp_error *err)
{
    veto_state *vs = user;
    TPF_CHECK(origin != NULL && origin->conn != NULL, "a merge without an origin");
    TPF_CHECK((origin->tenant == NULL) == (strcmp(origin->conn, "host") == 0),
              "merge origin: tenant %s with conn %s", origin->tenant ? origin->tenant : "NULL",
              origin->conn);
    if (vs->held != NULL && !json_equal(vs->held, vs->copy)) {
        char *a = tpf_dump(vs->copy), *b = tpf_dump(vs->held);
        tpf_fail("the hub changed a value a merge strategy holds: %s became %s", a, b);
    }
    json_decref(vs->held);
    json_decref(vs->copy);
    vs->held = json_incref((json_t *)current);
    vs->copy = json_deep_copy(current);
    const json_t *name = json_object_get(patch, "name");
    if (json_is_string(name) && strcmp(json_string_value(name), "VETO") == 0) {
        err->code = TP_EREJECTED;
        snprintf(err->message, sizeof err->message, "name: vetoed");
        return NULL;
    }
    const json_t *step = json_object_get(patch, "step");
    if (json_is_integer(step) && json_integer_value(step) == 35)
        return json_array();
    return tp_merge_patch_apply(current, patch);
}

/* ---- The world as the harness knows it ---- */

#define NTENANTS 3
#define NSLOTS 6
#define MAXPRIV 8
#define MAXSHARED 8

static const char *const tenants[NTENANTS] = {"alice", "bob", "carol"};
static const int slot_tenant[NSLOTS] = {0, 0, 0, 1, 1, 2};

typedef struct hmodel {
    char id[32];
    int schema;
    int live;
} hmodel;

typedef struct hshared {
    char sid[32];
    int schema;
    int live;
    int access[NTENANTS]; /* 0: not subscribed, else TP_READ or TP_WRITE */
} hshared;

typedef struct slot {
    tp_conn *c;
    int awaiting;     /* opened with TP_CONN_RESUME, no message handled yet */
    int got_hello;    /* messages drained so far */
    int synced;       /* `synced` messages seen */
    int oversized;    /* fed a frame over max_message_bytes */
    int big_presence; /* fed a presence state over 4 KiB: too_large, the connection stays */
    char client[260]; /* the client id the connection named itself with, or "" */
    json_t *models;   /* "p:<id>" / "s:<sid>" -> {"rev": n, "access": "read"|"write"} */
    /* For the frame being fed: */
    json_t *claims; /* key -> [revs listed by a resume] */
    json_t *expect; /* [{"ref", "type", "key", "patch"}]: messages owed an answer */
    size_t answered;
} slot;

typedef struct world {
    tp_hub *hub;
    int64_t now;
    tp_limits limits;
    hmodel priv[NTENANTS][MAXPRIV];
    int npriv[NTENANTS];
    hshared shared[MAXSHARED];
    int nshared;
    json_t *hist;    /* global model key -> {"<rev>": value}: every replica at every rev */
    json_t *checked; /* global model key -> the server's text last found valid */
    json_t *conns;   /* every connection id handed out -> its tenant's index */
    veto_state veto;
    tp_merge veto_strategy;
    slot slots[NSLOTS];
} world;

/* TPF_TRACE=1 in the environment prints every line run and every frame
 * drained on stderr: how to read a reproducer. */
static int tracing = -1;

static void
trace(int si, const char *dir, const void *text, size_t len)
{
    if (tracing < 0)
        tracing = getenv("TPF_TRACE") != NULL;
    if (tracing)
        fprintf(stderr, "[%d] %s %.*s\n", si, dir, (int)len, (const char *)text);
}

static int64_t
fake_clock(void *user)
{
    return *(const int64_t *)user;
}

static const char *
access_name(int a)
{
    return a == TP_WRITE ? "write" : "read";
}

static hmodel *
find_priv(world *w, int t, const char *id)
{
    for (int i = 0; i < w->npriv[t]; i++)
        if (strcmp(w->priv[t][i].id, id) == 0)
            return &w->priv[t][i];
    return NULL;
}

static hshared *
find_shared(world *w, const char *sid)
{
    for (int i = 0; i < w->nshared; i++)
        if (strcmp(w->shared[i].sid, sid) == 0)
            return &w->shared[i];
    return NULL;
}

/* The key of a model in a slot's table, and in the world's history. */
static void
slot_key(char *out, size_t n, int shared, const char *id)
{
    snprintf(out, n, "%c:%s", shared ? 's' : 'p', id);
}

static void
world_key(char *out, size_t n, int tenant, int shared, const char *id)
{
    if (shared)
        snprintf(out, n, "s:%s", id);
    else
        snprintf(out, n, "p:%s:%s", tenants[tenant], id);
}

/* ---- Replicas: the value of every model at every rev seen ---- */

static json_t *
hist_get(world *w, const char *wkey, json_int_t rev)
{
    char r[32];
    snprintf(r, sizeof r, "%lld", (long long)rev);
    return json_object_get(json_object_get(w->hist, wkey), r);
}

/* Records a replica's value at a rev; every replica must agree. */
/* The only null members a stored value holds are those of a required
 * Optional[X]: of these schemas, Order's top-level "notes". */
static int
kept_nulls_only(const json_t *v)
{
    const char *key;
    json_t *m;
    json_object_foreach((json_t *)v, key, m)
    {
        if (json_is_null(m) ? strcmp(key, "notes") != 0 : tpf_has_null_member(m))
            return 0;
    }
    return 1;
}

static void
hist_put(world *w, const char *wkey, json_int_t rev, json_t *full, const char *how)
{
    char r[32];
    /* Replicas compare without null members: a client applying a patch
     * deletes a member set to null, where the server keeps the null of a
     * required Optional[X] (Order.notes). */
    json_t *value = tpf_strip_nulls(full);
    snprintf(r, sizeof r, "%lld", (long long)rev);
    json_t *revs = json_object_get(w->hist, wkey);
    if (revs == NULL) {
        revs = json_object();
        TPF_CHECK(revs != NULL && json_object_set_new(w->hist, wkey, revs) == 0, "out of memory");
    }
    json_t *had = json_object_get(revs, r);
    if (had != NULL) {
        if (!json_equal(had, value)) {
            char *a = tpf_dump(had), *b = tpf_dump(value);
            tpf_fail("%s at rev %s: two replicas disagree: %s, and from %s: %s", wkey, r, a, how,
                     b);
        }
        json_decref(value);
        return;
    }
    TPF_CHECK(json_object_set_new(revs, r, value) == 0, "out of memory");
}

/* ---- Frames and messages ---- */

static const char *
str(const json_t *msg, const char *key)
{
    return json_string_value(json_object_get(msg, key));
}

static int
has_int(const json_t *msg, const char *key, json_int_t *out)
{
    const json_t *v = json_object_get(msg, key);
    if (!json_is_integer(v))
        return 0;
    *out = json_integer_value(v);
    return 1;
}

static void
check_schema_value(const tp_schema *schema, const json_t *value, const char *what)
{
    char *text = tpf_dump(value);
    tp_error err;
    int rc = tp_schema_validate(schema, text, &err);
    if (rc != TP_OK)
        tpf_fail("%s does not validate against %s: %s: %s", what, tp_schema_title(schema),
                 err.message, text);
    free(text);
}

/* The schema of a model a tenant sees, or -1 when the harness never made it. */
static int
schema_of(world *w, int tenant, int shared, const char *id)
{
    if (shared) {
        hshared *h = find_shared(w, id);
        return h ? h->schema : -1;
    }
    hmodel *m = find_priv(w, tenant, id);
    return m ? m->schema : -1;
}

/* The next message owed an answer with a ref, checked against the answer. */
static json_t *
expect_next(slot *s, const char *type, json_int_t ref)
{
    if (s->answered >= json_array_size(s->expect))
        tpf_fail("%s with ref %lld answers no message sent", type, (long long)ref);
    json_t *e = json_array_get(s->expect, s->answered++);
    json_int_t want = json_integer_value(json_object_get(e, "ref"));
    TPF_CHECK(want == ref, "%s with ref %lld, but the next message owed an answer has ref %lld",
              type, (long long)ref, (long long)want);
    return e;
}

static int
claimed(const slot *s, const char *key, json_int_t rev)
{
    const json_t *revs = json_object_get(s->claims, key);
    for (size_t i = 0; i < json_array_size(revs); i++)
        if (json_integer_value(json_array_get(revs, i)) == rev)
            return 1;
    return 0;
}

static void
track(slot *s, const char *key, json_int_t rev, const char *access)
{
    json_t *t = json_pack("{s:I,s:s}", "rev", (json_int_t)rev, "access", access);
    TPF_CHECK(t != NULL && json_object_set_new(s->models, key, t) == 0, "out of memory");
}

/* One message a connection received. */
static void
on_message(world *w, int si, const json_t *msg, int in_feed)
{
    slot *s = &w->slots[si];
    int tenant = slot_tenant[si];
    TPF_CHECK(json_is_object(msg), "slot %d: a message that is not an object", si);
    const char *type = str(msg, "type");
    TPF_CHECK(type != NULL, "slot %d: a message without a type", si);
    if (!s->got_hello) {
        TPF_CHECK(strcmp(type, "hello") == 0, "slot %d: first message %s, not hello", si, type);
        json_int_t proto = 0, maxb = 0, tick = -1;
        TPF_CHECK(has_int(msg, "protocol", &proto) && proto == 1, "hello: protocol");
        TPF_CHECK(str(msg, "tenant") && strcmp(str(msg, "tenant"), tenants[tenant]) == 0,
                  "hello: tenant");
        TPF_CHECK(str(msg, "conn") && strcmp(str(msg, "conn"), tp_conn_id(s->c)) == 0,
                  "hello: conn");
        TPF_CHECK(has_int(msg, "max_message_bytes", &maxb) &&
                      (size_t)maxb == w->limits.max_message_bytes,
                  "hello: max_message_bytes");
        TPF_CHECK(has_int(msg, "tick_ms", &tick) && tick == 50, "hello: tick_ms");
        s->got_hello = 1;
        return;
    }
    TPF_CHECK(strcmp(type, "hello") != 0, "slot %d: a second hello", si);
    /* PROTOCOL.md: a connection waiting for its resume gets nothing more. */
    TPF_CHECK(in_feed || !s->awaiting, "slot %d: %s while waiting for the first resume", si, type);

    if (strcmp(type, "synced") == 0) {
        TPF_CHECK(++s->synced == 1, "slot %d: synced twice", si);
        return;
    }
    if (strcmp(type, "pong") == 0) {
        json_int_t ref;
        TPF_CHECK(has_int(msg, "ref", &ref), "pong without an integer ref");
        json_t *e = expect_next(s, "pong", ref);
        const char *et = str(e, "type");
        TPF_CHECK(et && strcmp(et, "ping") == 0, "pong answering a %s", et ? et : "message");
        return;
    }
    if (strcmp(type, "error") == 0) {
        static const char *const codes[] = {"bad_request",  "not_found", "forbidden",
                                            "invalid",      "rejected",  "too_large",
                                            "rate_limited", "duplicate", "internal"};
        const char *code = str(msg, "code"), *message = str(msg, "message");
        int known = 0;
        for (size_t i = 0; code && i < sizeof codes / sizeof *codes; i++)
            known |= strcmp(code, codes[i]) == 0;
        TPF_CHECK(known, "error with code %s", code ? code : "(none)");
        TPF_CHECK(message != NULL && message[0] != '\0', "error without a message");
        TPF_CHECK(strcmp(code, "too_large") != 0 || s->oversized || s->big_presence,
                  "too_large for a small frame");
        json_int_t ref;
        if (has_int(msg, "ref", &ref))
            expect_next(s, "error", ref);
        else
            TPF_CHECK(json_object_get(msg, "ref") == NULL, "error with a ref not an integer");
        return;
    }

    /* Every other message names a model. */
    const char *scope = str(msg, "scope"), *id = str(msg, "id");
    TPF_CHECK(scope && (strcmp(scope, "private") == 0 || strcmp(scope, "shared") == 0), "%s: scope",
              type);
    TPF_CHECK(id != NULL, "%s: id", type);
    if (strlen(id) != json_string_length(json_object_get(msg, "id"))) {
        /* An id holding NUL names no model: only a resume's answer echoes it. */
        TPF_CHECK(strcmp(type, "removed") == 0, "%s of a model whose id holds NUL", type);
        return;
    }
    int shared = scope[0] == 's';
    char key[320], wkey[340];
    slot_key(key, sizeof key, shared, id);
    world_key(wkey, sizeof wkey, tenant, shared, id);
    json_t *t = json_object_get(s->models, key);
    json_int_t held = t ? json_integer_value(json_object_get(t, "rev")) : -1;

    if (strcmp(type, "presence") == 0 || strcmp(type, "presence_snapshot") == 0) {
        /* Issue 17: only about a model the connection holds, from another
         * connection (named by its id, never a tenant key), of the same
         * tenant for a private model; a state is an object of at most 4 KiB,
         * or null (left) in a presence message. */
        TPF_CHECK(t != NULL, "slot %d: %s for %s, a model it does not hold", si, type, key);
        int snap = type[8] == '_';
        const json_t *peers = json_object_get(msg, "peers");
        TPF_CHECK(!snap || (json_is_array(peers) && json_array_size(peers) > 0),
                  "presence_snapshot: peers");
        size_t n = snap ? json_array_size(peers) : 1;
        for (size_t i = 0; i < n; i++) {
            const json_t *p = snap ? json_array_get(peers, i) : msg;
            const char *conn = str(p, "conn");
            const json_t *state = json_object_get(p, "state");
            TPF_CHECK(conn != NULL && strcmp(conn, tp_conn_id(s->c)) != 0,
                      "slot %d: %s: conn is missing or its own", si, type);
            const json_t *ct = json_object_get(w->conns, conn);
            TPF_CHECK(ct != NULL, "%s: conn %s was never handed out", type, conn);
            TPF_CHECK(shared || json_integer_value(ct) == tenant,
                      "%s: private presence of another tenant's connection", type);
            TPF_CHECK(json_is_object(state) || (!snap && json_is_null(state)), "%s: state", type);
            TPF_CHECK(json_is_null(state) || json_dumpb(state, NULL, 0, JSON_COMPACT) <= 4096,
                      "%s: a state over 4 KiB", type);
        }
        return;
    }
    if (strcmp(type, "snapshot") == 0) {
        json_int_t rev;
        const char *access = str(msg, "access"), *title = str(msg, "schema");
        json_t *value = json_object_get(msg, "value");
        TPF_CHECK(has_int(msg, "rev", &rev) && rev >= 1, "snapshot: rev");
        TPF_CHECK(access && (strcmp(access, "read") == 0 || strcmp(access, "write") == 0),
                  "snapshot: access");
        TPF_CHECK(shared || strcmp(access, "write") == 0, "snapshot: a private model read-only");
        TPF_CHECK(json_is_object(value), "snapshot: value is not an object");
        TPF_CHECK(kept_nulls_only(value), "snapshot: a value with a null member");
        int k = schema_of(w, tenant, shared, id);
        TPF_CHECK(k >= 0, "snapshot of %s, a model never made for %s", key, tenants[tenant]);
        TPF_CHECK(title && strcmp(title, tp_schema_title(schemas[k])) == 0, "snapshot: schema");
        /* Validated once per rev: every later snapshot at that rev must equal it. */
        if (hist_get(w, wkey, rev) == NULL)
            check_schema_value(schemas[k], value, "a snapshot's value");
        hist_put(w, wkey, rev, value, "a snapshot");
        track(s, key, rev, access);
        return;
    }
    if (strcmp(type, "patch") == 0) {
        json_int_t from, rev;
        const char *origin = str(msg, "origin");
        json_t *patch = json_object_get(msg, "patch");
        TPF_CHECK(has_int(msg, "from", &from) && has_int(msg, "rev", &rev), "patch: from, rev");
        TPF_CHECK(rev == from + 1, "patch: from %lld, rev %lld", (long long)from, (long long)rev);
        TPF_CHECK(json_is_object(patch), "patch: not an object");
        TPF_CHECK(origin && (strcmp(origin, "host") == 0 || origin[0] == 'c'), "patch: origin");
        if (from != held && !claimed(s, key, from))
            tpf_fail("slot %d: %s patch from %lld, but the connection holds rev %lld", si, key,
                     (long long)from, (long long)held);
        const char *access = t ? str(t, "access") : NULL;
        if (access == NULL) {
            /* Continuing a rev a resume listed for a model never received. */
            hshared *h = shared ? find_shared(w, id) : NULL;
            access = h ? access_name(h->access[tenant]) : "write";
        }
        json_t *base = hist_get(w, wkey, from);
        if (base != NULL) {
            json_t *next = tp_merge_patch_apply(base, patch);
            TPF_CHECK(next != NULL, "out of memory");
            hist_put(w, wkey, rev, next, "a patch");
            json_decref(next);
        }
        track(s, key, rev, access);
        return;
    }
    if (strcmp(type, "ack") == 0) {
        json_int_t ref, rev, from;
        TPF_CHECK(has_int(msg, "ref", &ref) && has_int(msg, "rev", &rev), "ack: ref, rev");
        json_t *e = expect_next(s, "ack", ref);
        const char *et = str(e, "type");
        TPF_CHECK(et && strcmp(et, "write") == 0, "ack answering a %s", et ? et : "message");
        const char *ek = str(e, "key");
        if (ek == NULL || strcmp(ek, key) != 0) {
            /* Only an outcome replayed from the exactly-once memory (the
             * ref was used before, for another model) answers so. */
            TPF_CHECK(t == NULL || rev <= held,
                      "slot %d: ack for %s at rev %lld (holds %lld) answering a write to %s", si,
                      key, (long long)rev, (long long)held, ek ? ek : "(nothing)");
            return;
        }
        if (has_int(msg, "from", &from)) {
            TPF_CHECK(!shared, "ack with from for a shared write");
            TPF_CHECK(rev == from + 1, "ack: from %lld, rev %lld", (long long)from, (long long)rev);
            if (t != NULL && from == held) {
                /* The writer applies its own patch as sent, nulls stripped. */
                json_t *base = hist_get(w, wkey, from);
                json_t *patch = json_object_get(e, "patch");
                if (base != NULL && patch != NULL) {
                    json_t *applied = tp_merge_patch_apply(base, patch);
                    TPF_CHECK(applied != NULL, "out of memory");
                    json_t *next = tpf_strip_nulls(applied);
                    hist_put(w, wkey, rev, next, "the writer's own patch");
                    json_decref(next);
                    json_decref(applied);
                }
                json_object_set_new(t, "rev", json_integer(rev));
            } else if (t != NULL && rev > held) {
                /* An outcome replayed from the exactly-once memory is older
                 * than what the connection holds; a fresh one continues it. */
                tpf_fail("slot %d: %s ack from %lld rev %lld, but the connection holds rev %lld",
                         si, key, (long long)from, (long long)rev, (long long)held);
            }
        } else if (t != NULL) {
            /* A shared writer got the patch first; a write that changed
             * nothing is acked at the current rev. */
            TPF_CHECK(rev <= held, "slot %d: %s ack at rev %lld before the patch (holds %lld)", si,
                      key, (long long)rev, (long long)held);
        }
        return;
    }
    if (strcmp(type, "access") == 0) {
        const char *access = str(msg, "access");
        TPF_CHECK(shared, "access for a private model");
        TPF_CHECK(access && (strcmp(access, "read") == 0 || strcmp(access, "write") == 0),
                  "access: access");
        TPF_CHECK(t != NULL || json_object_get(s->claims, key) != NULL,
                  "slot %d: access for %s, a model it does not hold", si, key);
        if (t != NULL)
            json_object_set_new(t, "access", json_string(access));
        return;
    }
    if (strcmp(type, "removed") == 0) {
        json_object_del(s->models, key);
        return;
    }
    tpf_fail("slot %d: a message of unknown type %s", si, type);
}

static void
on_frame(world *w, int si, const char *frame, size_t len, int in_feed)
{
    json_error_t jerr;
    json_t *v =
        json_loadb(frame, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (v == NULL)
        tpf_fail("slot %d: a frame that is not JSON (%s): %.*s", si, jerr.text, (int)len, frame);
    if (json_is_array(v)) {
        TPF_CHECK(len <= 64 * 1024, "a batch frame of %zu bytes", len);
        TPF_CHECK(json_array_size(v) >= 2, "a batch of %zu messages", json_array_size(v));
        for (size_t i = 0; i < json_array_size(v); i++)
            on_message(w, si, json_array_get(v, i), in_feed);
    } else {
        TPF_CHECK(len <= w->limits.max_message_bytes, "a message of %zu bytes", len);
        on_message(w, si, v, in_feed);
    }
    json_decref(v);
}

static void slot_close(world *w, int si);

/* Takes everything a slot's connection has to send (or one frame, when
 * `one`); closes it when the hub says it must be closed. */
static void
drain_some(world *w, int si, int in_feed, int one)
{
    slot *s = &w->slots[si];
    if (s->c == NULL)
        return;
    const char *frame;
    size_t len;
    while ((frame = tp_conn_next_frame(s->c, &len)) != NULL) {
        trace(si, "<-", frame, len);
        on_frame(w, si, frame, len, in_feed);
        if (one)
            break;
    }
    int code = tp_conn_close_code(s->c);
    if (code != 0) {
        trace(si, "closed", code == 1013 ? "1013" : code == 1009 ? "1009" : "?", 4);
        TPF_CHECK(code != 1011, "slot %d: closed with 1011 (internal error)", si);
        TPF_CHECK(code == 1013 || (code == 1009 && s->oversized), "slot %d: closed with %d", si,
                  code);
        slot_close(w, si);
    }
}

static void
drain(world *w, int si, int in_feed)
{
    drain_some(w, si, in_feed, 0);
}

static void
slot_reset(slot *s)
{
    json_decref(s->models);
    json_decref(s->claims);
    json_decref(s->expect);
    memset(s, 0, sizeof *s);
}

static void
slot_close(world *w, int si)
{
    slot *s = &w->slots[si];
    if (s->c == NULL)
        return;
    tp_conn_close(s->c);
    slot_reset(s);
}

static void
slot_open(world *w, int si, int resume)
{
    slot *s = &w->slots[si];
    if (s->c != NULL) {
        drain(w, si, 0);
        slot_close(w, si);
    }
    tp_error err;
    s->c = tp_conn_open(w->hub, tenants[slot_tenant[si]], resume ? TP_CONN_RESUME : 0, &err);
    TPF_CHECK(s->c != NULL, "tp_conn_open: %s", err.message);
    TPF_CHECK(strcmp(tp_conn_tenant(s->c), tenants[slot_tenant[si]]) == 0, "tp_conn_tenant");
    tp_conn_set_user(s->c, s);
    TPF_CHECK(json_object_set_new(w->conns, tp_conn_id(s->c), json_integer(slot_tenant[si])) == 0,
              "out of memory");
    s->models = json_object();
    s->claims = json_object();
    s->expect = json_array();
    TPF_CHECK(s->models && s->claims && s->expect, "out of memory");
    s->awaiting = resume;
}

/* PROTOCOL.md, exactly once: whether naming the client succeeds (an absent
 * id does; a malformed one, or another name than the first, does not), and
 * the name it leaves. */
static int
name_client(slot *s, const json_t *jid)
{
    if (jid == NULL)
        return 1;
    const char *id = json_string_value(jid);
    size_t len = json_string_length(jid), chars = 0;
    if (id == NULL || len == 0 || len > 4 * 64 || strlen(id) != len)
        return 0;
    for (size_t i = 0; i < len; i++)
        chars += ((unsigned char)id[i] & 0xC0) != 0x80;
    if (chars > 64)
        return 0;
    if (s->client[0] != '\0')
        return strcmp(s->client, id) == 0;
    snprintf(s->client, sizeof s->client, "%s", id);
    return 1;
}

/* Whether a resume's models are well formed (PROTOCOL.md: a list of
 * {scope, id, rev}, rev an integer >= 0; absent means empty). */
static int
models_ok(const json_t *models)
{
    if (models == NULL)
        return 1;
    if (!json_is_array(models))
        return 0;
    for (size_t i = 0; i < json_array_size(models); i++) {
        const json_t *m = json_array_get(models, i);
        const char *scope = str(m, "scope");
        json_int_t rev;
        if (!json_is_object(m) || scope == NULL ||
            (strcmp(scope, "private") != 0 && strcmp(scope, "shared") != 0) ||
            !json_is_string(json_object_get(m, "id")) || !has_int(m, "rev", &rev) || rev < 0)
            return 0;
    }
    return 1;
}

/* What the harness expects from a frame: the answers owed, the revs a
 * resume lists. Parsed as the hub parses it. */
static void
expect_frame(world *w, int si, const uint8_t *text, size_t len)
{
    slot *s = &w->slots[si];
    if (len > w->limits.max_message_bytes) {
        s->oversized = 1;
        return;
    }
    json_t *v = json_loadb((const char *)text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (v == NULL) {
        s->awaiting = 0;
        return;
    }
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (n > 0)
        s->awaiting = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_object(e))
            continue;
        const char *type = str(e, "type");
        json_int_t ref;
        int has_ref = has_int(e, "ref", &ref);
        if (type != NULL && strcmp(type, "resume") == 0) {
            const json_t *models = json_object_get(e, "models");
            if (!models_ok(models) || !name_client(s, json_object_get(e, "client"))) {
                /* Refused: an error, with the resume's ref when it has one. */
                if (has_ref) {
                    json_t *x = json_pack("{s:I,s:s}", "ref", ref, "type", "resume");
                    TPF_CHECK(x != NULL, "out of memory");
                    json_array_append_new(s->expect, x);
                }
                continue;
            }
            /* Answered: the missed patches, snapshots or removed. */
            for (size_t k = 0; k < json_array_size(models); k++) {
                const json_t *m = json_array_get(models, k);
                const char *scope = str(m, "scope"), *id = str(m, "id");
                json_int_t rev;
                if (!scope || !id || !has_int(m, "rev", &rev) ||
                    strlen(id) != json_string_length(json_object_get(m, "id")))
                    continue;
                char key[320];
                slot_key(key, sizeof key, strcmp(scope, "shared") == 0, id);
                json_t *revs = json_object_get(s->claims, key);
                if (revs == NULL) {
                    revs = json_array();
                    json_object_set_new(s->claims, key, revs);
                }
                json_array_append_new(revs, json_integer(rev));
            }
            continue;
        }
        if (type != NULL && strcmp(type, "presence") == 0 &&
            json_dumpb(json_object_get(e, "state"), NULL, 0, JSON_COMPACT) > 4096)
            s->big_presence = 1;
        /* presence has no ref (PROTOCOL.md): nothing answers it but an
         * error without one. */
        if (!has_ref || (type != NULL && strcmp(type, "presence") == 0))
            continue;
        if (type != NULL && strcmp(type, "ping") == 0)
            name_client(s, json_object_get(e, "client"));
        json_t *x = json_pack("{s:I,s:O?}", "ref", ref, "type", json_object_get(e, "type"));
        TPF_CHECK(x != NULL, "out of memory");
        if (type != NULL && strcmp(type, "write") == 0) {
            const char *scope = str(e, "scope"), *id = str(e, "id");
            if (scope && id) {
                char key[320];
                slot_key(key, sizeof key, strcmp(scope, "shared") == 0, id);
                json_object_set_new(x, "key", json_string(key));
            }
            if (json_is_object(json_object_get(e, "patch")))
                json_object_set(x, "patch", json_object_get(e, "patch"));
        }
        json_array_append_new(s->expect, x);
    }
    json_decref(v);
}

/* Is a model visible to a tenant now; its rev and access. */
static int
visible(world *w, int tenant, int shared, const char *id, int64_t *rev, int *access)
{
    if (shared) {
        hshared *h = find_shared(w, id);
        if (h == NULL || !h->live || h->access[tenant] == 0)
            return 0;
        *rev = tp_hub_shared_rev(w->hub, id);
        *access = h->access[tenant];
        return 1;
    }
    hmodel *m = find_priv(w, tenant, id);
    if (m == NULL || !m->live)
        return 0;
    *rev = tp_session_rev(tp_hub_tenant(w->hub, tenants[tenant]), id);
    *access = TP_WRITE;
    return 1;
}

static void
feed(world *w, int si, const uint8_t *text, size_t len)
{
    slot *s = &w->slots[si];
    if (s->c == NULL)
        slot_open(w, si, 0);
    /* Everything sent before goes first, so that the answers of this frame
     * are exactly what the connection holds after it. */
    drain(w, si, 0);
    if (s->c == NULL)
        return;
    expect_frame(w, si, text, len);
    int rc = tp_conn_feed(s->c, (const char *)text, len);
    TPF_CHECK((rc == TP_ECLOSED) == (tp_conn_close_code(s->c) != 0),
              "tp_conn_feed returned %d with close code %d", rc, tp_conn_close_code(s->c));
    TPF_CHECK(rc == TP_OK || rc == TP_ECLOSED, "tp_conn_feed returned %d", rc);
    drain(w, si, 1);
    if (s->c == NULL)
        return; /* closed: what it was owed no longer matters */
    TPF_CHECK(s->answered == json_array_size(s->expect),
              "slot %d: %zu messages with a ref, %zu answers", si, json_array_size(s->expect),
              s->answered);
    /* A resume listing the rev the server has gets no answer: the
     * connection now holds that rev, value unseen. */
    const char *key;
    json_t *revs;
    json_object_foreach(s->claims, key, revs)
    {
        int64_t rev;
        int access;
        if (json_object_get(s->models, key) != NULL ||
            !visible(w, slot_tenant[si], key[0] == 's', key + 2, &rev, &access) ||
            !claimed(s, key, rev))
            continue;
        track(s, key, rev, access_name(access));
    }
    json_object_clear(s->claims);
    json_array_clear(s->expect);
    s->answered = 0;
}

/* ---- Checkpoints ---- */

static void
check_model(world *w, int tenant, int shared, const char *id, int schema)
{
    tp_session *s = tp_hub_tenant(w->hub, tenants[tenant]);
    char *text = shared ? tp_hub_get_shared(w->hub, id) : tp_session_get(s, id);
    int64_t rev = shared ? tp_hub_shared_rev(w->hub, id) : tp_session_rev(s, id);
    TPF_CHECK(text != NULL && rev >= 1, "%s: no value, or rev %lld", id, (long long)rev);
    char wkey[340];
    world_key(wkey, sizeof wkey, tenant, shared, id);
    /* The same text at the same rev was checked at an earlier checkpoint. */
    char rkey[380];
    snprintf(rkey, sizeof rkey, "%s@%lld", wkey, (long long)rev);
    const char *was = json_string_value(json_object_get(w->checked, rkey));
    if (was != NULL && strcmp(was, text) == 0) {
        free(text);
        return;
    }
    tp_error err;
    if (tp_schema_validate(schemas[schema], text, &err) != TP_OK)
        tpf_fail("the server's value of %s does not validate: %s: %s", id, err.message, text);
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    TPF_CHECK(json_is_object(v), "the server's value of %s is not an object: %s", id, text);
    TPF_CHECK(kept_nulls_only(v), "the server's value of %s has a null member: %s", id, text);
    json_t *replica = hist_get(w, wkey, rev);
    json_t *stripped = tpf_strip_nulls(v);
    int same = replica == NULL || json_equal(replica, stripped);
    json_decref(stripped);
    if (!same) {
        char *r = tpf_dump(replica);
        tpf_fail("%s at rev %lld: the replicas hold %s, the server %s", wkey, (long long)rev, r,
                 text);
    }
    json_decref(v);
    json_object_set_new(w->checked, rkey, json_string(text));
    free(text);
}

static void
checkpoint(world *w)
{
    TPF_CHECK(tp_hub_sync(w->hub) >= 0, "tp_hub_sync failed");
    for (int si = 0; si < NSLOTS; si++)
        drain(w, si, 0);
    /* Only what was drained just now can be waiting. */
    tp_conn *c;
    while ((c = tp_hub_next_ready(w->hub)) != NULL)
        TPF_CHECK(tp_conn_outbox_bytes(c) == 0, "a drained connection still has bytes");
    for (int i = 0; i < w->nshared; i++)
        if (w->shared[i].live)
            check_model(w, 0, 1, w->shared[i].sid, w->shared[i].schema);
    for (int t = 0; t < NTENANTS; t++)
        for (int i = 0; i < w->npriv[t]; i++)
            if (w->priv[t][i].live)
                check_model(w, t, 0, w->priv[t][i].id, w->priv[t][i].schema);

    for (int si = 0; si < NSLOTS; si++) {
        slot *s = &w->slots[si];
        int tenant = slot_tenant[si];
        if (s->c == NULL || s->awaiting)
            continue;
        TPF_CHECK(s->synced == 1, "slot %d: live without synced", si);
        /* Everything it holds is visible, at the server's rev... */
        const char *key;
        json_t *t;
        json_object_foreach(s->models, key, t)
        {
            int64_t rev;
            int access;
            if (!visible(w, tenant, key[0] == 's', key + 2, &rev, &access))
                tpf_fail("slot %d holds %s, which its tenant no longer sees", si, key);
            json_int_t held = json_integer_value(json_object_get(t, "rev"));
            TPF_CHECK(held == rev, "slot %d holds %s at rev %lld, the server has %lld", si, key,
                      (long long)held, (long long)rev);
            TPF_CHECK(strcmp(str(t, "access"), access_name(access)) == 0,
                      "slot %d holds %s with access %s", si, key, str(t, "access"));
        }
        /* ...and everything visible is held. */
        char k[320];
        for (int i = 0; i < w->nshared; i++) {
            hshared *h = &w->shared[i];
            slot_key(k, sizeof k, 1, h->sid);
            TPF_CHECK(!h->live || h->access[tenant] == 0 || json_object_get(s->models, k),
                      "slot %d does not hold %s", si, k);
        }
        for (int i = 0; i < w->npriv[tenant]; i++) {
            hmodel *m = &w->priv[tenant][i];
            slot_key(k, sizeof k, 0, m->id);
            TPF_CHECK(!m->live || json_object_get(s->models, k), "slot %d does not hold %s", si, k);
        }
    }
}

/* ---- Setting up, and the host's calls ---- */

static void
host(world *w, int t, const char *id, int schema, const char *value)
{
    if (w->npriv[t] == MAXPRIV)
        return;
    tp_error err;
    tp_session *s = tp_hub_tenant(w->hub, tenants[t]);
    const char *got = id ? tp_session_host_as(s, id, schemas[schema], value, &err)
                         : tp_session_host(s, schemas[schema], value, &err);
    if (got == NULL) {
        TPF_CHECK(id == NULL, "hosting %s: %s", id, err.message);
        TPF_CHECK(err.code == TP_EINVALID || err.code == TP_EBADREQUEST,
                  "tp_session_host: code %d (%s)", err.code, err.message);
        return;
    }
    hmodel *m = &w->priv[t][w->npriv[t]++];
    snprintf(m->id, sizeof m->id, "%s", got);
    m->schema = schema;
    m->live = 1;
}

static void
share(world *w, const char *sid, int schema, const tp_merge *merge, const char *value)
{
    if (w->nshared == MAXSHARED)
        return;
    tp_error err;
    const char *got = sid ? tp_hub_share_as(w->hub, sid, schemas[schema], value, merge, &err)
                          : tp_hub_share(w->hub, schemas[schema], value, merge, &err);
    if (got == NULL) {
        TPF_CHECK(sid == NULL, "sharing %s: %s", sid, err.message);
        TPF_CHECK(err.code == TP_EINVALID || err.code == TP_EBADREQUEST,
                  "tp_hub_share: code %d (%s)", err.code, err.message);
        return;
    }
    hshared *h = &w->shared[w->nshared++];
    memset(h, 0, sizeof *h);
    snprintf(h->sid, sizeof h->sid, "%s", got);
    h->schema = schema;
    h->live = 1;
}

static void
subscribe(world *w, int t, int i, int access)
{
    if (i >= w->nshared)
        return;
    int rc = tp_hub_subscribe(w->hub, tenants[t], w->shared[i].sid, access);
    TPF_CHECK(rc == (w->shared[i].live ? TP_OK : TP_ENOTFOUND), "tp_hub_subscribe: %d", rc);
    if (rc == TP_OK)
        w->shared[i].access[t] = access;
}

static void
setup(world *w, int profile)
{
    memset(w, 0, sizeof *w);
    w->now = 1764150000000;
    tp_hub_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.clock = fake_clock;
    cfg.clock_user = &w->now;
    cfg.tick_ms = 50;
    if (profile == 0) {
        cfg.limits.max_message_bytes = 8192;
        cfg.limits.max_outbox_bytes = 128 * 1024;
        cfg.limits.writes_per_second = 20;
        cfg.limits.history_patches = 8;
        cfg.limits.history_bytes = 4096;
        cfg.limits.client_records = 3;
    } else if (profile == 1) {
        cfg.limits.max_message_bytes = 3000;
        cfg.limits.max_outbox_bytes = 8192;
        cfg.limits.writes_per_second = 3;
        cfg.limits.history_patches = 2;
        cfg.limits.history_bytes = 600;
        cfg.limits.client_records = 1;
        cfg.limits.max_skew_ms = 10;
    }
    tp_error err;
    w->hub = tp_hub_new(&cfg, &err);
    TPF_CHECK(w->hub != NULL, "tp_hub_new: %s", err.message);
    /* What the hub made of the limits (defaults filled in), as hello says. */
    w->limits = cfg.limits;
    if (w->limits.max_message_bytes == 0)
        w->limits.max_message_bytes = 1024 * 1024;
    w->veto_strategy.name = "veto";
    w->veto_strategy.merge = veto_merge;
    w->veto_strategy.user = &w->veto;
    w->hist = json_object();
    w->checked = json_object();
    w->conns = json_object();
    TPF_CHECK(w->hist != NULL && w->checked != NULL, "out of memory");

    host(w, 0, "notes", SCH_DOC, "{\"title\":\"Alice notes\"}");
    host(w, 0, "order", SCH_ORDER,
         "{\"customer\":{\"name\":\"Ada\",\"address\":{\"street\":\"1 rue\",\"city\":\"Paris\"}},"
         "\"notes\":null,\"lines\":[{\"sku\":\"A1\",\"qty\":2,\"price\":9.5}]}");
    host(w, 1, "notes", SCH_DOC, "{\"title\":\"Bob notes\",\"tags\":[\"x\"]}");
    host(w, 1, "c", SCH_CONSTRAINED, "{\"name\":\"ab\",\"code\":\"ABC-123\"}");
    share(w, "roadmap", SCH_DOC, NULL, "{\"title\":\"Roadmap\"}");
    share(w, "board", SCH_BOARD, &tp_lww_map_crdt,
          "{\"name\":\"Board\",\"counts\":{\"a\":1},\"items\":{\"x\":{\"label\":\"X\"}}}");
    share(w, "order", SCH_ORDER, &tp_last_write_wins,
          "{\"customer\":{\"name\":\"Bo\",\"address\":{\"street\":\"2 via\",\"city\":\"Roma\"}},"
          "\"notes\":null}");
    share(w, "veto", SCH_CONSTRAINED, &w->veto_strategy, "{\"name\":\"vv\",\"code\":\"VET-000\"}");
    subscribe(w, 0, 0, TP_WRITE);
    subscribe(w, 1, 0, TP_READ);
    subscribe(w, 0, 1, TP_WRITE);
    subscribe(w, 1, 1, TP_WRITE);
    subscribe(w, 1, 2, TP_WRITE);
    subscribe(w, 2, 2, TP_READ);
    subscribe(w, 0, 3, TP_WRITE);
    subscribe(w, 2, 3, TP_WRITE);
    for (int si = 0; si < NSLOTS; si++)
        slot_open(w, si, si == 1 || si == 4);
}

static void
teardown(world *w)
{
    /* Half the connections are closed by hand, the rest by tp_hub_free. */
    for (int si = 0; si < NSLOTS; si += 2)
        slot_close(w, si);
    tp_hub_free(w->hub);
    for (int si = 0; si < NSLOTS; si++) {
        w->slots[si].c = NULL;
        slot_reset(&w->slots[si]);
    }
    json_decref(w->hist);
    json_decref(w->conns);
    json_decref(w->checked);
    json_decref(w->veto.held);
    json_decref(w->veto.copy);
}

/* ---- The input ---- */

/* The byte at i, or '0' past the end: a missing argument counts as 0. */
static unsigned
arg(const uint8_t *line, size_t len, size_t i)
{
    return i < len ? line[i] : '0';
}

static unsigned
argn(const uint8_t *line, size_t len, size_t i, unsigned n)
{
    unsigned a = arg(line, len, i);
    return (a >= '0' && a <= '9' ? a - '0' : a) % n;
}

static void
host_call(world *w, const uint8_t *line, size_t len)
{
    tp_error err;
    size_t at;
    int rc = TP_OK;
    switch (line[0]) {
    case 'h': { /* h I JSON */
        at = 2;
        if (w->nshared == 0)
            return;
        hshared *h = &w->shared[argn(line, len, 1, (unsigned)w->nshared)];
        char *v = tpf_strndup(line + (len < at ? len : at), len < at ? 0 : len - at);
        rc = tp_hub_set_shared(w->hub, h->sid, v, &err);
        TPF_CHECK(rc == TP_OK || rc == TP_EINVALID || rc == TP_EBADREQUEST ||
                      (!h->live && rc == TP_ENOTFOUND),
                  "tp_hub_set_shared: %d (%s)", rc, err.message);
        free(v);
        break;
    }
    case 'p': { /* p T I JSON */
        at = 3;
        int t = (int)argn(line, len, 1, NTENANTS);
        if (w->npriv[t] == 0)
            return;
        hmodel *m = &w->priv[t][argn(line, len, 2, (unsigned)w->npriv[t])];
        char *v = tpf_strndup(line + (len < at ? len : at), len < at ? 0 : len - at);
        rc = tp_session_set(tp_hub_tenant(w->hub, tenants[t]), m->id, v, &err);
        TPF_CHECK(rc == TP_OK || rc == TP_EINVALID || rc == TP_EBADREQUEST ||
                      (!m->live && rc == TP_ENOTFOUND),
                  "tp_session_set: %d (%s)", rc, err.message);
        free(v);
        break;
    }
    case 'H': { /* H T K JSON */
        at = 3;
        char *v = tpf_strndup(line + (len < at ? len : at), len < at ? 0 : len - at);
        host(w, (int)argn(line, len, 1, NTENANTS), NULL, (int)argn(line, len, 2, NSCHEMAS), v);
        free(v);
        break;
    }
    case 'X': { /* X T I */
        int t = (int)argn(line, len, 1, NTENANTS);
        if (w->npriv[t] == 0)
            return;
        hmodel *m = &w->priv[t][argn(line, len, 2, (unsigned)w->npriv[t])];
        rc = tp_session_delete(tp_hub_tenant(w->hub, tenants[t]), m->id);
        TPF_CHECK(rc == (m->live ? TP_OK : TP_ENOTFOUND), "tp_session_delete: %d", rc);
        m->live = 0;
        break;
    }
    case 'R': { /* R K M JSON */
        const tp_merge *const merges[] = {&tp_last_write_wins, &tp_lww_map_crdt, &w->veto_strategy};
        at = 3;
        char *v = tpf_strndup(line + (len < at ? len : at), len < at ? 0 : len - at);
        share(w, NULL, (int)argn(line, len, 1, NSCHEMAS), merges[argn(line, len, 2, 3)], v);
        free(v);
        break;
    }
    case 'Z': { /* Z I */
        if (w->nshared == 0)
            return;
        hshared *h = &w->shared[argn(line, len, 1, (unsigned)w->nshared)];
        rc = tp_hub_unshare(w->hub, h->sid);
        TPF_CHECK(rc == (h->live ? TP_OK : TP_ENOTFOUND), "tp_hub_unshare: %d", rc);
        h->live = 0;
        memset(h->access, 0, sizeof h->access);
        break;
    }
    case 'S': /* S T I r|w */
        subscribe(w, (int)argn(line, len, 1, NTENANTS),
                  w->nshared ? (int)argn(line, len, 2, (unsigned)w->nshared) : MAXSHARED,
                  arg(line, len, 3) == 'r' ? TP_READ : TP_WRITE);
        break;
    case 'U': { /* U T I */
        int t = (int)argn(line, len, 1, NTENANTS);
        if (w->nshared == 0)
            return;
        hshared *h = &w->shared[argn(line, len, 2, (unsigned)w->nshared)];
        rc = tp_hub_unsubscribe(w->hub, tenants[t], h->sid);
        TPF_CHECK(rc == (h->access[t] ? TP_OK : TP_ENOTFOUND), "tp_hub_unsubscribe: %d", rc);
        h->access[t] = 0;
        break;
    }
    default: break;
    }
}

static void
run_line(world *w, const uint8_t *line, size_t len)
{
    if (len == 0)
        return;
    trace(-1, "line", line, len);
    unsigned op = line[0];
    if (op >= '0' && op < '0' + NSLOTS) {
        feed(w, (int)(op - '0'), line + 1, len - 1);
        return;
    }
    switch (op) {
    case 'o': slot_open(w, (int)argn(line, len, 1, NSLOTS), arg(line, len, 2) == 'r'); break;
    case 'x': {
        int si = (int)argn(line, len, 1, NSLOTS);
        drain(w, si, 0);
        slot_close(w, si);
        break;
    }
    case 'd': drain(w, (int)argn(line, len, 1, NSLOTS), 0); break;
    case 'n': drain_some(w, (int)argn(line, len, 1, NSLOTS), 0, 1); break;
    case 'D': {
        tp_conn *c;
        while ((c = tp_hub_next_ready(w->hub)) != NULL) {
            slot *s = tp_conn_user(c);
            TPF_CHECK(s != NULL && s->c == c, "tp_hub_next_ready returned a closed connection");
            drain(w, (int)(s - w->slots), 0);
        }
        break;
    }
    case 's': TPF_CHECK(tp_hub_sync(w->hub) >= 0, "tp_hub_sync failed"); break;
    case 'c': checkpoint(w); break;
    case 't': {
        int64_t ms = 0;
        for (size_t i = 1; i < len && i < 10 && line[i] >= '0' && line[i] <= '9'; i++)
            ms = ms * 10 + (line[i] - '0');
        w->now += ms;
        break;
    }
    default: host_call(w, line, len); break;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_schemas();
    int profile = 0;
    if (size >= 2 && data[0] == 'L') {
        profile = (int)((data[1] >= '0' && data[1] <= '9' ? data[1] - '0' : data[1]) % 3);
        const uint8_t *nl = memchr(data, '\n', size);
        size_t skip = nl ? (size_t)(nl - data) + 1 : size;
        data += skip;
        size -= skip;
    }
    world *w = malloc(sizeof *w);
    TPF_CHECK(w != NULL, "out of memory");
    setup(w, profile);
    size_t i = 0;
    while (i < size) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t len = nl ? (size_t)(nl - (data + i)) : size - i;
        run_line(w, data + i, len);
        i += len + 1;
    }
    checkpoint(w);
    teardown(w);
    free(w);
    return 0;
}
