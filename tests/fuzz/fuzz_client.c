/*
 * fuzz_client: the client's protocol side, sans-IO (src/client/client.c,
 * replica.c), driven by an input that plays the server (honest, buggy or
 * hostile) and the application. One client on ws://127.0.0.1:8080/ws/alice
 * with a fixed client id, never started: the target carries the frames.
 *
 * Input: lines. The first byte of a line says what to do with the rest:
 *   < TEXT     the server sends TEXT as one frame (tp_client_feed)
 *   o          the WebSocket is up: tp_client_url, then tp_client_opened
 *   x [CODE] [ REASON]   the connection ended: tp_client_closed (CODE decimal,
 *              1006 when missing; REASON after one space)
 *   S          tp_client_stop (sans-IO: drops the connection's frames)
 *   w I TEXT   the application writes TEXT to model I: the byte I modulo
 *              (N + 1) picks one of the N models of tp_client_models, N a
 *              model the client does not hold
 *   b I K      the same with the patch {"b":"xxx..."}, K KiB of x (K a byte
 *              modulo 64): big writes, batches cut at 64 KiB, too_large
 *   P I TEXT   the application sets its presence on model I (as `w` picks
 *              it) to TEXT, "null" to leave (tp_client_set_presence)
 *   n          take one frame (tp_client_next_frame)   d  take every frame
 *   p          a keepalive tick (tp__client_ping, what the transport calls),
 *              and the delay of writes refused with rate_limited passing
 *              (tp__client_retry, called at the delay's start and end)
 *   c          checkpoint: take every frame, then check (below)
 *   U URL      (first line only) make the client for URL instead, with its
 *              token in the query: tp_client_new fails with TP_EARG or the
 *              URL to connect to starts with URL and carries the token
 * A missing byte argument counts as '0'. Other lines are ignored.
 *
 * The target keeps its own account, written against jansson and
 * protocol.md's "Keeping a replica" only: per model, the server's value and
 * rev (KNOWN), or "exists, value unknown" (UNKNOWN), or "may exist" (MAYBE);
 * per write, its patch and whether it is pending, done or unknown. A frame
 * the client refuses (tp_client_feed < 0) was handled up to an unknown
 * message, so every model and write it names becomes unknown; a snapshot
 * makes a model KNOWN again. Only a server that behaves (a snapshot, patches
 * with from == rev, acks: private ones with from == rev) keeps a model KNOWN.
 *
 * Checked:
 * - tp_client_feed returns TP_OK or a negative code: TP_ECLOSED exactly when
 *   not connected, TP_EBADREQUEST for a frame that is not JSON, never an
 *   error for a frame whose messages are all well-formed (protocol.md's
 *   fields with their types); `synced` makes the state LIVE;
 * - every frame of tp_client_next_frame is JSON: an object, or an array of
 *   at least two objects and at most 64 KiB; messages are write, resume or
 *   ping; nothing comes between tp_client_closed (or stop) and
 *   tp_client_opened; the first message of a connection is `resume` (with
 *   the client id and exactly the models held, at their revs) when the
 *   client holds models, else `ping` (with the client id); a ping's ref is
 *   negative; a write carries a ref tp_client_write returned, with that
 *   write's scope, id and patch, and is sent once per connection (again
 *   only after a `rate_limited` error and a keepalive tick); first sends on
 *   a connection come in increasing ref order; at a checkpoint every
 *   pending write has been sent on the current connection, unless 256 are
 *   in flight (the client's window);
 * - tp_client_write returns refs 1, 2, 3... or exactly the documented error
 *   (bad_request for a patch that is not a JSON object, not_found,
 *   forbidden for a read-only model, too_large exactly when the write's
 *   message is over hello's max_message_bytes);
 * - tp_client_models is an array of distinct {scope, id, rev, access}; it
 *   lists every model the account says exists and nothing the server never
 *   sent; tp_client_get of each is a JSON object with the same rev and
 *   access, and NULL for a model not held;
 * - for a KNOWN model with no write of unknown fate: rev and access are the
 *   server's, and the view equals the server's value with the pending writes
 *   merged on top, in ref order (RFC 7396, written here);
 * - tp_client_pending is between the pending writes and those plus the
 *   unknown ones, and never more than the writes made;
 * - callbacks: values are objects and equal what tp_client_get returns at
 *   that moment (with the same rev and access); after `removed`, and with an
 *   error whose value is NULL, tp_client_get returns NULL; acks and errors
 *   name refs tp_client_write returned; error codes are TP_E... of the wire;
 * - closing: REFUSED for HTTP 400, 401, 403, 404, STOPPED after a stop,
 *   WAITING otherwise; opened: SYNCING, and the URL has resume=1 exactly
 *   when the client holds models.
 * No crash and no leak (the replay runs under ASan and LeakSanitizer).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "transports.h"

/* The keepalive tick of src/client/client.h, which a transport (ours here)
 * calls when the connection has been quiet (docs/client.md, sans-IO), and
 * the clock of the writes refused with rate_limited. */
void tp__client_ping(tp_client *c);
int64_t tp__client_retry(tp_client *c, int64_t now_ms);

#define BATCH_MAX (64 * 1024)
#define CLIENT_ID "fuzz-client-0001"
/* The token of a `U` line's client, sent in the query, percent-encoded. */
#define TOKEN "s3cret/+ =&"
#define TOKEN_QUERY "token=s3cret%2F%2B%20%3D%26"

enum { S_KNOWN, S_UNKNOWN, S_MAYBE };
enum { W_PENDING, W_DONE, W_UNKNOWN };

typedef struct smodel {
    char *scope, *id;
    int state;
    json_t *value; /* KNOWN: the server's value at rev */
    json_int_t rev;
    int access; /* TP_READ or TP_WRITE */
} smodel;

typedef struct swrite {
    char *scope, *id;
    json_t *patch;
    int status;
    int allowance;  /* copies that may still be taken on this connection */
    int rl;         /* refused with rate_limited since its last send */
    int conn_sends; /* copies taken on this connection */
    int loose;      /* its fate was unknown on this connection: copies are not counted */
} swrite;

typedef struct world {
    tp_client *c;
    int connected;
    smodel *models;
    size_t nmodels, capmodels;
    swrite *writes; /* writes[ref - 1] */
    size_t nwrites, capwrites;
    size_t max_bytes; /* hello's max_message_bytes (1 MiB before) */
    int max_known;
    int opener_due;      /* the connection's first message is still to come */
    json_t *open_models; /* tp_client_models when the connection opened */
    json_int_t last_first_ref;
} world;

/* TPF_TRACE=1 prints every line run and every frame taken on stderr. */
static int tracing = -1;

static void
trace(const char *dir, const void *text, size_t len)
{
    if (tracing < 0)
        tracing = getenv("TPF_TRACE") != NULL;
    if (tracing)
        fprintf(stderr, "%s %.*s\n", dir, (int)len, (const char *)text);
}

/* ---- JSON helpers ---- */

static const char *
str(const json_t *msg, const char *key)
{
    return json_string_value(json_object_get(msg, key));
}

static int
get_int(const json_t *msg, const char *key, json_int_t *out)
{
    const json_t *v = json_object_get(msg, key);
    if (!json_is_integer(v))
        return 0;
    *out = json_integer_value(v);
    return 1;
}

static int
valid_scope(const char *s)
{
    return s != NULL && (strcmp(s, "private") == 0 || strcmp(s, "shared") == 0);
}

/* A message's model address: a scope of the protocol and a non-empty id. */
static int
get_addr(const json_t *msg, const char **scope, const char **id)
{
    *scope = str(msg, "scope");
    *id = str(msg, "id");
    return valid_scope(*scope) && *id != NULL && (*id)[0] != '\0';
}

static int
parse_access(const json_t *msg, int *out)
{
    const char *a = str(msg, "access");
    if (a != NULL && strcmp(a, "write") == 0)
        *out = TP_WRITE;
    else if (a != NULL && strcmp(a, "read") == 0)
        *out = TP_READ;
    else
        return 0;
    return 1;
}

/* RFC 7396, written here: a non-object patch is the result; otherwise the
 * target's members (an object target, else {}) with each patch member
 * deleted (null) or merged. Returns new. */
static json_t *
merge(const json_t *target, const json_t *patch)
{
    if (!json_is_object(patch)) {
        json_t *copy = json_deep_copy(patch);
        TPF_CHECK(copy != NULL, "out of memory");
        return copy;
    }
    json_t *out = json_is_object(target) ? json_deep_copy(target) : json_object();
    TPF_CHECK(out != NULL, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v)
    {
        if (json_is_null(v)) {
            json_object_del(out, k);
        } else {
            json_t *sub = merge(json_object_get(out, k), v);
            TPF_CHECK(json_object_set_new(out, k, sub) == 0, "out of memory");
        }
    }
    return out;
}

/* Parses a text the client made (tp_client_get, tp_client_models). */
static json_t *
parse_client_text(const char *text, const char *what)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    if (v == NULL)
        tpf_fail("%s is not JSON (%s): %s", what, e.text, text);
    return v;
}

/* ---- The account: models and writes ---- */

static smodel *
find_model(world *w, const char *scope, const char *id)
{
    for (size_t i = 0; i < w->nmodels; i++)
        if (strcmp(w->models[i].scope, scope) == 0 && strcmp(w->models[i].id, id) == 0)
            return &w->models[i];
    return NULL;
}

static char *
dup_str(const char *s)
{
    char *d = tpf_strndup((const uint8_t *)s, strlen(s));
    return d;
}

static smodel *
add_model(world *w, const char *scope, const char *id)
{
    smodel *m = find_model(w, scope, id);
    if (m != NULL)
        return m;
    if (w->nmodels == w->capmodels) {
        w->capmodels = w->capmodels ? w->capmodels * 2 : 8;
        smodel *more = realloc(w->models, w->capmodels * sizeof *more);
        TPF_CHECK(more != NULL, "out of memory");
        w->models = more;
    }
    m = &w->models[w->nmodels++];
    memset(m, 0, sizeof *m);
    m->scope = dup_str(scope);
    m->id = dup_str(id);
    m->state = S_MAYBE;
    return m;
}

static void
drop_model(world *w, smodel *m)
{
    free(m->scope);
    free(m->id);
    json_decref(m->value);
    size_t i = (size_t)(m - w->models);
    memmove(m, m + 1, (w->nmodels - i - 1) * sizeof *m);
    w->nmodels--;
}

/* Changes a model's state; its value is dropped (a KNOWN one gets a new one). */
static void
set_state(smodel *m, int state)
{
    m->state = state;
    json_decref(m->value);
    m->value = NULL;
}

static swrite *
find_write(world *w, json_int_t ref)
{
    if (ref < 1 || (size_t)ref > w->nwrites)
        return NULL;
    return &w->writes[ref - 1];
}

static int
write_of(const swrite *s, const char *scope, const char *id)
{
    return strcmp(s->scope, scope) == 0 && strcmp(s->id, id) == 0;
}

/* Every write to a model leaves: the model was removed. */
static void
writes_done(world *w, const char *scope, const char *id)
{
    for (size_t i = 0; i < w->nwrites; i++)
        if (w->writes[i].status != W_DONE && write_of(&w->writes[i], scope, id))
            w->writes[i].status = W_DONE;
}

static int
has_unknown_write(world *w, const char *scope, const char *id)
{
    for (size_t i = 0; i < w->nwrites; i++)
        if (w->writes[i].status == W_UNKNOWN && write_of(&w->writes[i], scope, id))
            return 1;
    return 0;
}

/* The view the client must show for a KNOWN model: the server's value with
 * the pending writes on top, in ref order. Returns new. */
static json_t *
expected_view(world *w, const smodel *m)
{
    json_t *v = json_deep_copy(m->value);
    TPF_CHECK(v != NULL, "out of memory");
    for (size_t i = 0; i < w->nwrites; i++) {
        swrite *s = &w->writes[i];
        if (s->status == W_PENDING && write_of(s, m->scope, m->id)) {
            json_t *next = merge(v, s->patch);
            json_decref(v);
            v = next;
        }
    }
    return v;
}

/* ---- Callbacks: each value equals what tp_client_get says at that moment ---- */

static void
check_view_now(world *w, const char *scope, const char *id, const json_t *value, int64_t rev,
               int access, const char *what)
{
    TPF_CHECK(json_is_object(value), "%s: the value is not an object", what);
    int64_t r = -1;
    tp_access a = TP_READ;
    char *text = tp_client_get(w->c, scope, id, &r, &a);
    TPF_CHECK(text != NULL, "%s: tp_client_get(%s, %s) is NULL inside the callback", what, scope,
              id);
    json_t *got = parse_client_text(text, "tp_client_get");
    if (!json_equal(got, value)) {
        char *v = tpf_dump(value);
        tpf_fail("%s for %s/%s: the callback has %s, tp_client_get %s", what, scope, id, v, text);
    }
    TPF_CHECK(rev < 0 || r == rev, "%s: rev %lld, tp_client_get says %lld", what, (long long)rev,
              (long long)r);
    TPF_CHECK(access < 0 || (int)a == access, "%s: access %d, tp_client_get says %d", what, access,
              (int)a);
    json_decref(got);
    tp_free(text);
}

static void
on_snapshot(void *user, const char *scope, const char *id, int64_t rev, tp_access access,
            const json_t *value)
{
    check_view_now(user, scope, id, value, rev, (int)access, "snapshot callback");
}

static void
on_patch(void *user, const char *scope, const char *id, int64_t from, int64_t rev,
         const json_t *patch, const char *origin, const json_t *value)
{
    TPF_CHECK(rev > from, "patch callback: rev %lld after from %lld", (long long)rev,
              (long long)from);
    TPF_CHECK(json_is_object(patch) && origin != NULL, "patch callback: no patch or origin");
    check_view_now(user, scope, id, value, rev, -1, "patch callback");
}

static void
on_access(void *user, const char *scope, const char *id, tp_access access)
{
    world *w = user;
    tp_access a = TP_READ;
    char *text = tp_client_get(w->c, scope, id, NULL, &a);
    TPF_CHECK(text != NULL && a == access, "access callback: tp_client_get disagrees");
    tp_free(text);
}

static void
on_removed(void *user, const char *scope, const char *id)
{
    world *w = user;
    char *text = tp_client_get(w->c, scope, id, NULL, NULL);
    TPF_CHECK(text == NULL, "removed callback: %s/%s is still held: %s", scope, id, text);
}

static void
on_ack(void *user, int64_t ref, const char *scope, const char *id, int64_t rev)
{
    world *w = user;
    (void)rev;
    TPF_CHECK(find_write(w, ref) != NULL, "ack callback for ref %lld, never written",
              (long long)ref);
    TPF_CHECK(write_of(find_write(w, ref), scope, id), "ack callback: ref %lld is not %s/%s",
              (long long)ref, scope, id);
}

static void
on_error(void *user, int64_t ref, const char *scope, const char *id, int code, const char *message,
         const json_t *value)
{
    world *w = user;
    TPF_CHECK(code <= TP_EBADREQUEST && code >= TP_EINTERNAL, "error callback: code %d", code);
    TPF_CHECK(message != NULL, "error callback without a message");
    TPF_CHECK(ref >= 0, "error callback: ref %lld", (long long)ref);
    if (ref == 0)
        return;
    TPF_CHECK(find_write(w, ref) != NULL, "error callback for ref %lld, never written",
              (long long)ref);
    TPF_CHECK(scope != NULL && id != NULL && write_of(find_write(w, ref), scope, id),
              "error callback: ref %lld is not its write's model", (long long)ref);
    if (value != NULL) {
        check_view_now(w, scope, id, value, -1, -1, "error callback");
    } else {
        char *text = tp_client_get(w->c, scope, id, NULL, NULL);
        TPF_CHECK(text == NULL, "error callback without a value, yet %s/%s is held", scope, id);
    }
}

static void
on_state(void *user, tp_client_state state, const char *why)
{
    (void)user;
    (void)why;
    TPF_CHECK(state >= TP_CLIENT_IDLE && state <= TP_CLIENT_STOPPED, "state %d", (int)state);
}

/* ---- Frames the client sends ---- */

/* Whether a resume's models are exactly the models held at opening. */
static int
same_models(const json_t *sent, const json_t *held)
{
    if (!json_is_array(sent) || json_array_size(sent) != json_array_size(held))
        return 0;
    size_t i;
    json_t *h;
    json_array_foreach(held, i, h)
    {
        int found = 0;
        size_t j;
        json_t *s;
        json_array_foreach(sent, j, s)
        {
            json_int_t r1 = 0, r2 = 0;
            if (json_is_object(s) &&
                json_equal(json_object_get(s, "scope"), json_object_get(h, "scope")) &&
                json_equal(json_object_get(s, "id"), json_object_get(h, "id")) &&
                get_int(s, "rev", &r1) && get_int(h, "rev", &r2) && r1 == r2)
                found++;
        }
        if (found != 1)
            return 0;
    }
    return 1;
}

static void
check_sent(world *w, const json_t *msg, const char *frame)
{
    TPF_CHECK(json_is_object(msg), "the client sent a message that is not an object: %s", frame);
    const char *type = str(msg, "type");
    TPF_CHECK(type != NULL, "a message without a type: %s", frame);
    json_int_t ref = 0;
    if (w->opener_due) {
        w->opener_due = 0;
        const char *client = str(msg, "client");
        TPF_CHECK(client != NULL && strcmp(client, CLIENT_ID) == 0,
                  "the first message does not name the client: %s", frame);
        if (json_array_size(w->open_models) > 0) {
            TPF_CHECK(strcmp(type, "resume") == 0, "the client holds models, yet opens with %s",
                      frame);
            if (!same_models(json_object_get(msg, "models"), w->open_models)) {
                char *h = tpf_dump(w->open_models);
                tpf_fail("the opening resume does not list the models held (%s): %s", h, frame);
            }
        } else {
            TPF_CHECK(strcmp(type, "ping") == 0 && get_int(msg, "ref", &ref) && ref < 0,
                      "a client with no model opens with %s", frame);
        }
        return;
    }
    if (strcmp(type, "ping") == 0) {
        TPF_CHECK(get_int(msg, "ref", &ref) && ref < 0, "a ping without a negative ref: %s", frame);
    } else if (strcmp(type, "resume") == 0) {
        const json_t *models = json_object_get(msg, "models");
        TPF_CHECK(json_array_size(models) >= 1, "a resume without models: %s", frame);
        size_t i;
        json_t *m;
        json_array_foreach(models, i, m)
        {
            json_int_t rev = 0;
            TPF_CHECK(valid_scope(str(m, "scope")) && str(m, "id") && get_int(m, "rev", &rev),
                      "a resume with a bad model: %s", frame);
        }
    } else if (strcmp(type, "write") == 0) {
        TPF_CHECK(get_int(msg, "ref", &ref) && ref > 0, "a write without a positive ref: %s",
                  frame);
        swrite *s = find_write(w, ref);
        TPF_CHECK(s != NULL, "a write with ref %lld, which tp_client_write never returned: %s",
                  (long long)ref, frame);
        const char *scope = str(msg, "scope"), *id = str(msg, "id");
        TPF_CHECK(scope && id && write_of(s, scope, id) &&
                      json_equal(json_object_get(msg, "patch"), s->patch),
                  "write %lld is not what was written: %s", (long long)ref, frame);
        if (s->conn_sends == 0) {
            TPF_CHECK(ref > w->last_first_ref, "write %lld sent first after write %lld: %s",
                      (long long)ref, (long long)w->last_first_ref, frame);
            w->last_first_ref = ref;
        }
        s->conn_sends++;
        if (!s->loose) {
            TPF_CHECK(s->allowance > 0, "write %lld sent once too often on this connection: %s",
                      (long long)ref, frame);
            s->allowance--;
        }
    } else if (strcmp(type, "presence") == 0) {
        /* Issue 17: what the application set (tp_client_set_presence). */
        const json_t *st = json_object_get(msg, "state");
        TPF_CHECK(valid_scope(str(msg, "scope")) && str(msg, "id") != NULL &&
                      (json_is_object(st) || json_is_null(st)) &&
                      (json_is_null(st) || json_dumpb(st, NULL, 0, JSON_COMPACT) <= 4096),
                  "a bad presence: %s", frame);
    } else {
        tpf_fail("the client sent a message of type %s: %s", type, frame);
    }
}

static json_t *models_now(world *w);

/* The application sets its presence on model I (as `w` picks it), TEXT
 * ("null": leaves); tp_client_set_presence must answer as documented. */
static void
app_presence(world *w, unsigned pick, const char *text)
{
    json_t *list = models_now(w);
    size_t n = json_array_size(list);
    json_t *e = n > 0 ? json_array_get(list, pick % n) : NULL;
    const char *scope = e != NULL ? str(e, "scope") : "shared";
    const char *id = e != NULL ? str(e, "id") : "no-such-model";
    int leave = strcmp(text, "null") == 0;
    json_t *v = leave ? NULL : json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    int expect = leave                                         ? TP_OK
                 : !json_is_object(v)                          ? TP_EBADREQUEST
                 : json_dumpb(v, NULL, 0, JSON_COMPACT) > 4096 ? TP_ETOOLARGE
                                                               : TP_OK;
    tp_error err;
    int rc = tp_client_set_presence(w->c, scope, id, leave ? NULL : text, &err);
    TPF_CHECK(rc == expect || rc == TP_ENOMEM, "tp_client_set_presence(%s): %d, expected %d", text,
              rc, expect);
    char *others = tp_client_presence(w->c, scope, id);
    json_t *o = others != NULL ? json_loads(others, 0, NULL) : NULL;
    TPF_CHECK(e == NULL || others == NULL || json_is_object(o), "tp_client_presence: %s",
              others ? others : "(null)");
    json_decref(o);
    tp_free(others);
    json_decref(v);
    json_decref(list);
}

/* Takes one frame; returns 0 when there was none. */
static int
take(world *w)
{
    size_t len = 0;
    const char *f = tp_client_next_frame(w->c, &len);
    if (!w->connected) {
        TPF_CHECK(f == NULL, "a frame while disconnected: %.200s", f);
        return 0;
    }
    if (f == NULL)
        return 0;
    trace("  >", f, len);
    json_error_t e;
    json_t *v = json_loadb(f, len, JSON_REJECT_DUPLICATES, &e);
    if (v == NULL)
        tpf_fail("the client sent a frame that is not JSON (%s): %.*s", e.text, (int)len, f);
    char *copy = tpf_strndup((const uint8_t *)f, len);
    if (json_is_array(v)) {
        TPF_CHECK(json_array_size(v) >= 2, "a batch of fewer than two messages: %s", copy);
        TPF_CHECK(len <= BATCH_MAX, "a batch of %zu bytes", len);
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) check_sent(w, m, copy);
    } else {
        check_sent(w, v, copy);
    }
    free(copy);
    json_decref(v);
    return 1;
}

static void
drain(world *w)
{
    while (take(w))
        ;
}

/* ---- Frames the client is fed ---- */

/* Whether a server message has protocol.md's fields with their types (the
 * client must then accept it). Unknown types do not count as well-formed. */
static int
well_formed(const json_t *m)
{
    const char *type = str(m, "type"), *scope, *id;
    json_int_t a = 0, b = 0;
    int acc = 0;
    if (!json_is_object(m) || type == NULL)
        return 0;
    if (strcmp(type, "hello") == 0)
        return json_object_get(m, "protocol") == NULL || (get_int(m, "protocol", &a) && a == 1);
    if (strcmp(type, "snapshot") == 0)
        return get_addr(m, &scope, &id) && get_int(m, "rev", &a) && parse_access(m, &acc) &&
               json_is_object(json_object_get(m, "value"));
    if (strcmp(type, "patch") == 0)
        return get_addr(m, &scope, &id) && get_int(m, "from", &a) && get_int(m, "rev", &b) &&
               b > a && json_is_object(json_object_get(m, "patch"));
    if (strcmp(type, "ack") == 0) {
        json_int_t f = 0;
        /* With from, rev must be above it, as in a patch. */
        return get_int(m, "ref", &a) && get_int(m, "rev", &b) &&
               (json_object_get(m, "from") == NULL || (get_int(m, "from", &f) && b > f));
    }
    if (strcmp(type, "error") == 0)
        return str(m, "code") != NULL;
    if (strcmp(type, "access") == 0)
        return get_addr(m, &scope, &id) && parse_access(m, &acc);
    if (strcmp(type, "removed") == 0)
        return get_addr(m, &scope, &id);
    if (strcmp(type, "presence") == 0) {
        const json_t *st = json_object_get(m, "state");
        return get_addr(m, &scope, &id) && str(m, "conn") != NULL &&
               (json_is_object(st) || json_is_null(st));
    }
    if (strcmp(type, "presence_snapshot") == 0) {
        const json_t *peers = json_object_get(m, "peers"), *p;
        size_t i;
        if (!get_addr(m, &scope, &id) || !json_is_array(peers))
            return 0;
        json_array_foreach(peers, i, p)
        {
            if (str(p, "conn") == NULL || !json_is_object(json_object_get(p, "state")))
                return 0;
        }
        return 1;
    }
    return strcmp(type, "synced") == 0 || strcmp(type, "pong") == 0;
}

/* A frame the client refused was handled up to some message: whatever it
 * names may have changed. */
static void
taint(world *w, const json_t *m)
{
    if (!json_is_object(m))
        return;
    const char *type = str(m, "type"), *scope = str(m, "scope"), *id = str(m, "id");
    if (type != NULL && strcmp(type, "hello") == 0)
        w->max_known = 0;
    if (valid_scope(scope) && id != NULL) {
        set_state(add_model(w, scope, id), S_MAYBE);
        for (size_t i = 0; i < w->nwrites; i++)
            if (w->writes[i].status == W_PENDING && write_of(&w->writes[i], scope, id)) {
                w->writes[i].status = W_UNKNOWN;
                w->writes[i].loose = 1;
            }
    }
    json_int_t ref = 0;
    swrite *s;
    if (get_int(m, "ref", &ref) && (s = find_write(w, ref)) != NULL && s->status == W_PENDING) {
        s->status = W_UNKNOWN;
        s->loose = 1;
        smodel *sm = find_model(w, s->scope, s->id);
        if (sm != NULL && sm->state == S_KNOWN)
            set_state(sm, S_UNKNOWN);
    }
}

/* What a message the client accepted does to the account (protocol.md,
 * "Keeping a replica"; docs/client.md, "The local view"). */
static void
account(world *w, const json_t *m)
{
    const char *type = str(m, "type"), *scope, *id;
    json_int_t from = 0, rev = 0, ref = 0;
    int acc = 0;
    TPF_CHECK(json_is_object(m) && type != NULL,
              "tp_client_feed accepted a message that is not an object with a type");
    if (!well_formed(m) && strcmp(type, "hello") != 0 && strcmp(type, "error") != 0) {
        /* Accepted although malformed, or a type unknown to us: only a
         * message naming a model or a ref can change anything. */
        if (strcmp(type, "synced") != 0 && strcmp(type, "pong") != 0)
            taint(w, m);
        return;
    }
    if (strcmp(type, "hello") == 0) {
        const json_t *max = json_object_get(m, "max_message_bytes");
        if (json_is_integer(max) && json_integer_value(max) > 0) {
            w->max_bytes = (size_t)json_integer_value(max);
            w->max_known = 1;
        } else if (max != NULL) {
            w->max_known = 0;
        }
    } else if (strcmp(type, "snapshot") == 0) {
        get_addr(m, &scope, &id);
        smodel *sm = add_model(w, scope, id);
        set_state(sm, S_KNOWN);
        sm->value = json_deep_copy(json_object_get(m, "value"));
        get_int(m, "rev", &sm->rev);
        parse_access(m, &sm->access);
    } else if (strcmp(type, "patch") == 0) {
        get_addr(m, &scope, &id);
        get_int(m, "from", &from);
        get_int(m, "rev", &rev);
        smodel *sm = find_model(w, scope, id);
        if (sm != NULL && sm->state == S_KNOWN && from == sm->rev) {
            json_t *next = merge(sm->value, json_object_get(m, "patch"));
            json_decref(sm->value);
            sm->value = next;
            sm->rev = rev;
        }
        /* rev at or below the rev held: held already; from above it: a gap,
         * ignored (and resumed). */
    } else if (strcmp(type, "ack") == 0) {
        get_int(m, "ref", &ref);
        get_int(m, "rev", &rev);
        swrite *s = find_write(w, ref);
        if (s == NULL || s->status == W_DONE)
            return;
        int was = s->status;
        s->status = W_DONE;
        smodel *sm = find_model(w, s->scope, s->id);
        if (sm == NULL || sm->state != S_KNOWN || strcmp(s->scope, "private") != 0)
            return; /* a shared write's patch came first: confirmed holds it */
        if (was == W_UNKNOWN || !get_int(m, "from", &from) || rev <= from) {
            set_state(sm, S_UNKNOWN);
        } else if (from == sm->rev) {
            /* A private write is not echoed: its patch at from gives rev. */
            json_t *next = merge(sm->value, s->patch);
            json_decref(sm->value);
            sm->value = next;
            sm->rev = rev;
        }
        /* from is not the rev held: resumed, confirmed unchanged. */
    } else if (strcmp(type, "error") == 0) {
        const char *code = str(m, "code");
        swrite *s;
        if (code == NULL || !get_int(m, "ref", &ref) || (s = find_write(w, ref)) == NULL ||
            s->status == W_DONE)
            return;
        if (strcmp(code, "rate_limited") != 0)
            s->status = W_DONE; /* rolled back */
        else if (s->status == W_PENDING)
            s->rl = 1; /* stays pending, sent again at the next tick */
    } else if (strcmp(type, "access") == 0) {
        get_addr(m, &scope, &id);
        parse_access(m, &acc);
        smodel *sm = find_model(w, scope, id);
        if (sm != NULL)
            sm->access = acc;
    } else if (strcmp(type, "removed") == 0) {
        get_addr(m, &scope, &id);
        smodel *sm = find_model(w, scope, id);
        if (sm != NULL) {
            writes_done(w, scope, id);
            drop_model(w, sm);
        }
    }
}

static void
feed(world *w, const uint8_t *text, size_t len)
{
    int rc = tp_client_feed(w->c, (const char *)text, len);
    if (!w->connected) {
        TPF_CHECK(rc == TP_ECLOSED, "tp_client_feed while disconnected: %d", rc);
        return;
    }
    TPF_CHECK(rc == TP_OK || rc == TP_EBADREQUEST || rc == TP_ENOMEM, "tp_client_feed: %d", rc);
    json_error_t e;
    json_t *f = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &e);
    if (f == NULL) {
        TPF_CHECK(rc == TP_EBADREQUEST, "tp_client_feed took a frame that is not JSON: %d", rc);
        return;
    }
    size_t n = json_is_array(f) ? json_array_size(f) : 1;
    if (rc == TP_OK) {
        int synced = 0;
        for (size_t i = 0; i < n; i++) {
            const json_t *m = json_is_array(f) ? json_array_get(f, i) : f;
            account(w, m);
            const char *type = str(m, "type");
            synced |= type != NULL && strcmp(type, "synced") == 0;
        }
        TPF_CHECK(!synced || tp_client_get_state(w->c) == TP_CLIENT_LIVE,
                  "synced, yet the state is %d", (int)tp_client_get_state(w->c));
    } else {
        int good = 1;
        for (size_t i = 0; i < n; i++) {
            const json_t *m = json_is_array(f) ? json_array_get(f, i) : f;
            good &= well_formed(m);
            taint(w, m);
        }
        if (good && rc != TP_ENOMEM) {
            char *t = tpf_strndup(text, len);
            tpf_fail("tp_client_feed refused (%d) a well-formed frame: %s", rc, t);
        }
    }
    json_decref(f);
}

/* ---- The checks ---- */

static json_t *
models_now(world *w)
{
    char *text = tp_client_models(w->c);
    TPF_CHECK(text != NULL, "tp_client_models is NULL");
    json_t *list = parse_client_text(text, "tp_client_models");
    TPF_CHECK(json_is_array(list), "tp_client_models is not an array: %s", text);
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        json_int_t rev = 0;
        int acc = 0;
        const char *scope = str(e, "scope"), *id = str(e, "id");
        TPF_CHECK(json_object_size(e) == 4 && valid_scope(scope) && id != NULL &&
                      get_int(e, "rev", &rev) && parse_access(e, &acc),
                  "tp_client_models: a bad entry: %s", text);
        for (size_t j = 0; j < i; j++) {
            json_t *o = json_array_get(list, j);
            TPF_CHECK(strcmp(str(o, "scope"), scope) != 0 || strcmp(str(o, "id"), id) != 0,
                      "tp_client_models lists %s/%s twice: %s", scope, id, text);
        }
    }
    tp_free(text);
    return list;
}

static void
verify(world *w)
{
    json_t *list = models_now(w);
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        const char *scope = str(e, "scope"), *id = str(e, "id");
        json_int_t rev = 0;
        int acc = 0;
        get_int(e, "rev", &rev);
        parse_access(e, &acc);
        smodel *sm = find_model(w, scope, id);
        TPF_CHECK(sm != NULL, "the client holds %s/%s, which no snapshot gave", scope, id);
        if (sm->state == S_MAYBE)
            sm->state = S_UNKNOWN;
        int64_t r = -1;
        tp_access a = TP_READ;
        char *text = tp_client_get(w->c, scope, id, &r, &a);
        TPF_CHECK(text != NULL, "tp_client_get(%s, %s) is NULL, yet listed", scope, id);
        json_t *got = parse_client_text(text, "tp_client_get");
        TPF_CHECK(json_is_object(got), "tp_client_get is not an object: %s", text);
        TPF_CHECK(r == rev && (int)a == acc, "%s/%s: tp_client_get and tp_client_models disagree",
                  scope, id);
        if (sm->state == S_KNOWN && !has_unknown_write(w, scope, id)) {
            TPF_CHECK(rev == sm->rev, "%s/%s: rev %lld, the server's is %lld", scope, id,
                      (long long)rev, (long long)sm->rev);
            TPF_CHECK(acc == sm->access, "%s/%s: access %d, the server said %d", scope, id, acc,
                      sm->access);
            json_t *want = expected_view(w, sm);
            if (!json_equal(want, got)) {
                char *wt = tpf_dump(want), *sv = tpf_dump(sm->value);
                tpf_fail("%s/%s: the view is %s; the server's value %s with the pending writes "
                         "on top is %s",
                         scope, id, text, sv, wt);
            }
            json_decref(want);
        }
        json_decref(got);
        tp_free(text);
    }
    /* Everything the account says exists is held; what may exist and is not
     * held is gone (with its writes). */
    for (size_t k = 0; k < w->nmodels;) {
        smodel *sm = &w->models[k];
        int listed = 0;
        json_array_foreach(list, i, e)
        {
            listed |= strcmp(str(e, "scope"), sm->scope) == 0 && strcmp(str(e, "id"), sm->id) == 0;
        }
        if (listed) {
            k++;
            continue;
        }
        TPF_CHECK(sm->state == S_MAYBE, "the client lost %s/%s", sm->scope, sm->id);
        writes_done(w, sm->scope, sm->id);
        drop_model(w, sm);
    }
    json_decref(list);

    char *none = tp_client_get(w->c, "private", "", NULL, NULL);
    TPF_CHECK(none == NULL, "tp_client_get of an empty id: %s", none);
    none = tp_client_get(w->c, "global", "notes", NULL, NULL);
    TPF_CHECK(none == NULL, "tp_client_get of a bad scope: %s", none);

    size_t known = 0, unknown = 0, pending = tp_client_pending(w->c);
    for (size_t k = 0; k < w->nwrites; k++) {
        known += w->writes[k].status == W_PENDING;
        unknown += w->writes[k].status == W_UNKNOWN;
    }
    TPF_CHECK(pending >= known && pending <= known + unknown && pending <= w->nwrites,
              "tp_client_pending is %zu: %zu writes pending, %zu unknown, %zu made", pending, known,
              unknown, w->nwrites);
}

static void
checkpoint(world *w)
{
    drain(w);
    if (w->connected) {
        TPF_CHECK(!w->opener_due, "the connection's first message was never sent");
        /* Pending writes are all sent, unless 256 are in flight (the
         * client's window: the outcomes the server remembers). */
        size_t unsent = 0, pending = 0;
        for (size_t k = 0; k < w->nwrites; k++) {
            if (w->writes[k].status != W_PENDING || w->writes[k].loose)
                continue;
            pending++;
            unsent += w->writes[k].allowance != 0;
        }
        TPF_CHECK(unsent == 0 || pending - unsent >= 256,
                  "%zu pending writes not sent on this connection with %zu in flight", unsent,
                  pending - unsent);
    }
    verify(w);
}

/* ---- The application's and the transport's calls ---- */

static void
app_write(world *w, unsigned pick, const char *patch)
{
    json_t *list = models_now(w);
    size_t n = json_array_size(list);
    size_t idx = pick % (n + 1);
    const char *scope = "private", *id = "no-such-model";
    int held = 0, acc = TP_WRITE;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(list, i);
        if (i == idx ||
            (idx == n && strcmp(str(e, "scope"), scope) == 0 && strcmp(str(e, "id"), id) == 0)) {
            scope = str(e, "scope");
            id = str(e, "id");
            parse_access(e, &acc);
            held = 1;
            break;
        }
    }
    json_error_t je;
    json_t *jp = json_loads(patch, JSON_REJECT_DUPLICATES, &je);
    json_int_t next = (json_int_t)w->nwrites + 1;
    int expect; /* 1: a ref; 2: a ref or too_large; else that code */
    size_t msg_len = 0;
    if (!json_is_object(jp)) {
        expect = TP_EBADREQUEST;
    } else if (held == 0) {
        expect = TP_ENOTFOUND;
    } else if (acc != TP_WRITE) {
        expect = TP_EFORBIDDEN;
    } else {
        /* The write's message, compact: its length does not depend on the
         * order of its members. */
        json_t *m = json_pack("{s:s,s:I,s:s,s:s,s:O}", "type", "write", "ref", next, "scope", scope,
                              "id", id, "patch", jp);
        char *t = tpf_dump(m);
        msg_len = strlen(t);
        free(t);
        json_decref(m);
        expect = !w->max_known ? 2 : msg_len > w->max_bytes ? TP_ETOOLARGE : 1;
    }
    tp_error err;
    int64_t rc = tp_client_write(w->c, scope, id, patch, &err);
    if (rc > 0) {
        TPF_CHECK(expect == 1 || expect == 2,
                  "tp_client_write(%s, %s, %s) gave ref %lld, expected %d", scope, id, patch,
                  (long long)rc, expect);
        TPF_CHECK(rc == next, "tp_client_write gave ref %lld, expected %lld", (long long)rc,
                  (long long)next);
        smodel *sm = find_model(w, scope, id);
        TPF_CHECK(sm != NULL, "a write to %s/%s, which the account does not hold", scope, id);
        if (w->nwrites == w->capwrites) {
            w->capwrites = w->capwrites ? w->capwrites * 2 : 16;
            swrite *more = realloc(w->writes, w->capwrites * sizeof *more);
            TPF_CHECK(more != NULL, "out of memory");
            w->writes = more;
        }
        swrite *s = &w->writes[w->nwrites++];
        memset(s, 0, sizeof *s);
        s->scope = dup_str(scope);
        s->id = dup_str(id);
        s->patch = jp;
        jp = NULL;
        s->status = W_PENDING;
        s->allowance = w->connected ? 1 : 0;
    } else {
        TPF_CHECK(rc == err.code, "tp_client_write returned %lld, err.code %d", (long long)rc,
                  err.code);
        if (expect == 2)
            TPF_CHECK(rc == TP_ETOOLARGE, "tp_client_write: %lld (%s)", (long long)rc, err.message);
        else
            TPF_CHECK(rc == expect,
                      "tp_client_write(%s, %s, %s) (%zu bytes, limit %zu): %lld "
                      "(%s), expected %d",
                      scope, id, patch, msg_len, w->max_bytes, (long long)rc, err.message, expect);
    }
    json_decref(jp);
    json_decref(list);
}

static void
opened(world *w)
{
    json_t *list = models_now(w);
    char *url = tp_client_url(w->c);
    TPF_CHECK(url != NULL, "tp_client_url is NULL");
    TPF_CHECK((strstr(url, "resume=1") != NULL) == (json_array_size(list) > 0),
              "the URL %s, holding %zu models", url, json_array_size(list));
    tp_free(url);
    tp_client_opened(w->c);
    TPF_CHECK(tp_client_get_state(w->c) == TP_CLIENT_SYNCING, "opened: state %d",
              (int)tp_client_get_state(w->c));
    json_decref(w->open_models);
    w->open_models = list;
    w->connected = 1;
    w->opener_due = 1;
    w->last_first_ref = 0;
    for (size_t k = 0; k < w->nwrites; k++) {
        swrite *s = &w->writes[k];
        s->allowance = s->status == W_PENDING ? 1 : 0;
        s->rl = 0;
        s->conn_sends = 0;
        s->loose = s->status == W_UNKNOWN;
    }
}

static void
disconnected(world *w)
{
    w->connected = 0;
    w->opener_due = 0;
    for (size_t k = 0; k < w->nwrites; k++) {
        w->writes[k].allowance = 0;
        w->writes[k].rl = 0;
    }
    TPF_CHECK(tp_client_next_frame(w->c, NULL) == NULL, "a frame right after the connection ended");
}

static void
closed(world *w, const uint8_t *line, size_t len)
{
    int code = 0;
    size_t i = 1;
    for (; i < len && i < 6 && line[i] >= '0' && line[i] <= '9'; i++)
        code = code * 10 + (line[i] - '0');
    if (i == 1)
        code = 1006;
    char *why = i < len && line[i] == ' ' ? tpf_strndup(line + i + 1, len - i - 1) : NULL;
    tp_client_state before = tp_client_get_state(w->c);
    tp_client_closed(w->c, code, why);
    free(why);
    tp_client_state want = code == 400 || code == 401 || code == 403 || code == 404
                               ? TP_CLIENT_REFUSED
                           : before == TP_CLIENT_STOPPED ? TP_CLIENT_STOPPED
                                                         : TP_CLIENT_WAITING;
    TPF_CHECK(tp_client_get_state(w->c) == want, "closed %d: state %d, expected %d", code,
              (int)tp_client_get_state(w->c), (int)want);
    disconnected(w);
}

static void
tick(world *w)
{
    tp__client_ping(w->c);
    /* The held writes' delay starts, then passes (at most 10 s). */
    static int64_t clock_ms = 1;
    int64_t at = tp__client_retry(w->c, clock_ms);
    clock_ms = (at == INT64_MAX ? clock_ms : at) + 1;
    tp__client_retry(w->c, clock_ms);
    if (!w->connected)
        return;
    for (size_t k = 0; k < w->nwrites; k++) {
        swrite *s = &w->writes[k];
        if (s->status == W_PENDING && s->rl) {
            s->allowance++;
            s->rl = 0;
        }
    }
}

/* ---- The input ---- */

static unsigned
arg(const uint8_t *line, size_t len, size_t i)
{
    return i < len ? line[i] : '0';
}

static void
run_line(world *w, const uint8_t *line, size_t len)
{
    if (len == 0)
        return;
    trace("line", line, len);
    switch (line[0]) {
    case '<': feed(w, line + 1, len - 1); break;
    case 'o': opened(w); break;
    case 'x': closed(w, line, len); break;
    case 'S':
        tp_client_stop(w->c);
        TPF_CHECK(tp_client_get_state(w->c) == TP_CLIENT_STOPPED, "stopped: state %d",
                  (int)tp_client_get_state(w->c));
        disconnected(w);
        break;
    case 'w': {
        char *patch = tpf_strndup(line + (len < 2 ? len : 2), len < 2 ? 0 : len - 2);
        app_write(w, arg(line, len, 1), patch);
        free(patch);
        break;
    }
    case 'b': {
        size_t k = (size_t)((arg(line, len, 2) - '0') & 63u);
        size_t n = k * 1024 + 8;
        char *patch = malloc(n + 16);
        TPF_CHECK(patch != NULL, "out of memory");
        memcpy(patch, "{\"b\":\"", 6);
        memset(patch + 6, 'x', n);
        memcpy(patch + 6 + n, "\"}", 3);
        app_write(w, arg(line, len, 1), patch);
        free(patch);
        break;
    }
    case 'P': {
        char *text = tpf_strndup(line + (len < 2 ? len : 2), len < 2 ? 0 : len - 2);
        app_presence(w, arg(line, len, 1), text);
        free(text);
        break;
    }
    case 'n': take(w); break;
    case 'd': drain(w); break;
    case 'p': tick(w); break;
    case 'c': checkpoint(w); break;
    default: return;
    }
    verify(w);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    world *w = calloc(1, sizeof *w);
    TPF_CHECK(w != NULL, "out of memory");
    w->max_bytes = 1024 * 1024;
    w->max_known = 1;
    w->open_models = json_array();
    tp_client_options o;
    memset(&o, 0, sizeof o);
    o.client_id = CLIENT_ID;
    o.cb.snapshot = on_snapshot;
    o.cb.patch = on_patch;
    o.cb.access = on_access;
    o.cb.removed = on_removed;
    o.cb.ack = on_ack;
    o.cb.error = on_error;
    o.cb.state = on_state;
    o.cb.user = w;
    tp_error err;
    char *url = NULL;
    size_t i = 0;
    if (size >= 1 && data[0] == 'U') {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t len = nl ? (size_t)(nl - data) : size;
        url = tpf_strndup(data + 1, len - 1);
        i = len + 1;
        o.token = TOKEN;
        o.token_in_query = 1;
    }
    w->c = tp_client_new(url ? url : "ws://127.0.0.1:8080/ws/alice", &o, &err);
    if (url != NULL && w->c == NULL) {
        TPF_CHECK(err.code == TP_EARG, "tp_client_new(%s): %d (%s)", url, err.code, err.message);
    } else {
        TPF_CHECK(w->c != NULL, "tp_client_new: %s", err.message);
        TPF_CHECK(tp_client_get_state(w->c) == TP_CLIENT_IDLE, "a new client is not IDLE");
    }
    if (url != NULL && w->c != NULL) {
        char *got = tp_client_url(w->c);
        TPF_CHECK(got != NULL && strncmp(got, url, strlen(url)) == 0 &&
                      strstr(got + strlen(url), TOKEN_QUERY) != NULL,
                  "tp_client_new(%s), then tp_client_url: %s", url, got);
        tp_free(got);
    }
    free(url);
    if (w->c == NULL)
        size = 0;
    while (i < size) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t len = nl ? (size_t)(nl - (data + i)) : size - i;
        run_line(w, data + i, len);
        i += len + 1;
    }
    if (w->c != NULL)
        checkpoint(w);
    tp_client_free(w->c);
    for (size_t k = 0; k < w->nmodels; k++) {
        free(w->models[k].scope);
        free(w->models[k].id);
        json_decref(w->models[k].value);
    }
    free(w->models);
    for (size_t k = 0; k < w->nwrites; k++) {
        free(w->writes[k].scope);
        free(w->writes[k].id);
        json_decref(w->writes[k].patch);
    }
    free(w->writes);
    json_decref(w->open_models);
    free(w);
    return 0;
}
