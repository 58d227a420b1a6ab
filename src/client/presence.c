/*
 * The client's side of presence (docs/protocol.md, "Presence: who is
 * here"): the states this client set, sent again on every new connection
 * (a state belongs to the connection that set it), and the others' states
 * per model, kept from `presence` and `presence_snapshot` and cleared when
 * the connection ends. Called under the client's lock.
 */
#include <string.h>

#include "client/client.h"
#include "util/alloc.h"
#include "util/error.h"

#define PRESENCE_MAX 4096 /* docs/protocol.md: a state is at most 4 KiB of compact JSON */

typedef tp__proto proto;
#define P(c) TP__PROTO(c)

static int
valid_scope(const char *scope)
{
    return scope != NULL && (strcmp(scope, "private") == 0 || strcmp(scope, "shared") == 0);
}

/* The key of a model in the presence tables: "p/<id>" or "s/<id>". */
static char *
key_of(const char *scope, const char *id)
{
    size_t n = strlen(id);
    char *k = tp__malloc(n + 3);
    if (k != NULL) {
        k[0] = scope[0] == 's' ? 's' : 'p';
        k[1] = '/';
        memcpy(k + 2, id, n + 1);
    }
    return k;
}

static void
tell(tp_client *c, const char *scope, const char *id, const char *conn, const json_t *state)
{
    if (c->opt.cb.presence != NULL)
        c->opt.cb.presence(c->opt.cb.user, scope, id, conn, state);
}

static int
send_state(tp_client *c, const char *scope, const char *id, const json_t *state)
{
    json_t *m = json_pack("{s:s,s:s,s:s,s:O}", "type", "presence", "scope", scope, "id", id,
                          "state", state != NULL ? (json_t *)state : json_null());
    return tp__client_queue_json(c, m);
}

TP_API int
tp_client_set_presence(tp_client *c, const char *scope, const char *id, const char *state,
                       tp_error *err)
{
    if (c == NULL || !valid_scope(scope) || id == NULL || id[0] == '\0')
        return tp__error_set(err, TP_EARG, "scope, id: required (scope \"private\" or \"shared\")");
    json_t *v = NULL;
    if (state != NULL) {
        json_error_t jerr;
        v = json_loads(state, JSON_REJECT_DUPLICATES, &jerr);
        if (v == NULL)
            return tp__error_set(err, TP_EBADREQUEST, "state: not JSON: %s", jerr.text);
        if (!json_is_object(v)) {
            json_decref(v);
            return tp__error_set(err, TP_EBADREQUEST, "state: expected a JSON object");
        }
        size_t n = json_dumpb(v, NULL, 0, JSON_COMPACT);
        if (n > PRESENCE_MAX) {
            json_decref(v);
            return tp__error_set(err, TP_ETOOLARGE, "state: %zu bytes, over the limit of %d", n,
                                 PRESENCE_MAX);
        }
    }
    char *k = key_of(scope, id);
    json_t *entry =
        v != NULL ? json_pack("{s:s,s:s,s:O}", "scope", scope, "id", id, "state", v) : NULL;
    pthread_mutex_lock(&c->mu);
    proto *p = P(c);
    int rc = TP_OK;
    if (k == NULL || (v != NULL && entry == NULL) ||
        (p->pres_mine == NULL && (p->pres_mine = json_object()) == NULL)) {
        rc = TP_ENOMEM;
    } else if (v != NULL) {
        rc = json_object_set(p->pres_mine, k, entry) == 0 ? TP_OK : TP_ENOMEM;
    } else {
        json_object_del(p->pres_mine, k);
    }
    if (rc == TP_OK && p->connected && !p->pres_held)
        rc = send_state(c, scope, id, v);
    pthread_mutex_unlock(&c->mu);
    json_decref(entry);
    json_decref(v);
    tp__free(k);
    if (rc != TP_OK)
        return tp__error_set(err, rc, "out of memory");
    tp__error_clear(err);
    return TP_OK;
}

TP_API char *
tp_client_presence(tp_client *c, const char *scope, const char *id)
{
    if (c == NULL || !valid_scope(scope) || id == NULL)
        return NULL;
    char *k = key_of(scope, id);
    if (k == NULL)
        return NULL;
    pthread_mutex_lock(&c->mu);
    proto *p = P(c);
    char *out = NULL;
    if (tp__map_get(&p->replicas, k) != NULL) {
        json_t *others = p->pres_others != NULL ? json_object_get(p->pres_others, k) : NULL;
        out = others != NULL ? json_dumps(others, JSON_COMPACT) : tp__strdup("{}");
    }
    pthread_mutex_unlock(&c->mu);
    tp__free(k);
    return out;
}

/* The table of one model's others (created when create is set), or NULL. */
static json_t *
table(tp_client *c, const char *k, int create)
{
    proto *p = P(c);
    if (p->pres_others == NULL && (!create || (p->pres_others = json_object()) == NULL))
        return NULL;
    json_t *t = json_object_get(p->pres_others, k);
    if (t == NULL && create && json_object_set_new(p->pres_others, k, json_object()) == 0)
        t = json_object_get(p->pres_others, k);
    return t;
}

int
tp__client_on_presence(tp_client *c, const json_t *msg, int snapshot)
{
    const char *scope = json_string_value(json_object_get(msg, "scope"));
    const char *id = json_string_value(json_object_get(msg, "id"));
    if (!valid_scope(scope) || id == NULL)
        return TP_EBADREQUEST;
    char *k = key_of(scope, id);
    if (k == NULL)
        return TP_ENOMEM;
    int rc = TP_OK;
    if (!snapshot) {
        const char *conn = json_string_value(json_object_get(msg, "conn"));
        json_t *state = json_object_get(msg, "state");
        if (conn == NULL || state == NULL || (!json_is_object(state) && !json_is_null(state))) {
            rc = TP_EBADREQUEST;
        } else if (json_is_null(state)) {
            json_t *t = table(c, k, 0);
            if (t != NULL && json_object_get(t, conn) != NULL) {
                json_object_del(t, conn);
                tell(c, scope, id, conn, NULL);
            }
        } else {
            json_t *t = table(c, k, 1);
            if (t == NULL || json_object_set(t, conn, state) != 0)
                rc = TP_ENOMEM;
            else
                tell(c, scope, id, conn, state);
        }
        tp__free(k);
        return rc;
    }
    /* A snapshot replaces the model's table: those not in it left. */
    const json_t *peers = json_object_get(msg, "peers");
    if (!json_is_array(peers)) {
        tp__free(k);
        return TP_EBADREQUEST;
    }
    json_t *fresh = json_object();
    size_t i;
    const json_t *e;
    json_array_foreach(peers, i, e)
    {
        const char *conn = json_string_value(json_object_get(e, "conn"));
        json_t *state = json_object_get(e, "state");
        if (conn == NULL || !json_is_object(state))
            rc = TP_EBADREQUEST;
        else if (fresh == NULL || json_object_set(fresh, conn, state) != 0)
            rc = TP_ENOMEM;
    }
    json_t *old = table(c, k, 0);
    if (rc == TP_OK && (P(c)->pres_others != NULL || (P(c)->pres_others = json_object()) != NULL)) {
        json_incref(old);
        if (json_object_set(P(c)->pres_others, k, fresh) != 0)
            rc = TP_ENOMEM;
        const char *conn;
        json_t *v;
        json_object_foreach(old, conn, v)
        {
            if (rc == TP_OK && json_object_get(fresh, conn) == NULL)
                tell(c, scope, id, conn, NULL);
        }
        json_object_foreach(fresh, conn, v)
        {
            if (rc == TP_OK)
                tell(c, scope, id, conn, v);
        }
        json_decref(old);
    } else if (rc == TP_OK) {
        rc = TP_ENOMEM;
    }
    json_decref(fresh);
    tp__free(k);
    return rc;
}

void
tp__client_presence_removed(tp_client *c, const char *scope, const char *id)
{
    char *k = key_of(scope, id);
    if (k == NULL)
        return;
    proto *p = P(c);
    if (p->pres_others != NULL)
        json_object_del(p->pres_others, k);
    if (p->pres_mine != NULL)
        json_object_del(p->pres_mine, k);
    tp__free(k);
}

void
tp__client_presence_closed(tp_client *c)
{
    proto *p = P(c);
    json_t *all = p->pres_others;
    p->pres_others = NULL;
    const char *k;
    json_t *t;
    json_object_foreach(all, k, t)
    {
        const char *conn;
        json_t *v;
        json_object_foreach(t, conn, v)
        {
            tell(c, k[0] == 's' ? "shared" : "private", k + 2, conn, NULL);
        }
    }
    json_decref(all);
}

int
tp__client_presence_resend(tp_client *c)
{
    proto *p = P(c);
    p->pres_held = 0;
    const char *k;
    json_t *e;
    int rc = TP_OK;
    json_object_foreach(p->pres_mine, k, e)
    {
        if (rc == TP_OK)
            rc = send_state(c, json_string_value(json_object_get(e, "scope")),
                            json_string_value(json_object_get(e, "id")),
                            json_object_get(e, "state"));
    }
    return rc;
}

void
tp__client_presence_free(tp_client *c)
{
    json_decref(P(c)->pres_mine);
    json_decref(P(c)->pres_others);
}
