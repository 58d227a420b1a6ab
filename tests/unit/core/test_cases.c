/*
 * Data-driven protocol and merge cases: every tests/cases/proto/<case>/case.json
 * and tests/cases/merge/<case>/case.json, in the format documented in
 * tests/cases/proto/README.md. A case builds a hub from its setup (the shape
 * of the daemon's config: schemas, tenants, shared, limits), runs its steps
 * against connection handles with a fake clock, and compares everything the
 * server sends with the case's expectations, exactly. The JavaScript
 * client's tests read the same files, so the two cannot drift.
 *
 * TP_CASE=<substring> runs only the cases whose directory contains it.
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/conn_int.h"
#include "support.h"
#include "transports.h"

#define MAX_CONNS 64
#define MAX_SCHEMAS 32
#define FRAME_MAX (64 * 1024) /* PROTOCOL.md: a batch frame is at most 64 KiB */

/* ---- Test merge strategies named by cases ---- */

/*
 * "test-refuse-c": RFC 7396 in arrival order, but a patch with a top-level
 * member "c" is refused with "c: refused for <tenant>/<conn>" ("c: refused
 * for host" for the host). The message shows the origin the hub passed.
 */
static json_t *
refuse_c(void *user, const json_t *current, const json_t *patch, const tp_origin *origin,
         tp_error *err)
{
    (void)user;
    if (json_object_get(patch, "c") != NULL) {
        if (origin->tenant != NULL)
            snprintf(err->message, sizeof err->message, "c: refused for %s/%s", origin->tenant,
                     origin->conn);
        else
            snprintf(err->message, sizeof err->message, "c: refused for %s", origin->conn);
        err->code = TP_EREJECTED;
        return NULL;
    }
    return tp_merge_patch_apply(current, patch);
}

/* "test-non-object": a broken strategy that always returns a JSON string. */
static json_t *
non_object(void *user, const json_t *current, const json_t *patch, const tp_origin *origin,
           tp_error *err)
{
    (void)user;
    (void)current;
    (void)patch;
    (void)origin;
    (void)err;
    return json_string("not an object");
}

static const tp_merge test_refuse_c = {"test-refuse-c", refuse_c, NULL};
static const tp_merge test_non_object = {"test-non-object", non_object, NULL};

/* ---- A run of one case ---- */

typedef struct slot {
    char *label;
    tp_conn *conn;
    int close_code; /* the close code the case last said it has (0: open) */
    /* Connection ids are a keyed permutation of the hub's count of
     * connections (issue 11): cases write them "c<count>", and what the hub
     * sends is shown that way before it is compared. */
    char id[24], shown[24];
} slot;

typedef struct run {
    char name[512]; /* "tests/cases/<topic>/<case>" */
    long step;      /* the running step's index, -1 during setup */
    const char *kind;
    tp_hub *hub;
    int64_t now;
    char *schema_names[MAX_SCHEMAS];
    tp_schema *schemas[MAX_SCHEMAS];
    size_t n_schemas;
    slot conns[MAX_CONNS];
    size_t n_conns;
    char *failure; /* the first failure (malloc'd), NULL while all is well */
} run;

/* Records the first failure, naming the case and the step; returns -1. */
static int
fail(run *r, const char *fmt, ...)
{
    if (r->failure != NULL)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *what = malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(what, (size_t)n + 1, fmt, ap);
    va_end(ap);
    char where[64];
    if (r->step < 0)
        snprintf(where, sizeof where, "setup");
    else
        snprintf(where, sizeof where, "step %ld (%s)", r->step, r->kind ? r->kind : "?");
    size_t len = strlen(r->name) + strlen(where) + strlen(what) + 8;
    r->failure = malloc(len);
    snprintf(r->failure, len, "%s: %s: %s", r->name, where, what);
    free(what);
    return -1;
}

/* A compact dump for messages; free() it. */
static char *
dump(const json_t *v)
{
    if (v == NULL)
        return strdup("(nothing)");
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    return s ? s : strdup("(unprintable)");
}

/* A list of messages, one a line. */
static char *
dump_list(const json_t *list)
{
    size_t cap = 64, len = 0;
    char *out = malloc(cap);
    out[0] = '\0';
    size_t i;
    const json_t *m;
    json_array_foreach(list, i, m)
    {
        char *s = dump(m);
        size_t need = len + strlen(s) + 16;
        if (need > cap) {
            cap = need * 2;
            out = realloc(out, cap);
        }
        len += (size_t)snprintf(out + len, cap - len, "\n    [%zu] %s", i, s);
        free(s);
    }
    if (len == 0)
        snprintf(out, cap, " (none)");
    return out;
}

/* Only the listed keys (plus "comment") may appear in obj. */
static int
check_keys(run *r, const json_t *obj, const char *what, const char *const *allowed)
{
    if (!json_is_object(obj))
        return fail(r, "%s: expected an object", what);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        int ok = strcmp(key, "comment") == 0;
        for (size_t i = 0; !ok && allowed[i] != NULL; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok)
            return fail(r, "%s: unknown key \"%s\"", what, key);
    }
    return 0;
}

static const char *
get_str(run *r, const json_t *obj, const char *key, const char *what)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (s == NULL)
        fail(r, "%s: \"%s\" must be a string", what, key);
    return s;
}

/* ---- Matching expected messages ---- */

/* A matcher is an object with exactly one member, named `key`. */
static int
is_matcher(const json_t *v, const char *key)
{
    return json_is_object(v) && json_object_size(v) == 1 && json_object_get(v, key) != NULL;
}

static int match_group(const json_t *want, size_t i, const json_t *got, size_t base, int *used);

/*
 * match compares an expected value with an actual one: structurally (member
 * order ignored, integers and reals told apart as json_equal does), except
 * that {"$any": true} matches any value and {"$prefix": "s"} any string
 * that starts with s.
 */
static int
match(const json_t *want, const json_t *got)
{
    if (got == NULL)
        return 0;
    if (is_matcher(want, "$any"))
        return 1;
    if (is_matcher(want, "$prefix")) {
        const char *p = json_string_value(json_object_get(want, "$prefix"));
        const char *s = json_string_value(got);
        return p != NULL && s != NULL && strncmp(s, p, strlen(p)) == 0;
    }
    if (json_is_object(want)) {
        if (!json_is_object(got) || json_object_size(want) != json_object_size(got))
            return 0;
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)want, key, v)
        {
            if (!match(v, json_object_get(got, key)))
                return 0;
        }
        return 1;
    }
    if (json_is_array(want) && json_array_size(want) == 1 &&
        is_matcher(json_array_get(want, 0), "$unordered")) {
        /* An array inside a message whose order the protocol leaves open
         * (presence_snapshot's peers): its elements in any order. */
        const json_t *group = json_object_get(json_array_get(want, 0), "$unordered");
        size_t k = json_array_size(group);
        if (!json_is_array(got) || json_array_size(got) != k)
            return 0;
        int *used = calloc(k + 1, sizeof *used);
        int ok = used != NULL && match_group(group, 0, got, 0, used);
        free(used);
        return ok;
    }
    if (json_is_array(want)) {
        if (!json_is_array(got) || json_array_size(want) != json_array_size(got))
            return 0;
        for (size_t i = 0; i < json_array_size(want); i++)
            if (!match(json_array_get(want, i), json_array_get(got, i)))
                return 0;
        return 1;
    }
    return json_equal(want, got);
}

/* Finds a one-to-one matching of want[i..] onto got[base..base+k) (backtracking). */
static int
match_group(const json_t *want, size_t i, const json_t *got, size_t base, int *used)
{
    size_t k = json_array_size(want);
    if (i == k)
        return 1;
    for (size_t j = 0; j < k; j++) {
        if (used[j] || !match(json_array_get(want, i), json_array_get(got, base + j)))
            continue;
        used[j] = 1;
        if (match_group(want, i + 1, got, base, used))
            return 1;
        used[j] = 0;
    }
    return 0;
}

/*
 * match_list compares the messages a connection got with the expected list,
 * whose elements may be {"$unordered": [...]}: a run of messages in any
 * order. Returns NULL or a malloc'd explanation.
 */
static char *
match_list(const json_t *want, const json_t *got)
{
    size_t pos = 0, i;
    const json_t *w;
    char buf[256] = "";
    json_array_foreach(want, i, w)
    {
        if (is_matcher(w, "$unordered")) {
            const json_t *group = json_object_get(w, "$unordered");
            size_t k = json_array_size(group);
            if (pos + k > json_array_size(got)) {
                snprintf(buf, sizeof buf,
                         "expected element %zu, an unordered run of %zu messages at message %zu; "
                         "got %zu messages in all",
                         i, k, pos, json_array_size(got));
                break;
            }
            int *used = calloc(k + 1, sizeof *used);
            int ok = match_group(group, 0, got, pos, used);
            free(used);
            if (!ok) {
                snprintf(buf, sizeof buf,
                         "expected element %zu, an unordered run of %zu messages, does not match "
                         "messages %zu to %zu",
                         i, k, pos, pos + k - 1);
                break;
            }
            pos += k;
            continue;
        }
        if (pos >= json_array_size(got)) {
            snprintf(buf, sizeof buf, "expected element %zu is missing: got %zu messages", i,
                     json_array_size(got));
            break;
        }
        if (!match(w, json_array_get(got, pos))) {
            snprintf(buf, sizeof buf, "message %zu differs from expected element %zu", pos, i);
            break;
        }
        pos++;
    }
    if (buf[0] == '\0' && pos < json_array_size(got))
        snprintf(buf, sizeof buf, "%zu unexpected message(s) from message %zu on",
                 json_array_size(got) - pos, pos);
    if (buf[0] == '\0')
        return NULL;
    char *ws = dump_list(want), *gs = dump_list(got);
    size_t len = strlen(buf) + strlen(ws) + strlen(gs) + 64;
    char *out = malloc(len);
    snprintf(out, len, "%s\n  expected:%s\n  got:%s", buf, ws, gs);
    free(ws);
    free(gs);
    return out;
}

/* ---- Connections ---- */

static slot *
find_slot(run *r, const char *label)
{
    for (size_t i = 0; i < r->n_conns; i++)
        if (r->conns[i].conn != NULL && strcmp(r->conns[i].label, label) == 0)
            return &r->conns[i];
    fail(r, "no open connection \"%s\"", label);
    return NULL;
}

/*
 * drain takes every frame from a connection's outbox and returns its
 * messages, batches flattened (NULL after a failure). Every frame must be a
 * JSON object or a non-empty array of objects; a batch at most 64 KiB.
 */
/* Rewrites every connection id in the strings of v (a "conn", an
 * "origin", a message quoting one) the way cases write it: "c" and the
 * connection's count in the hub. */
static void
show_ids(run *r, json_t *v)
{
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            show_ids(r, json_array_get(v, i));
        return;
    }
    const char *key;
    json_t *m;
    json_object_foreach(v, key, m)
    {
        if (!json_is_string(m)) {
            show_ids(r, m);
            continue;
        }
        for (size_t i = 0; i < r->n_conns; i++) {
            const char *at = strstr(json_string_value(m), r->conns[i].id);
            if (at == NULL)
                continue;
            const char *text = json_string_value(m);
            char out[1024];
            snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, r->conns[i].shown,
                     at + strlen(r->conns[i].id));
            json_string_set(m, out);
            i = (size_t)-1; /* again, from the first: another id may follow */
        }
    }
}

static json_t *
drain(run *r, slot *s)
{
    json_t *out = json_array();
    const char *frame;
    size_t len;
    while ((frame = tp_conn_next_frame(s->conn, &len)) != NULL) {
        json_error_t jerr;
        json_t *v = json_loadb(frame, len, 0, &jerr);
        if (v == NULL) {
            json_decref(out);
            fail(r, "%s: a frame is not JSON (%s): %.*s", s->label, jerr.text, (int)len, frame);
            return NULL;
        }
        if (json_is_array(v)) {
            int bad = len > FRAME_MAX || json_array_size(v) == 0;
            for (size_t i = 0; !bad && i < json_array_size(v); i++)
                bad = !json_is_object(json_array_get(v, i));
            if (bad) {
                json_decref(v);
                json_decref(out);
                fail(r,
                     "%s: a batch frame of %zu bytes that is empty, over 64 KiB or holds a "
                     "non-object",
                     s->label, len);
                return NULL;
            }
            json_array_extend(out, v);
        } else {
            json_array_append(out, v);
        }
        json_decref(v);
    }
    show_ids(r, out);
    return out;
}

/* ---- Setup: schemas, tenants, shared models, limits ---- */

static tp_schema *
schema_named(run *r, const char *name)
{
    for (size_t i = 0; name != NULL && i < r->n_schemas; i++)
        if (strcmp(r->schema_names[i], name) == 0)
            return r->schemas[i];
    fail(r, "no schema \"%s\" in setup.schemas", name ? name : "(missing)");
    return NULL;
}

static const tp_merge *
merge_named(run *r, const char *name, int *ok)
{
    *ok = 1;
    if (name == NULL || strcmp(name, "lww") == 0)
        return NULL;
    if (strcmp(name, "lww-map") == 0)
        return &tp_lww_map_crdt;
    if (strcmp(name, "test-refuse-c") == 0)
        return &test_refuse_c;
    if (strcmp(name, "test-non-object") == 0)
        return &test_non_object;
    *ok = 0;
    fail(r, "unknown merge strategy \"%s\"", name);
    return NULL;
}

static int
parse_access(run *r, const json_t *v, tp_access *access)
{
    const char *s = json_string_value(v);
    if (s != NULL && strcmp(s, "read") == 0)
        *access = TP_READ;
    else if (s != NULL && strcmp(s, "write") == 0)
        *access = TP_WRITE;
    else
        return fail(r, "access: expected \"read\" or \"write\"");
    return 0;
}

/*
 * check_call compares the outcome of a host call with the step's optional
 * "error": {"code": <PROTOCOL.md name>, "message": <exact>}. Without
 * "error" the call must succeed.
 */
static int
check_call(run *r, const json_t *step, int rc, const tp_error *err, const char *what)
{
    const json_t *want = json_object_get(step, "error");
    if (want == NULL) {
        if (rc < 0)
            return fail(r, "%s failed: %s (%s)", what, tp_error_name(rc),
                        err ? err->message : tp_strerror(rc));
        return 0;
    }
    const char *code = json_string_value(json_object_get(want, "code"));
    const char *msg = json_string_value(json_object_get(want, "message"));
    if (rc >= 0)
        return fail(r, "%s succeeded, expected error %s", what, code ? code : "?");
    if (code == NULL || strcmp(tp_error_name(rc), code) != 0)
        return fail(r, "%s failed with %s, expected %s", what, tp_error_name(rc),
                    code ? code : "(no code given)");
    if (msg != NULL && (err == NULL || strcmp(err->message, msg) != 0))
        return fail(r, "%s failed with message \"%s\", expected \"%s\"", what,
                    err ? err->message : "", msg);
    return 0;
}

static char *
value_text(run *r, const json_t *v, const char *what)
{
    if (v == NULL) {
        fail(r, "%s: \"value\" is missing", what);
        return NULL;
    }
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static int
host_private(run *r, const char *tenant, const char *id, const json_t *model, const json_t *step)
{
    static const char *const keys[] = {"tenant", "id", "schema", "value", NULL};
    if (check_keys(r, model, "model", keys) != 0)
        return -1;
    tp_schema *schema = schema_named(r, json_string_value(json_object_get(model, "schema")));
    char *text = value_text(r, json_object_get(model, "value"), "model");
    if (schema == NULL || text == NULL) {
        free(text);
        return -1;
    }
    tp_error err = {0, ""};
    const char *got = tp_session_host_as(tp_hub_tenant(r->hub, tenant), id, schema, text, &err);
    free(text);
    return check_call(r, step, got ? 0 : err.code, &err, "hosting a private model");
}

static int
share(run *r, const char *sid, const json_t *model, const json_t *step)
{
    static const char *const keys[] = {"id", "schema", "merge", "value", "subscribers", NULL};
    if (check_keys(r, model, "shared model", keys) != 0)
        return -1;
    int ok;
    const tp_merge *merge = merge_named(r, json_string_value(json_object_get(model, "merge")), &ok);
    tp_schema *schema = schema_named(r, json_string_value(json_object_get(model, "schema")));
    char *text = value_text(r, json_object_get(model, "value"), "shared model");
    if (!ok || schema == NULL || text == NULL) {
        free(text);
        return -1;
    }
    tp_error err = {0, ""};
    const char *got = tp_hub_share_as(r->hub, sid, schema, text, merge, &err);
    free(text);
    if (check_call(r, step, got ? 0 : err.code, &err, "sharing a model") != 0 || got == NULL)
        return -1;
    const json_t *subs = json_object_get(model, "subscribers");
    if (subs != NULL && !json_is_object(subs))
        return fail(r, "subscribers: expected an object");
    const char *tenant;
    const json_t *acc;
    json_object_foreach((json_t *)subs, tenant, acc)
    {
        tp_access access;
        if (parse_access(r, acc, &access) != 0)
            return -1;
        int rc = tp_hub_subscribe(r->hub, tenant, sid, access);
        if (rc != TP_OK)
            return fail(r, "subscribing %s to %s: %s", tenant, sid, tp_strerror(rc));
    }
    return 0;
}

static int
set_limit(run *r, const char *key, const json_t *v, tp_limits *l)
{
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return fail(r, "limits.%s: expected an integer > 0", key);
    json_int_t n = json_integer_value(v);
    if (strcmp(key, "max_message_bytes") == 0)
        l->max_message_bytes = (size_t)n;
    else if (strcmp(key, "max_outbox_bytes") == 0)
        l->max_outbox_bytes = (size_t)n;
    else if (strcmp(key, "writes_per_second") == 0)
        l->writes_per_second = (unsigned)n;
    else if (strcmp(key, "history_patches") == 0)
        l->history_patches = (unsigned)n;
    else if (strcmp(key, "history_bytes") == 0)
        l->history_bytes = (size_t)n;
    else if (strcmp(key, "client_records") == 0)
        l->client_records = (unsigned)n;
    else if (strcmp(key, "max_skew_ms") == 0)
        l->max_skew_ms = (unsigned)n;
    else
        return fail(r, "limits: unknown limit \"%s\"", key);
    return 0;
}

static int
setup(run *r, const json_t *setup)
{
    static const char *const keys[] = {"clock",   "autosync_ms", "limits", "schemas",
                                       "tenants", "shared",      NULL};
    if (check_keys(r, setup, "setup", keys) != 0)
        return -1;
    r->now = 1700000000000;
    const json_t *clock = json_object_get(setup, "clock");
    if (clock != NULL) {
        if (!json_is_integer(clock))
            return fail(r, "clock: expected an integer");
        r->now = json_integer_value(clock);
    }
    tp_hub_config cfg = {0};
    cfg.clock = tpt_clock;
    cfg.clock_user = &r->now;
    /* A fixed key: ties between connections (lww-map) come out the same
     * on every run. */
    for (unsigned i = 0; i < sizeof cfg.conn_key; i++)
        cfg.conn_key[i] = (unsigned char)(i + 1);
    const json_t *tick = json_object_get(setup, "autosync_ms");
    if (tick != NULL) {
        if (!json_is_integer(tick) || json_integer_value(tick) < 0)
            return fail(r, "autosync_ms: expected an integer >= 0");
        cfg.tick_ms = (unsigned)json_integer_value(tick);
    }
    const json_t *limits = json_object_get(setup, "limits");
    const char *key;
    const json_t *v;
    if (limits != NULL && !json_is_object(limits))
        return fail(r, "limits: expected an object");
    json_object_foreach((json_t *)limits, key, v)
    {
        if (set_limit(r, key, v, &cfg.limits) != 0)
            return -1;
    }
    tp_error err = {0, ""};
    r->hub = tp_hub_new(&cfg, &err);
    if (r->hub == NULL)
        return fail(r, "tp_hub_new: %s", err.message);

    const json_t *schemas = json_object_get(setup, "schemas");
    if (!json_is_object(schemas))
        return fail(r, "schemas: required, an object");
    json_object_foreach((json_t *)schemas, key, v)
    {
        if (r->n_schemas == MAX_SCHEMAS)
            return fail(r, "schemas: more than %d", MAX_SCHEMAS);
        char *text = json_dumps(v, JSON_COMPACT);
        tp_schema *s = text ? tp_schema_new(text, &err) : NULL;
        free(text);
        if (s == NULL)
            return fail(r, "schema \"%s\": %s", key, err.message);
        r->schema_names[r->n_schemas] = strdup(key);
        r->schemas[r->n_schemas++] = s;
    }

    const json_t *tenants = json_object_get(setup, "tenants");
    if (tenants != NULL && !json_is_object(tenants))
        return fail(r, "tenants: expected an object");
    json_object_foreach((json_t *)tenants, key, v)
    {
        static const char *const tkeys[] = {"models", NULL};
        if (check_keys(r, v, "tenant", tkeys) != 0)
            return -1;
        if (tp_hub_tenant(r->hub, key) == NULL)
            return fail(r, "tenant \"%s\": not a valid key", key);
        const char *id;
        const json_t *model;
        json_object_foreach(json_object_get(v, "models"), id, model)
        {
            if (host_private(r, key, id, model, NULL) != 0)
                return -1;
        }
    }

    const json_t *shared = json_object_get(setup, "shared");
    if (shared != NULL && !json_is_object(shared))
        return fail(r, "shared: expected an object");
    json_object_foreach((json_t *)shared, key, v)
    {
        if (share(r, key, v, NULL) != 0)
            return -1;
    }
    return 0;
}

/* ---- Steps ---- */

static int
step_open(run *r, const json_t *st)
{
    static const char *const keys[] = {"open", "tenant", "resume", NULL};
    if (check_keys(r, st, "open", keys) != 0)
        return -1;
    const char *label = get_str(r, st, "open", "open");
    const char *tenant = get_str(r, st, "tenant", "open");
    const json_t *resume = json_object_get(st, "resume");
    if (label == NULL || tenant == NULL)
        return -1;
    if (resume != NULL && !json_is_boolean(resume))
        return fail(r, "resume: expected true or false");
    for (size_t i = 0; i < r->n_conns; i++)
        if (r->conns[i].conn != NULL && strcmp(r->conns[i].label, label) == 0)
            return fail(r, "connection \"%s\" is already open", label);
    if (r->n_conns == MAX_CONNS)
        return fail(r, "more than %d connections", MAX_CONNS);
    tp_error err = {0, ""};
    tp_conn *c = tp_conn_open(r->hub, tenant, json_is_true(resume) ? TP_CONN_RESUME : 0, &err);
    if (c == NULL)
        return fail(r, "tp_conn_open(%s): %s", tenant, err.message);
    slot *s = &r->conns[r->n_conns++];
    s->label = strdup(label);
    s->conn = c;
    s->close_code = 0;
    snprintf(s->id, sizeof s->id, "%s", tp_conn_id(c));
    snprintf(s->shown, sizeof s->shown, "c%llu", (unsigned long long)c->num);
    return 0;
}

static int
feed(run *r, slot *s, const char *text, size_t len)
{
    int rc = tp_conn_feed(s->conn, text, len);
    int code = tp_conn_close_code(s->conn);
    /* The return value and the close code must agree. */
    if ((rc == TP_ECLOSED) != (code != 0) || (rc != TP_OK && rc != TP_ECLOSED))
        return fail(r, "tp_conn_feed returned %d with close code %d", rc, code);
    return 0;
}

static int
step_send(run *r, const json_t *st)
{
    static const char *const keys[] = {"send", "frame", "text", "repeat", "pad_to", NULL};
    if (check_keys(r, st, "send", keys) != 0)
        return -1;
    const char *label = get_str(r, st, "send", "send");
    slot *s = label ? find_slot(r, label) : NULL;
    if (s == NULL)
        return -1;
    const json_t *frame = json_object_get(st, "frame");
    const json_t *text = json_object_get(st, "text");
    const json_t *repeat = json_object_get(st, "repeat");
    const json_t *pad = json_object_get(st, "pad_to");
    if ((frame == NULL) == (text == NULL))
        return fail(r, "exactly one of \"frame\" and \"text\"");
    if (text != NULL && !json_is_string(text))
        return fail(r, "text: expected a string");
    if (pad != NULL && (!json_is_integer(pad) || json_integer_value(pad) < 0))
        return fail(r, "pad_to: expected an integer >= 0");
    json_int_t times = 1;
    json_int_t ref0 = 0;
    if (repeat != NULL) {
        if (!json_is_integer(repeat) || json_integer_value(repeat) < 1)
            return fail(r, "repeat: expected an integer >= 1");
        if (!json_is_integer(json_object_get(frame, "ref")))
            return fail(r, "repeat: the frame must be an object with an integer ref");
        times = json_integer_value(repeat);
        ref0 = json_integer_value(json_object_get(frame, "ref"));
    }
    json_t *copy = frame ? json_deep_copy(frame) : NULL;
    int rc = 0;
    for (json_int_t i = 0; rc == 0 && i < times; i++) {
        char *t;
        if (copy != NULL) {
            if (repeat != NULL)
                json_object_set_new(copy, "ref", json_integer(ref0 + i));
            t = json_dumps(copy, JSON_COMPACT | JSON_ENCODE_ANY);
        } else {
            t = malloc(json_string_length(text) + 1);
            memcpy(t, json_string_value(text), json_string_length(text) + 1);
        }
        size_t len = json_is_string(text) ? json_string_length(text) : strlen(t);
        if (pad != NULL && (size_t)json_integer_value(pad) > len) {
            size_t to = (size_t)json_integer_value(pad);
            t = realloc(t, to + 1);
            memset(t + len, ' ', to - len);
            t[to] = '\0';
            len = to;
        }
        rc = feed(r, s, t, len);
        free(t);
    }
    json_decref(copy);
    return rc;
}

static int
check_close_code(run *r, slot *s)
{
    int code = tp_conn_close_code(s->conn);
    if (code != s->close_code)
        return fail(r, "%s: close code %d, expected %d", s->label, code, s->close_code);
    return 0;
}

static int
step_expect(run *r, const json_t *st)
{
    static const char *const keys[] = {"expect", "messages", "close_code", NULL};
    if (check_keys(r, st, "expect", keys) != 0)
        return -1;
    const char *label = get_str(r, st, "expect", "expect");
    slot *s = label ? find_slot(r, label) : NULL;
    const json_t *want = json_object_get(st, "messages");
    const json_t *code = json_object_get(st, "close_code");
    if (s == NULL)
        return -1;
    if (!json_is_array(want))
        return fail(r, "messages: required, an array");
    if (code != NULL && !json_is_integer(code))
        return fail(r, "close_code: expected an integer");
    s->close_code = code ? (int)json_integer_value(code) : 0;
    json_t *got = drain(r, s);
    if (got == NULL)
        return -1;
    char *why = match_list(want, got);
    json_decref(got);
    if (why != NULL) {
        fail(r, "connection \"%s\" (%s): %s", s->label, tp_conn_id(s->conn), why);
        free(why);
        return -1;
    }
    return check_close_code(r, s);
}

static int
step_drain(run *r, const json_t *st)
{
    static const char *const keys[] = {"drain", "count", NULL};
    if (check_keys(r, st, "drain", keys) != 0)
        return -1;
    const char *label = get_str(r, st, "drain", "drain");
    slot *s = label ? find_slot(r, label) : NULL;
    const json_t *count = json_object_get(st, "count");
    if (s == NULL)
        return -1;
    json_t *got = drain(r, s);
    if (got == NULL)
        return -1;
    size_t n = json_array_size(got);
    json_decref(got);
    if (count != NULL && (!json_is_integer(count) || (size_t)json_integer_value(count) != n))
        return fail(r, "%s: drained %zu messages, expected %s", s->label, n,
                    json_is_integer(count) ? "another count" : "(count must be an integer)");
    return 0;
}

static int
step_close(run *r, const json_t *st)
{
    static const char *const keys[] = {"close", "discard", NULL};
    if (check_keys(r, st, "close", keys) != 0)
        return -1;
    const char *label = get_str(r, st, "close", "close");
    slot *s = label ? find_slot(r, label) : NULL;
    if (s == NULL)
        return -1;
    if (!json_is_true(json_object_get(st, "discard"))) {
        /* Closing must not hide messages the case did not expect. */
        json_t *got = drain(r, s);
        if (got == NULL)
            return -1;
        if (json_array_size(got) > 0) {
            char *gs = dump_list(got);
            json_decref(got);
            fail(r,
                 "%s: closed with unexpected messages unread (say \"discard\": true to drop "
                 "them):%s",
                 s->label, gs);
            free(gs);
            return -1;
        }
        json_decref(got);
        if (check_close_code(r, s) != 0)
            return -1;
    }
    tp_conn_close(s->conn);
    s->conn = NULL;
    return 0;
}

/* The model a host step names: {"scope", "id", "tenant" for private ones}. */
static int
model_ref(run *r, const json_t *m, const char **scope, const char **tenant, const char **id)
{
    *scope = json_string_value(json_object_get(m, "scope"));
    *id = json_string_value(json_object_get(m, "id"));
    *tenant = json_string_value(json_object_get(m, "tenant"));
    if (*scope == NULL || (strcmp(*scope, "private") != 0 && strcmp(*scope, "shared") != 0))
        return fail(r, "scope: expected \"private\" or \"shared\"");
    if (*id == NULL)
        return fail(r, "id: expected a string");
    if ((strcmp(*scope, "private") == 0) != (*tenant != NULL))
        return fail(r, "tenant: required for a private model, not allowed for a shared one");
    return 0;
}

static int
step_host_set(run *r, const json_t *st)
{
    static const char *const keys[] = {"host_set", "error", NULL};
    static const char *const mkeys[] = {"scope", "tenant", "id", "value", NULL};
    const json_t *m = json_object_get(st, "host_set");
    const char *scope, *tenant, *id;
    if (check_keys(r, st, "host_set", keys) != 0 || check_keys(r, m, "host_set", mkeys) != 0 ||
        model_ref(r, m, &scope, &tenant, &id) != 0)
        return -1;
    char *text = value_text(r, json_object_get(m, "value"), "host_set");
    if (text == NULL)
        return -1;
    tp_error err = {0, ""};
    int rc = tenant ? tp_session_set(tp_hub_tenant(r->hub, tenant), id, text, &err)
                    : tp_hub_set_shared(r->hub, id, text, &err);
    free(text);
    return check_call(r, st, rc, &err, "host_set");
}

static int
step_host(run *r, const json_t *st)
{
    static const char *const keys[] = {"host", "error", NULL};
    const json_t *m = json_object_get(st, "host");
    if (check_keys(r, st, "host", keys) != 0)
        return -1;
    const char *tenant = get_str(r, m, "tenant", "host");
    const char *id = get_str(r, m, "id", "host");
    if (tenant == NULL || id == NULL)
        return -1;
    return host_private(r, tenant, id, m, st);
}

static int
step_share(run *r, const json_t *st)
{
    static const char *const keys[] = {"share", "error", NULL};
    const json_t *m = json_object_get(st, "share");
    if (check_keys(r, st, "share", keys) != 0)
        return -1;
    const char *id = get_str(r, m, "id", "share");
    return id ? share(r, id, m, st) : -1;
}

static int
step_delete(run *r, const json_t *st)
{
    static const char *const keys[] = {"delete", "error", NULL};
    static const char *const mkeys[] = {"tenant", "id", NULL};
    const json_t *m = json_object_get(st, "delete");
    if (check_keys(r, st, "delete", keys) != 0 || check_keys(r, m, "delete", mkeys) != 0)
        return -1;
    const char *tenant = get_str(r, m, "tenant", "delete");
    const char *id = get_str(r, m, "id", "delete");
    if (tenant == NULL || id == NULL)
        return -1;
    return check_call(r, st, tp_session_delete(tp_hub_tenant(r->hub, tenant), id), NULL, "delete");
}

static int
step_unshare(run *r, const json_t *st)
{
    static const char *const keys[] = {"unshare", "error", NULL};
    static const char *const mkeys[] = {"id", NULL};
    const json_t *m = json_object_get(st, "unshare");
    if (check_keys(r, st, "unshare", keys) != 0 || check_keys(r, m, "unshare", mkeys) != 0)
        return -1;
    const char *id = get_str(r, m, "id", "unshare");
    return id ? check_call(r, st, tp_hub_unshare(r->hub, id), NULL, "unshare") : -1;
}

static int
step_subscribe(run *r, const json_t *st, int subscribe)
{
    static const char *const keys[] = {"subscribe", "unsubscribe", "error", NULL};
    static const char *const skeys[] = {"tenant", "id", "access", NULL};
    static const char *const ukeys[] = {"tenant", "id", NULL};
    const char *kind = subscribe ? "subscribe" : "unsubscribe";
    const json_t *m = json_object_get(st, kind);
    if (check_keys(r, st, kind, keys) != 0 ||
        check_keys(r, m, kind, subscribe ? skeys : ukeys) != 0)
        return -1;
    const char *tenant = get_str(r, m, "tenant", kind);
    const char *id = get_str(r, m, "id", kind);
    if (tenant == NULL || id == NULL)
        return -1;
    int rc;
    if (subscribe) {
        tp_access access;
        if (parse_access(r, json_object_get(m, "access"), &access) != 0)
            return -1;
        rc = tp_hub_subscribe(r->hub, tenant, id, access);
    } else {
        rc = tp_hub_unsubscribe(r->hub, tenant, id);
    }
    return check_call(r, st, rc, NULL, kind);
}

static int
step_sync(run *r, const json_t *st)
{
    static const char *const keys[] = {"sync", NULL};
    if (check_keys(r, st, "sync", keys) != 0)
        return -1;
    if (!json_is_true(json_object_get(st, "sync")))
        return fail(r, "sync: expected true");
    int rc = tp_hub_sync(r->hub);
    return rc < 0 ? fail(r, "tp_hub_sync: %s", tp_strerror(rc)) : 0;
}

static int
step_clock(run *r, const json_t *st)
{
    static const char *const keys[] = {"clock", NULL};
    if (check_keys(r, st, "clock", keys) != 0)
        return -1;
    const json_t *v = json_object_get(st, "clock");
    if (!json_is_integer(v))
        return fail(r, "clock: expected an integer (milliseconds since the epoch)");
    r->now = json_integer_value(v);
    return 0;
}

static int
step_expect_value(run *r, const json_t *st)
{
    static const char *const keys[] = {"expect_value", NULL};
    static const char *const mkeys[] = {"scope", "tenant", "id", "value", "rev", NULL};
    const json_t *m = json_object_get(st, "expect_value");
    const char *scope, *tenant, *id;
    if (check_keys(r, st, "expect_value", keys) != 0 ||
        check_keys(r, m, "expect_value", mkeys) != 0 || model_ref(r, m, &scope, &tenant, &id) != 0)
        return -1;
    const json_t *want = json_object_get(m, "value");
    const json_t *rev = json_object_get(m, "rev");
    if (want == NULL)
        return fail(r, "value: required (null: the model does not exist)");
    if (rev != NULL && !json_is_integer(rev))
        return fail(r, "rev: expected an integer");
    tp_session *s = tenant ? tp_hub_tenant(r->hub, tenant) : NULL;
    char *text = tenant ? tp_session_get(s, id) : tp_hub_get_shared(r->hub, id);
    int64_t got_rev = tenant ? tp_session_rev(s, id) : tp_hub_shared_rev(r->hub, id);
    json_t *got = text ? json_loads(text, 0, NULL) : json_null();
    free(text);
    int rc = 0;
    if (!match(want, got)) {
        char *ws = dump(want), *gs = dump(got);
        rc = fail(r, "%s model \"%s\": value %s, expected %s", scope, id, gs, ws);
        free(ws);
        free(gs);
    } else if (rev != NULL && got_rev != json_integer_value(rev)) {
        rc = fail(r, "%s model \"%s\": rev %lld, expected %lld", scope, id, (long long)got_rev,
                  (long long)json_integer_value(rev));
    }
    json_decref(got);
    return rc;
}

typedef int (*step_fn)(run *r, const json_t *st);

static int
step_subscribe_on(run *r, const json_t *st)
{
    return step_subscribe(r, st, 1);
}

static int
step_unsubscribe(run *r, const json_t *st)
{
    return step_subscribe(r, st, 0);
}

static const struct {
    const char *kind;
    step_fn fn;
} steps[] = {
    {"open", step_open},
    {"send", step_send},
    {"expect", step_expect},
    {"drain", step_drain},
    {"close", step_close},
    {"host", step_host},
    {"host_set", step_host_set},
    {"delete", step_delete},
    {"share", step_share},
    {"unshare", step_unshare},
    {"subscribe", step_subscribe_on},
    {"unsubscribe", step_unsubscribe},
    {"sync", step_sync},
    {"clock", step_clock},
    {"expect_value", step_expect_value},
};

static int
run_step(run *r, const json_t *st)
{
    r->kind = NULL;
    if (!json_is_object(st))
        return fail(r, "a step must be an object");
    step_fn fn = NULL;
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        if (json_object_get(st, steps[i].kind) == NULL)
            continue;
        if (fn != NULL)
            return fail(r, "a step of two kinds (%s and %s)", r->kind, steps[i].kind);
        fn = steps[i].fn;
        r->kind = steps[i].kind;
    }
    if (fn == NULL)
        return fail(r, "a step of no known kind");
    return fn(r, st);
}

/* After the last step: every open connection has nothing left to send and
 * the close code the case last expected. */
static int
check_end(run *r)
{
    r->kind = "end of case";
    for (size_t i = 0; i < r->n_conns; i++) {
        slot *s = &r->conns[i];
        if (s->conn == NULL)
            continue;
        json_t *got = drain(r, s);
        if (got == NULL)
            return -1;
        if (json_array_size(got) > 0) {
            char *gs = dump_list(got);
            json_decref(got);
            fail(r, "connection \"%s\" (%s) has unexpected messages left:%s", s->label,
                 tp_conn_id(s->conn), gs);
            free(gs);
            return -1;
        }
        json_decref(got);
        if (check_close_code(r, s) != 0)
            return -1;
    }
    return 0;
}

/* Runs one case; returns NULL when it passes, else a malloc'd failure. */
static char *
run_case(const char *topic, const char *dir)
{
    run r;
    memset(&r, 0, sizeof r);
    const char *base = strrchr(dir, '/');
    snprintf(r.name, sizeof r.name, "tests/cases/%s/%s", topic, base ? base + 1 : dir);
    r.step = -1;

    char path[1024];
    snprintf(path, sizeof path, "%s/case.json", dir);
    json_error_t jerr;
    json_t *c = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (c == NULL) {
        fail(&r, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        return r.failure;
    }
    static const char *const keys[] = {"description", "setup", "steps", NULL};
    const json_t *steps_json = json_object_get(c, "steps");
    if (check_keys(&r, c, "case", keys) == 0) {
        if (!json_is_string(json_object_get(c, "description")))
            fail(&r, "description: required, a string");
        else if (!json_is_array(steps_json))
            fail(&r, "steps: required, an array");
        else if (setup(&r, json_object_get(c, "setup")) == 0) {
            for (size_t i = 0; i < json_array_size(steps_json); i++) {
                r.step = (long)i;
                if (run_step(&r, json_array_get(steps_json, i)) != 0)
                    break;
            }
            if (r.failure == NULL) {
                r.step = (long)json_array_size(steps_json);
                check_end(&r);
            }
        }
    }
    for (size_t i = 0; i < r.n_conns; i++) {
        tp_conn_close(r.conns[i].conn);
        free(r.conns[i].label);
    }
    tp_hub_free(r.hub);
    for (size_t i = 0; i < r.n_schemas; i++) {
        tp_schema_free(r.schemas[i]);
        free(r.schema_names[i]);
    }
    json_decref(c);
    return r.failure;
}

static int
is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Runs every case of a topic; each failure is printed, and any fails the test. */
static void
run_topic(const char *topic)
{
    char **dirs;
    size_t n = tpt_case_dirs(topic, &dirs);
    const char *only = getenv("TP_CASE");
    size_t ran = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_dir(dirs[i]) || (only != NULL && strstr(dirs[i], only) == NULL))
            continue;
        ran++;
        char *failure = run_case(topic, dirs[i]);
        if (failure != NULL) {
            fprintf(stderr, "FAIL %s\n\n", failure);
            failed++;
        }
        free(failure);
    }
    tpt_free_dirs(dirs, n);
    cr_assert(only != NULL || ran > 0, "no %s cases found", topic);
    cr_assert_eq(failed, 0, "%zu of %zu %s cases failed (see above)", failed, ran, topic);
}

Test(cases, proto)
{
    run_topic("proto");
}

Test(cases, merge)
{
    run_topic("merge");
}
