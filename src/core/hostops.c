/*
 * The host's operations behind the host HTTP API (hostops.h). Every change
 * goes through the same calls as the C host's (tp_session_host_as,
 * tp_hub_share_as, tp_hub_subscribe, ...) or, for a merge patch, through
 * the model's merge strategy and tp__model_commit exactly as a client's
 * write does, with the host as origin.
 */
#include "core/hostops.h"

#include <stdlib.h>
#include <string.h>

#include "core/catalog.h"
#include "core/conn_int.h"
#include "core/hub.h"
#include "core/journal.h"
#include "core/json.h"
#include "core/merge.h"
#include "core/model.h"
#include "core/names.h"
#include "core/notes.h"
#include "core/order_int.h"
#include "core/schema.h"
#include "core/session.h"
#include "util/alloc.h"
#include "util/error.h"

struct tp__host {
    tp_hub *hub;
    tp__names *names; /* the hub's (hub->snames) */
};

static int
name_add(tp__host *h, const char *name, const tp_schema *schema)
{
    return tp__names_add(h->names, name, schema);
}

/* The name of a model's schema: the first name whose schema has the same
 * content, or NULL (a stored model whose name was never given here). */
static const char *
name_of(const tp__host *h, const tp_schema *schema)
{
    return tp__names_of(h->names, schema);
}

static int
load_name(const tp__rec *r, void *user)
{
    tp__host *h = user;
    if (strncmp(r->k1, "sname:", 6) != 0)
        return 0;
    char *text = tp__malloc(r->body_len + 1);
    if (text == NULL)
        return TP_ENOMEM;
    memcpy(text, r->body, r->body_len);
    text[r->body_len] = '\0';
    tp_schema *s = tp_schema_new(text, NULL);
    tp__free(text);
    if (s == NULL)
        return 0; /* a name whose schema this build refuses is skipped */
    int rc = tp__names_get(h->names, r->k1 + 6) ? TP_OK : name_add(h, r->k1 + 6, s);
    tp_schema_free(s);
    return rc;
}

tp__host *
tp__host_new(tp_hub *hub, tp_error *err)
{
    tp__host *h = tp__calloc(1, sizeof *h);
    if (h == NULL) {
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    h->hub = hub;
    if ((h->names = tp__names_of_hub(hub)) == NULL) {
        tp__free(h);
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    if (hub->store != NULL) {
        int rc = tp__store_read_begin(hub, err);
        if (rc == TP_OK) {
            rc = hub->store->ops->scan(hub->store, TP__REC_META, NULL, NULL, load_name, h, err);
            tp__store_read_end(hub);
        }
        if (rc != TP_OK) {
            tp__host_free(h);
            return NULL;
        }
    }
    return h;
}

void
tp__host_free(tp__host *h)
{
    if (h == NULL)
        return;
    tp__free(h); /* the names are the hub's */
}

int
tp__host_name_schema(tp__host *h, const char *name, const tp_schema *schema)
{
    return tp__names_get(h->names, name) ? TP_OK : name_add(h, name, schema);
}

const tp_schema *
tp__host_schema_named(const tp__host *h, const char *name)
{
    return tp__names_get(h->names, name);
}

/* ---- Schemas ---- */

static int
store_name(tp__host *h, const char *name, const json_t *doc, tp_error *err)
{
    tp_store *st = h->hub->store;
    if (st == NULL)
        return TP_OK;
    char key[TP__KEY_MAX + 8];
    snprintf(key, sizeof key, "sname:%s", name);
    char *text = tp__json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL)
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    tp__rec r = {TP__REC_META, key, "", 0, text, strlen(text)};
    /* Written at once, the committer kept off the store meanwhile (a rare
     * call: the loop waits for this one fsync). */
    int rc = tp__store_read_begin(h->hub, err);
    if (rc != TP_OK) {
        tp__free(text);
        return rc;
    }
    rc = st->ops->begin(st, err);
    if (rc == TP_OK && (rc = st->ops->put(st, &r, err)) == TP_OK)
        rc = st->ops->commit(st, err);
    else if (rc != TP_OK)
        st->ops->rollback(st);
    tp__store_read_end(h->hub);
    tp__free(text);
    return rc;
}

int
tp__host_schema_put(tp__host *h, const char *name, const json_t *doc, int *created, tp_error *err)
{
    *created = 0;
    if (!tp__valid_key(name))
        return tp__error_set(err, TP_EBADREQUEST, "name: must be 1 to %d bytes of UTF-8",
                             TP__KEY_MAX);
    if (!json_is_object(doc))
        return tp__error_set(err, TP_EBADREQUEST, "body: a JSON Schema must be an object");
    char *text = tp__json_dumps(doc, JSON_COMPACT);
    if (text == NULL)
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    tp_schema *s = tp_schema_new(text, err);
    tp__free(text);
    if (s == NULL)
        return err ? (err->code = TP_EINVALID) : TP_EINVALID;
    const tp_schema *e = tp__names_get(h->names, name);
    int rc = TP_OK;
    if (e != NULL) {
        if (strcmp(tp__schema_key(e), tp__schema_key(s)) != 0)
            rc = tp__error_set(err, TP_EEXIST,
                               "name: a different schema is already named \"%s\" (schemas are "
                               "immutable: use a new name)",
                               name);
    } else if (tp__names_count(h->names) >= TP__HOST_SCHEMAS_MAX) {
        rc = tp__error_set(err, TP_EEXIST, "name: at most %d schemas can be named",
                           TP__HOST_SCHEMAS_MAX);
    } else if ((rc = store_name(h, name, doc, err)) == TP_OK) {
        rc = name_add(h, name, s);
        if (rc != TP_OK) {
            tp__error_set(err, rc, "out of memory");
        } else {
            *created = 1;
            tp__catalog_begin(h->hub);
            tp__catalog_schema(h->hub, name, doc);
            tp__catalog_end(h->hub, NULL, 0);
        }
    }
    tp_schema_free(s);
    return rc;
}

int
tp__host_schema_get(tp__host *h, const char *name, json_t **out, tp_error *err)
{
    const tp_schema *e = tp__names_get(h->names, name);
    if (e == NULL)
        return tp__error_set(err, TP_ENOTFOUND, "name: no schema named \"%s\"", name);
    *out = json_deep_copy(tp__schema_doc(e));
    return *out ? TP_OK : tp__error_set(err, TP_ENOMEM, "out of memory");
}

/* ---- Tenants ---- */

static int
check_tenant(const char *tenant, tp_error *err)
{
    if (!tp__valid_key(tenant))
        return tp__error_set(err, TP_EBADREQUEST, "tenant: must be 1 to %d bytes of UTF-8",
                             TP__KEY_MAX);
    for (const char *p = tenant; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return tp__error_set(err, TP_EBADREQUEST, "tenant: holds a control character");
    return TP_OK;
}

static int
found_one(const tp__rec *r, void *user)
{
    (void)r;
    *(int *)user = 1;
    return 0;
}

/* Whether a tenant exists: in memory, or stored. */
static int
tenant_exists(tp_hub *hub, const char *tenant)
{
    if (tp__map_get(&hub->tenants, tenant) != NULL)
        return 1;
    int found = 0;
    if (hub->store != NULL && tp__store_read_begin(hub, NULL) == TP_OK) {
        hub->store->ops->scan(hub->store, TP__REC_TENANT, tenant, NULL, found_one, &found, NULL);
        tp__store_read_end(hub);
    }
    return found;
}

/* The session of an existing tenant (loaded), or NULL with not_found. */
static tp_session *
existing(tp__host *h, const char *tenant, tp_error *err)
{
    if (check_tenant(tenant, err) != TP_OK)
        return NULL;
    if (!tenant_exists(h->hub, tenant)) {
        tp__error_set(err, TP_ENOTFOUND, "tenant: no tenant \"%s\"", tenant);
        return NULL;
    }
    tp_session *s = tp__hub_session(h->hub, tenant, 0);
    if (s == NULL)
        tp__error_set(err, TP_EINTERNAL, "tenant: \"%s\" cannot be loaded", tenant);
    return s;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct names {
    char **v;
    size_t n, cap;
    int oom;
} names;

static void
names_add(names *ns, const char *s)
{
    if (ns->oom)
        return;
    if (ns->n == ns->cap) {
        size_t cap = ns->cap ? ns->cap * 2 : 64;
        char **p = tp__realloc(ns->v, cap * sizeof *p);
        if (p == NULL) {
            ns->oom = 1;
            return;
        }
        ns->v = p;
        ns->cap = cap;
    }
    if ((ns->v[ns->n] = tp__strdup(s)) == NULL)
        ns->oom = 1;
    else
        ns->n++;
}

static void
names_free(names *ns)
{
    for (size_t i = 0; i < ns->n; i++)
        tp__free(ns->v[i]);
    tp__free(ns->v);
}

/* Sorts, drops repeats, and returns the index of the first name after `after`. */
static size_t
names_page(names *ns, const char *after)
{
    if (ns->n > 1) /* qsort of nothing: v may be NULL, which qsort may not get */
        qsort(ns->v, ns->n, sizeof *ns->v, cmp_str);
    size_t w = 0;
    for (size_t i = 0; i < ns->n; i++) {
        if (w > 0 && strcmp(ns->v[w - 1], ns->v[i]) == 0) {
            tp__free(ns->v[i]);
            continue;
        }
        ns->v[w++] = ns->v[i];
    }
    ns->n = w;
    size_t start = 0;
    if (after != NULL)
        while (start < ns->n && strcmp(ns->v[start], after) <= 0)
            start++;
    return start;
}

static int
add_stored_tenant(const tp__rec *r, void *user)
{
    names_add(user, r->k1);
    return 0;
}

static json_t *
list_answer(json_t *items, names *ns, size_t start, size_t limit)
{
    json_t *o = json_object();
    size_t end = start + limit < ns->n ? start + limit : ns->n;
    json_object_set_new(o, "items", items);
    json_object_set_new(o, "next",
                        end < ns->n && end > start ? json_string(ns->v[end - 1]) : json_null());
    return o;
}

/*
 * One page of a list of tenant names: those in ns (what memory holds) and
 * those the store's scan of kind adds through fn, sorted, without repeats,
 * after `after`, at most limit; item makes each entry (NULL: left out).
 * Frees ns.
 */
static int
list_names(tp__host *h, names *ns, tp__rec_kind kind, tp__rec_fn fn, void *fn_user,
           const char *after, size_t limit,
           json_t *(*item)(tp__host *h, const char *name, void *user), void *item_user,
           json_t **out, tp_error *err)
{
    int rc = TP_OK;
    if (h->hub->store != NULL) {
        rc = tp__store_read_begin(h->hub, err);
        if (rc == TP_OK) {
            if (h->hub->store->ops->scan(h->hub->store, kind, NULL, NULL, fn, fn_user, err) !=
                TP_OK)
                rc = TP_EINTERNAL;
            tp__store_read_end(h->hub);
        }
    }
    if (rc != TP_OK)
        ;
    else if (ns->oom)
        rc = tp__error_set(err, TP_ENOMEM, "out of memory");
    if (rc == TP_OK) {
        size_t start = names_page(ns, after);
        json_t *items = json_array();
        for (size_t i = start; i < ns->n && i < start + limit; i++) {
            json_t *it = item(h, ns->v[i], item_user);
            if (it != NULL)
                json_array_append_new(items, it);
        }
        *out = list_answer(items, ns, start, limit);
    }
    names_free(ns);
    return rc;
}

static json_t *
tenant_item(tp_session *s)
{
    return json_pack("{s:s, s:I, s:I}", "id", s->tenant, "connections", (json_int_t)s->conns.len,
                     "models", (json_int_t)s->models.len);
}

static json_t *
tenant_entry(tp__host *h, const char *name, void *user)
{
    (void)user;
    tp_session *s = tp__hub_session(h->hub, name, 0);
    return s != NULL ? tenant_item(s) : NULL;
}

int
tp__host_tenants(tp__host *h, const char *after, size_t limit, json_t **out, tp_error *err)
{
    names ns = {0};
    const char *key;
    void *v;
    for (size_t it = 0; tp__map_next(&h->hub->tenants, &it, &key, &v);)
        names_add(&ns, key);
    return list_names(h, &ns, TP__REC_TENANT, add_stored_tenant, &ns, after, limit, tenant_entry,
                      NULL, out, err);
}

static const char *
access_name(tp_access a)
{
    return a == TP_WRITE ? "write" : "read";
}

int
tp__host_tenant_get(tp__host *h, const char *tenant, json_t **out, tp_error *err)
{
    tp_session *s = existing(h, tenant, err);
    if (s == NULL)
        return err ? err->code : TP_ENOTFOUND;
    json_t *o = tenant_item(s);
    json_t *models = json_array(), *shared = json_array();
    const char *key;
    void *v;
    for (size_t it = 0; tp__map_next(&s->models, &it, &key, &v);) {
        const tp__model *m = v;
        const char *n = name_of(h, m->schema);
        json_array_append_new(models, json_pack("{s:s, s:o, s:I}", "id", m->id, "schema",
                                                n ? json_string(n) : json_null(), "rev",
                                                (json_int_t)m->rev));
    }
    for (size_t it = 0; tp__map_next(&s->subs, &it, &key, &v);) {
        const tp__sub *sub = v;
        json_array_append_new(shared, json_pack("{s:s, s:s}", "id", sub->model->id, "access",
                                                access_name(sub->access)));
    }
    json_object_set_new(o, "models", models);
    json_object_set_new(o, "shared", shared);
    *out = o;
    return TP_OK;
}

int
tp__host_close_connections(tp__host *h, const char *tenant, int code)
{
    tp_session *s = tp__map_get(&h->hub->tenants, tenant);
    return s != NULL ? tp__session_close(s, code) : 0;
}

int
tp__host_close_everywhere(tp__host *h, const char *tenant, int code)
{
    int n = tp__host_close_connections(h, tenant, code);
    tp__catalog_begin(h->hub);
    tp__catalog_end(h->hub, tenant, code);
    return n;
}

int
tp__host_tenant_delete(tp__host *h, const char *tenant, tp_error *err)
{
    if (tp__hub_writable(h->hub, err) != TP_OK)
        return TP_EINTERNAL; /* the store fails: memory goes no further ahead */
    tp_session *s = existing(h, tenant, err);
    if (s == NULL)
        return err ? err->code : TP_ENOTFOUND;
    /* Closed first: what follows (removed, ...) is not for them. On every
     * node of a cluster: the catalog's change closes them there. */
    tp__host_close_connections(h, tenant, 4404);
    tp__catalog_begin(h->hub);
    while (s->subs.len > 0) {
        size_t it = 0;
        const char *sid;
        void *v;
        tp__map_next(&s->subs, &it, &sid, &v);
        char *copy = tp__strdup(sid);
        int rc = copy ? tp_hub_unsubscribe(h->hub, tenant, copy) : TP_ENOMEM;
        if (rc == TP_OK)
            tp__catalog_sub(h->hub, copy, tenant);
        tp__free(copy);
        if (rc != TP_OK) {
            tp__catalog_end(h->hub, tenant, 4404);
            return tp__error_set(err, rc, "out of memory");
        }
    }
    while (s->models.len > 0) {
        size_t it = 0;
        const char *id;
        void *v;
        tp__map_next(&s->models, &it, &id, &v);
        char *copy = tp__strdup(id);
        int rc = copy ? tp_session_delete(s, copy) : TP_ENOMEM;
        if (rc == TP_OK)
            tp__catalog_model(h->hub, 0, tenant, copy);
        tp__free(copy);
        if (rc != TP_OK) {
            tp__catalog_end(h->hub, tenant, 4404);
            return tp__error_set(err, rc, "out of memory");
        }
    }
    tp__catalog_end(h->hub, tenant, 4404);
    return TP_OK;
}

/* ---- Models ---- */

static tp__model *
find_model(tp__host *h, int shared, const char *tenant, const char *id, tp_error *err)
{
    if (!tp__valid_key(id)) {
        tp__error_set(err, TP_EBADREQUEST, "id: must be 1 to %d bytes of UTF-8", TP__KEY_MAX);
        return NULL;
    }
    tp__model *m;
    if (shared) {
        m = tp__map_get(&h->hub->shared, id);
        if (m == NULL)
            tp__error_set(err, TP_ENOTFOUND, "id: no shared model \"%s\"", id);
        return m;
    }
    tp_session *s = existing(h, tenant, err);
    if (s == NULL)
        return NULL;
    m = tp__map_get(&s->models, id);
    if (m == NULL)
        tp__error_set(err, TP_ENOTFOUND, "id: no model \"%s\" in tenant \"%s\"", id, tenant);
    return m;
}

static json_t *
model_json(const tp__host *h, const tp__model *m, int full)
{
    const char *n = name_of(h, m->schema);
    json_t *o = json_pack("{s:s, s:I, s:O}", "id", m->id, "rev", (json_int_t)m->rev, "value",
                          m->pending ? m->pending : m->value);
    if (o != NULL && full) {
        json_object_set_new(o, "schema", n ? json_string(n) : json_null());
        if (m->shared)
            json_object_set_new(o, "merge",
                                json_string(m->merge_name            ? m->merge_name
                                            : m->kind == TP__LWW_MAP ? "lww-map"
                                                                     : "lww"));
    }
    return o;
}

int
tp__host_model_get(tp__host *h, int shared, const char *tenant, const char *id, json_t **out,
                   tp_error *err)
{
    tp__model *m = find_model(h, shared, tenant, id, err);
    if (m == NULL)
        return err ? err->code : TP_ENOTFOUND;
    *out = model_json(h, m, 1);
    return *out ? TP_OK : tp__error_set(err, TP_ENOMEM, "out of memory");
}

/* Checks a body's members: each must be one of `known`. */
static int
only_members(const json_t *body, const char *const *known, tp_error *err)
{
    if (!json_is_object(body))
        return tp__error_set(err, TP_EBADREQUEST, "body: must be a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        size_t i = 0;
        while (known[i] != NULL && strcmp(known[i], key) != 0)
            i++;
        if (known[i] == NULL)
            return tp__error_set(err, TP_EBADREQUEST, "%.200s: unknown member", key);
    }
    return TP_OK;
}

typedef struct sub_copy {
    char *tenant;
    tp_access access;
} sub_copy;

int
tp__host_model_put(tp__host *h, int shared, const char *tenant, const char *id, const json_t *body,
                   int64_t if_match, int *created, json_t **out, tp_error *err)
{
    if (tp__hub_writable(h->hub, err) != TP_OK)
        return TP_EINTERNAL; /* the store fails: memory goes no further ahead */
    static const char *const known_private[] = {"schema", "value", NULL};
    static const char *const known_shared[] = {"schema", "merge", "value", NULL};
    *created = 0;
    if (only_members(body, shared ? known_shared : known_private, err) != TP_OK)
        return TP_EBADREQUEST;
    const json_t *js = json_object_get(body, "schema");
    if (!json_is_string(js))
        return tp__error_set(err, TP_EBADREQUEST, "schema: required, a schema's name (string)");
    const tp_schema *schema = tp__host_schema_named(h, json_string_value(js));
    if (schema == NULL)
        return tp__error_set(err, TP_EINVALID, "schema: no schema named \"%.200s\"",
                             json_string_value(js));
    const json_t *jv = json_object_get(body, "value");
    if (jv != NULL && !json_is_object(jv))
        return tp__error_set(err, TP_EBADREQUEST, "value: must be an object");
    const tp_merge *merge = &tp_last_write_wins;
    if (shared) {
        const json_t *jm = json_object_get(body, "merge");
        if (jm != NULL && !json_is_string(jm))
            return tp__error_set(err, TP_EBADREQUEST, "merge: must be a string");
        merge = tp__merge_named(h->hub, json_string_value(jm));
        if (merge == NULL)
            return tp__error_set(err, TP_EINVALID,
                                 "merge: no merge strategy \"%.200s\" (lww, lww-map or one the "
                                 "server's config names)",
                                 json_string_value(jm));
    }
    if (!tp__valid_key(id))
        return tp__error_set(err, TP_EBADREQUEST, "id: must be 1 to %d bytes of UTF-8",
                             TP__KEY_MAX);
    tp_session *s = NULL;
    tp__model *old;
    if (shared) {
        old = tp__map_get(&h->hub->shared, id);
    } else {
        if (check_tenant(tenant, err) != TP_OK)
            return TP_EBADREQUEST;
        if ((s = tp__hub_session(h->hub, tenant, 0)) == NULL)
            return tp__error_set(err, TP_EINTERNAL, "tenant: \"%s\" cannot be loaded", tenant);
        old = tp__map_get(&s->models, id);
    }
    if (if_match >= 0 && (old == NULL || old->rev != if_match))
        return tp__error_set(err, TP__HOST_EPRECONDITION, "If-Match: the model is at rev %lld",
                             old ? (long long)old->rev : 0LL);
    char *text = jv ? tp__json_dumps(jv, JSON_COMPACT) : tp__strdup("{}");
    if (text == NULL)
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    /* Checked before anything changes: a refused value leaves the old model. */
    json_t *checked = tp__parse_value(h->hub, schema, text, err);
    if (checked == NULL) {
        tp__free(text);
        if (err != NULL && err->code == TP_EINVALID) {
            char m[sizeof err->message];
            snprintf(m, sizeof m, "%s", err->message);
            tp__error_set(err, TP_EINVALID, "value.%s", m);
        }
        return err ? err->code : TP_EINVALID;
    }
    json_decref(checked);
    /* Replacing: the old model goes (connections get `removed`), the new one
     * comes with its snapshot; a shared model keeps its subscribers. */
    sub_copy *subs = NULL;
    size_t nsubs = 0;
    if (old != NULL && shared) {
        subs = tp__calloc(old->subs.len + 1, sizeof *subs);
        if (subs == NULL) {
            tp__free(text);
            return tp__error_set(err, TP_ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < old->subs.len; i++) {
            tp__sub *sub = old->subs.items[i];
            subs[nsubs].access = sub->access;
            if ((subs[nsubs].tenant = tp__strdup(sub->session->tenant)) != NULL)
                nsubs++;
        }
        tp_hub_unshare(h->hub, id);
    } else if (old != NULL) {
        tp_session_delete(s, id);
    }
    const char *got = shared ? tp_hub_share_as(h->hub, id, schema, text, merge, err)
                             : tp_session_host_as(s, id, schema, text, err);
    tp__free(text);
    tp__model *m = got == NULL ? NULL
                   : shared    ? tp__map_get(&h->hub->shared, id)
                               : tp__map_get(&s->models, id);
    /* A cluster: the answer waits for the log to have the model, and the
     * other nodes hear of it (the model as it is now, a shared model's
     * subscriptions carried over) once it has it. */
    uint64_t made = m != NULL ? tp__order_track(m) : 0;
    tp__catalog_begin(h->hub);
    tp__catalog_after(h->hub, made);
    tp__catalog_model(h->hub, shared, shared ? "" : tenant, id);
    for (size_t i = 0; i < nsubs; i++) {
        if (got != NULL)
            tp_hub_subscribe(h->hub, subs[i].tenant, id, subs[i].access);
        tp__catalog_sub(h->hub, id, subs[i].tenant);
        tp__free(subs[i].tenant);
    }
    tp__catalog_end(h->hub, NULL, 0);
    tp__free(subs);
    if (got == NULL)
        return err ? (err->code == TP_EARG ? (err->code = TP_EBADREQUEST) : err->code)
                   : TP_EINTERNAL;
    *created = old == NULL;
    *out = model_json(h, m, 0);
    return *out ? TP_OK : tp__error_set(err, TP_ENOMEM, "out of memory");
}

int
tp__host_model_patch(tp__host *h, int shared, const char *tenant, const char *id,
                     const json_t *patch, int64_t if_match, json_t **out, tp_error *err)
{
    if (tp__hub_writable(h->hub, err) != TP_OK)
        return TP_EINTERNAL; /* the store fails: memory goes no further ahead */
    if (!json_is_object(patch))
        return tp__error_set(err, TP_EBADREQUEST, "body: a merge patch must be a JSON object");
    tp__model *m = find_model(h, shared, tenant, id, err);
    if (m == NULL)
        return err ? err->code : TP_ENOTFOUND;
    /* A value the C host left pending goes first, so that revs stay in order. */
    if (m->pending != NULL && tp__publish_pending(m) == TP_ENOMEM)
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    if (if_match >= 0 && m->rev != if_match)
        return tp__error_set(err, TP__HOST_EPRECONDITION, "If-Match: the model is at rev %lld",
                             (long long)m->rev);
    /* The client write path with the host as origin: the model's merge
     * strategy, then validation of the members touched, then publication. */
    tp__change ch = {0};
    tp__stamp stamp = {0, 0, "", 0};
    tp__stamp_now(m->hub, &stamp);
    int rc = tp__merge_compute(m, patch, &stamp, NULL, &ch, err);
    if (rc == 0 && m->ord != NULL) {
        /* A cluster: checked here, merged again in its turn on the model as
         * the log has it, applied once the log has it (the answer waits). */
        tp__change_free(&ch);
        ch = (tp__change){0};
        rc = tp__order_host_patch(m, patch, &stamp);
    } else if (rc == 0) {
        rc = tp__model_commit(m, &ch, NULL, NULL, err);
    }
    tp__change_free(&ch);
    if (rc < 0)
        return rc == TP_EREJECTED ? (err ? (err->code = TP_EINVALID) : TP_EINVALID) : rc;
    *out = model_json(h, m, 0);
    return *out ? TP_OK : tp__error_set(err, TP_ENOMEM, "out of memory");
}

int
tp__host_model_delete(tp__host *h, int shared, const char *tenant, const char *id, tp_error *err)
{
    if (tp__hub_writable(h->hub, err) != TP_OK)
        return TP_EINTERNAL; /* the store fails: memory goes no further ahead */
    tp__model *m = find_model(h, shared, tenant, id, err);
    if (m == NULL)
        return err ? err->code : TP_ENOTFOUND;
    names subs = {0};
    for (size_t i = 0; shared && i < m->subs.len; i++)
        names_add(&subs, ((tp__sub *)m->subs.items[i])->session->tenant);
    int rc = shared ? tp_hub_unshare(h->hub, id) : tp_session_delete(m->owner, id);
    if (rc == TP_OK) {
        tp__catalog_begin(h->hub);
        tp__catalog_model(h->hub, shared, shared ? "" : tenant, id);
        for (size_t i = 0; i < subs.n; i++)
            tp__catalog_sub(h->hub, id, subs.v[i]);
        tp__catalog_end(h->hub, NULL, 0);
    }
    names_free(&subs);
    return rc == TP_OK ? TP_OK : tp__error_set(err, rc, "out of memory");
}

/* ---- Subscriptions ---- */

/* A subscription as it is now, to the other nodes of a cluster. */
static void
announce_sub(tp__host *h, const char *sid, const char *tenant)
{
    tp__catalog_begin(h->hub);
    tp__catalog_sub(h->hub, sid, tenant);
    tp__catalog_end(h->hub, NULL, 0);
}

typedef struct stored_subs {
    tp_hub *hub;
    const char *sid;
    names *ns;
} stored_subs;

static int
add_stored_sub(const tp__rec *r, void *user)
{
    stored_subs *ss = user;
    /* Tenants in memory answer from memory. */
    if (strcmp(r->k2, ss->sid) == 0 && tp__map_get(&ss->hub->tenants, r->k1) == NULL)
        names_add(ss->ns, r->k1);
    return 0;
}

static json_t *
subscriber_entry(tp__host *h, const char *name, void *user)
{
    tp_session *s = tp__hub_session(h->hub, name, 0);
    const tp__sub *sub = s ? tp__session_sub(s, user) : NULL;
    return sub != NULL ? json_pack("{s:s, s:s}", "tenant", name, "access", access_name(sub->access))
                       : NULL;
}

int
tp__host_subscribers(tp__host *h, const char *sid, const char *after, size_t limit, json_t **out,
                     tp_error *err)
{
    tp__model *m = find_model(h, 1, NULL, sid, err);
    if (m == NULL)
        return err ? err->code : TP_ENOTFOUND;
    names ns = {0};
    for (size_t i = 0; i < m->subs.len; i++)
        names_add(&ns, ((tp__sub *)m->subs.items[i])->session->tenant);
    stored_subs ss = {h->hub, sid, &ns};
    return list_names(h, &ns, TP__REC_SUB, add_stored_sub, &ss, after, limit, subscriber_entry,
                      (void *)sid, out, err);
}

int
tp__host_subscribe(tp__host *h, const char *sid, const char *tenant, const json_t *body,
                   tp_error *err)
{
    if (tp__hub_writable(h->hub, err) != TP_OK)
        return TP_EINTERNAL; /* the store fails: memory goes no further ahead */
    static const char *const known[] = {"access", NULL};
    if (only_members(body, known, err) != TP_OK)
        return TP_EBADREQUEST;
    const char *a = json_string_value(json_object_get(body, "access"));
    if (a == NULL || (strcmp(a, "read") != 0 && strcmp(a, "write") != 0))
        return tp__error_set(err, TP_EBADREQUEST, "access: must be \"read\" or \"write\"");
    if (check_tenant(tenant, err) != TP_OK)
        return TP_EBADREQUEST;
    if (find_model(h, 1, NULL, sid, err) == NULL)
        return err ? err->code : TP_ENOTFOUND;
    /* Loaded first: a stored subscription must be seen to change its access. */
    if (tenant_exists(h->hub, tenant) && tp__hub_session(h->hub, tenant, 0) == NULL)
        return tp__error_set(err, TP_EINTERNAL, "tenant: \"%s\" cannot be loaded", tenant);
    int rc = tp_hub_subscribe(h->hub, tenant, sid, strcmp(a, "write") == 0 ? TP_WRITE : TP_READ);
    if (rc == TP_OK)
        announce_sub(h, sid, tenant);
    return rc == TP_OK ? TP_OK : tp__error_set(err, rc, "out of memory");
}

int
tp__host_unsubscribe(tp__host *h, const char *sid, const char *tenant, tp_error *err)
{
    if (tp__hub_writable(h->hub, err) != TP_OK)
        return TP_EINTERNAL; /* the store fails: memory goes no further ahead */
    if (check_tenant(tenant, err) != TP_OK)
        return TP_EBADREQUEST;
    if (find_model(h, 1, NULL, sid, err) == NULL)
        return err ? err->code : TP_ENOTFOUND;
    if (tenant_exists(h->hub, tenant))
        tp__hub_session(h->hub, tenant, 0);
    int rc = tp_hub_unsubscribe(h->hub, tenant, sid);
    if (rc == TP_ENOTFOUND)
        return tp__error_set(err, rc, "tenant: \"%s\" is not subscribed to \"%s\"", tenant, sid);
    if (rc == TP_OK)
        announce_sub(h, sid, tenant);
    return rc == TP_OK ? TP_OK : tp__error_set(err, rc, "out of memory");
}

/* ---- Connections ---- */

int
tp__host_connections(tp__host *h, const char *tenant, const char *after, size_t limit,
                     tp__host_describe_fn describe, void *user, json_t **out, tp_error *err)
{
    tp_session *s = existing(h, tenant, err);
    if (s == NULL)
        return err ? err->code : TP_ENOTFOUND;
    names ns = {0};
    for (size_t i = 0; i < s->conns.len; i++)
        names_add(&ns, ((tp_conn *)s->conns.items[i])->id);
    if (ns.oom) {
        names_free(&ns);
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    }
    size_t start = names_page(&ns, after);
    json_t *items = json_array();
    for (size_t i = start; i < ns.n && i < start + limit; i++) {
        for (size_t j = 0; j < s->conns.len; j++) {
            tp_conn *c = s->conns.items[j];
            if (strcmp(c->id, ns.v[i]) != 0)
                continue;
            json_t *item = json_pack("{s:s}", "conn", c->id);
            if (describe != NULL)
                describe(c, item, user);
            json_array_append_new(items, item);
        }
    }
    *out = list_answer(items, &ns, start, limit);
    names_free(&ns);
    return TP_OK;
}

/* ---- The config against the stored state ---- */

typedef struct diffs {
    char *out;
    size_t size, len;
    int n;
} diffs;

static void
differs(diffs *d, const char *what, const char *a, const char *b, const char *why)
{
    d->n++;
    if (d->len + 1 >= d->size)
        return;
    int w = snprintf(d->out + d->len, d->size - d->len, "%s%s %s%s%s (%s)", d->n > 1 ? ", " : "",
                     what, a, b ? "." : "", b ? b : "", why);
    if (w > 0)
        d->len += (size_t)w < d->size - d->len ? (size_t)w : d->size - d->len - 1;
}

static int
same_schema(const tp__model *a, const tp__model *b)
{
    return strcmp(tp__schema_key(a->schema), tp__schema_key(b->schema)) == 0;
}

int
tp__host_state_diff(tp_hub *stored, tp_hub *config, char *out, size_t size)
{
    diffs d = {out, size, 0, 0};
    if (size > 0)
        out[0] = '\0';
    const char *key;
    void *v;
    for (size_t it = 0; tp__map_next(&config->tenants, &it, &key, &v);) {
        tp_session *cs = v;
        tp_session *ss = tenant_exists(stored, key) ? tp__hub_session(stored, key, 0) : NULL;
        if (ss == NULL) {
            differs(&d, "tenant", key, NULL, "not stored");
            continue;
        }
        const char *id;
        void *mv;
        for (size_t jt = 0; tp__map_next(&cs->models, &jt, &id, &mv);) {
            const tp__model *sm = tp__map_get(&ss->models, id);
            if (sm == NULL)
                differs(&d, "model", key, id, "not stored");
            else if (!same_schema(sm, mv))
                differs(&d, "model", key, id, "another schema is stored");
        }
        for (size_t jt = 0; tp__map_next(&cs->subs, &jt, &id, &mv);) {
            const tp__sub *csub = mv;
            const tp__sub *ssub = tp__session_sub(ss, id);
            if (ssub == NULL || ssub->access != csub->access)
                differs(&d, "subscription", key, id,
                        ssub == NULL ? "not stored" : "another access is stored");
        }
    }
    for (size_t it = 0; tp__map_next(&config->shared, &it, &key, &v);) {
        const tp__model *cm = v;
        const tp__model *sm = tp__map_get(&stored->shared, key);
        if (sm == NULL)
            differs(&d, "shared", key, NULL, "not stored");
        else if (!same_schema(sm, cm))
            differs(&d, "shared", key, NULL, "another schema is stored");
        else if (sm->kind != cm->kind)
            differs(&d, "shared", key, NULL, "another merge is stored");
    }
    for (size_t it = 0; tp__map_next(&stored->shared, &it, &key, &v);)
        if (tp__map_get(&config->shared, key) == NULL)
            differs(&d, "shared", key, NULL, "stored, not in the config");
    return d.n;
}
