/*
 * Building transportsd's hub from a checked configuration: schemas first
 * (every model names one), then each tenant's private models, then the
 * shared models and their subscriptions, in the order the file lists them.
 * Any refusal from the library becomes a message with the JSON path of what
 * it refused, and everything built so far is freed.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/hostops.h"
#include "daemon/cluster.h"
#include "net/hostapi.h"
#include "net/net.h"
#include "net/webhook.h"
#include "util/map.h"

const char tp__daemon_demo_config[] =
    "{\n"
    "  \"listen\": \"127.0.0.1:8080\",\n"
    "  \"route\": \"/ws/{tenant}\",\n"
    "  \"autosync_ms\": 50,\n"
    "  \"admin_token_env\": \"TRANSPORTS_ADMIN_TOKEN\",\n"
    "  \"storage\": {\"sqlite\": \"transports.db\"},\n"
    "  \"auth\": {\"mode\": \"path\"},\n"
    "  \"schemas\": {\n"
    "    \"Document\": {\n"
    "      \"title\": \"Document\",\n"
    "      \"type\": \"object\",\n"
    "      \"properties\": {\n"
    "        \"title\": {\"title\": \"Title\", \"type\": \"string\"},\n"
    "        \"body\": {\"default\": \"\", \"title\": \"Body\", \"type\": \"string\"}\n"
    "      },\n"
    "      \"required\": [\"title\"]\n"
    "    }\n"
    "  },\n"
    "  \"tenants\": {\n"
    "    \"alice\": {\"models\": {\"notes\": {\"schema\": \"Document\", "
    "\"value\": {\"title\": \"Alice notes\"}}}},\n"
    "    \"bob\": {\"models\": {\"notes\": {\"schema\": \"Document\", "
    "\"value\": {\"title\": \"Bob notes\"}}}}\n"
    "  },\n"
    "  \"shared\": {\n"
    "    \"roadmap\": {\n"
    "      \"schema\": \"Document\",\n"
    "      \"merge\": \"lww-map\",\n"
    "      \"value\": {\"title\": \"Roadmap\"},\n"
    "      \"subscribers\": {\"alice\": \"write\", \"bob\": \"read\"}\n"
    "    }\n"
    "  },\n"
    "  \"limits\": {\"max_message_bytes\": 1048576, \"max_outbox_bytes\": 8388608,\n"
    "             \"writes_per_second\": 1000, \"max_connections_per_tenant\": 256}\n"
    "}\n";

/* What a build is doing, for messages. */
typedef struct build {
    tp__daemon *d;
    const char *source;
    tp__derror *err;
    tp__map schemas; /* name (borrowed from cfg.schemas) -> tp_schema */
} build;

static int
fail(build *b, const char *path, const char *reason)
{
    tp__derror_set(b->err, b->source, path, reason);
    return -1;
}

/* path_of spells a path of up to four keys, as the checks spell them. */
static const char *
path_of(char *out, size_t size, const char *k1, const char *k2, const char *k3, const char *k4)
{
    out[0] = '\0';
    const char *keys[] = {k1, k2, k3, k4};
    for (size_t i = 0; i < 4 && keys[i] != NULL; i++)
        tp__config_path_append(out, size, keys[i]);
    return out;
}

static int
load_schemas(build *b)
{
    tp__daemon *d = b->d;
    size_t n = json_object_size(d->cfg.schemas);
    d->schemas = calloc(n > 0 ? n : 1, sizeof *d->schemas);
    if (d->schemas == NULL || tp__map_reserve(&b->schemas, n) != 0)
        return fail(b, "schemas", "out of memory");
    const char *name;
    json_t *v;
    char path[600];
    json_object_foreach(d->cfg.schemas, name, v)
    {
        tp_error err = {0, ""};
        char *text = json_dumps(v, JSON_COMPACT);
        tp_schema *s = text ? tp_schema_new(text, &err) : NULL;
        free(text);
        path_of(path, sizeof path, "schemas", name, NULL, NULL);
        if (s == NULL)
            return fail(b, path, text ? err.message : "out of memory");
        d->schemas[d->n_schemas++] = s;
        tp__map_put(&b->schemas, name, s); /* reserved */
    }
    return 0;
}

/* value_text is a model's "value" as JSON text; a model without one starts
 * as {} (its schema's defaults are filled in when it is hosted). */
static char *
value_text(const json_t *model)
{
    const json_t *v = json_object_get(model, "value");
    if (v == NULL)
        return strdup("{}");
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static const tp_schema *
schema_of(build *b, const json_t *model)
{
    /* config.c checked that the name is in "schemas". */
    return tp__map_get(&b->schemas, json_string_value(json_object_get(model, "schema")));
}

static int
host_tenants(build *b)
{
    const char *tenant;
    json_t *t;
    char path[600];
    json_object_foreach(b->d->cfg.tenants, tenant, t)
    {
        /* A tenant listed without models still gets its session: it is part
         * of the initial state, as the file says. */
        tp_session *s = tp_hub_tenant(b->d->hub, tenant);
        if (s == NULL)
            return fail(b, path_of(path, sizeof path, "tenants", tenant, NULL, NULL),
                        "out of memory");
        const char *id;
        json_t *m;
        json_object_foreach(json_object_get(t, "models"), id, m)
        {
            path_of(path, sizeof path, "tenants", tenant, "models", id);
            char *text = value_text(m);
            if (text == NULL)
                return fail(b, path, "out of memory");
            tp_error err = {0, ""};
            const char *got = tp_session_host_as(s, id, schema_of(b, m), text, &err);
            free(text);
            if (got == NULL) {
                tp__config_path_append(path, sizeof path, "value");
                return fail(b, path, err.message);
            }
        }
    }
    return 0;
}

/* merge_named finds a shared model's strategy: built in, or in "merges". */
static const tp_merge *
merge_named(const tp__daemon *d, const char *name)
{
    if (name == NULL || strcmp(name, "lww") == 0)
        return &tp_last_write_wins;
    if (strcmp(name, "lww-map") == 0)
        return &tp_lww_map_crdt;
    for (size_t i = 0; i < d->n_luas; i++)
        if (strcmp(d->cfg.merges[i].name, name) == 0)
            return tp__lua_merge_strategy(d->luas[i]);
    return NULL; /* config.c checked every name */
}

static int
share_models(build *b)
{
    const char *sid;
    json_t *m;
    char path[600];
    json_object_foreach(b->d->cfg.shared, sid, m)
    {
        const tp_merge *merge = merge_named(b->d, json_string_value(json_object_get(m, "merge")));
        path_of(path, sizeof path, "shared", sid, NULL, NULL);
        if (merge == NULL)
            return fail(b, path, "no such merge strategy");
        char *text = value_text(m);
        if (text == NULL)
            return fail(b, path, "out of memory");
        tp_error err = {0, ""};
        const char *got = tp_hub_share_as(b->d->hub, sid, schema_of(b, m), text, merge, &err);
        free(text);
        if (got == NULL) {
            tp__config_path_append(path, sizeof path, "value");
            return fail(b, path, err.message);
        }
        const char *tenant;
        json_t *access;
        json_object_foreach(json_object_get(m, "subscribers"), tenant, access)
        {
            tp_access a = strcmp(json_string_value(access), "write") == 0 ? TP_WRITE : TP_READ;
            int rc = tp_hub_subscribe(b->d->hub, tenant, sid, a);
            if (rc != TP_OK)
                return fail(b, path_of(path, sizeof path, "shared", sid, "subscribers", tenant),
                            tp_strerror(rc));
        }
    }
    return 0;
}

/* The hub's verifier in auth mode "jwt" (tp_verify_fn). */
static int
jwt_verify(const char *token, size_t len, int64_t now_ms, tp_credential *out, tp_error *err,
           void *user)
{
    tp__daemon *d = user;
    tp__jwt_claims claims;
    int64_t now_s = now_ms >= 0 ? now_ms / 1000 : -((-now_ms + 999) / 1000);
    tp__jwt_result r = tp__jwt_verify(d->keys, &d->rules, token, len, now_s, &claims, err);
    if (r != TP__JWT_OK)
        return r == TP__JWT_INTERNAL ? (err != NULL && err->code ? err->code : TP_EINTERNAL)
                                     : TP_EFORBIDDEN;
    snprintf(out->tenant, sizeof out->tenant, "%s", claims.tenant);
    out->expires_at_ms = claims.expires_at * 1000;
    return TP_OK;
}

/*
 * SIGHUP (tp_server_config.on_reload, on the loop thread): the JWT keys are
 * built again from the same config (a JWKS file rotated by the identity
 * provider, a PEM replaced). Verification runs on this thread only, so the
 * old set is freed at once. A set that fails to build is logged and the
 * old one kept.
 */
static void
reload_keys(void *user)
{
    tp__daemon *d = user;
    if (!d->cfg.auth_jwt)
        return;
    tp_error e = {0, ""};
    tp__jwt_keys_config kc = {d->cfg.base_dir, NULL, NULL, "auth.keys"};
    tp__jwt_keys *k = tp__jwt_keys_new(json_object_get(d->cfg.auth, "keys"), &kc, &e);
    if (k == NULL) {
        tp__daemon_log(&d->opt, TP_LOG_ERROR, "auth keys reload failed, the old keys stay: %s",
                       e.message);
        return;
    }
    tp__jwt_keys_free(d->keys);
    d->keys = k;
    tp__daemon_log(&d->opt, TP_LOG_INFO, "auth keys reloaded keys=%zu skipped=%zu",
                   tp__jwt_keys_count(k), tp__jwt_keys_skipped(k));
}

/* A relative path from the config file's directory. */
static char *
resolve(const char *base, const char *path)
{
    if (path[0] == '/' || base == NULL || strcmp(base, ".") == 0)
        return strdup(path);
    size_t n = strlen(base) + strlen(path) + 2;
    char *out = malloc(n);
    if (out != NULL)
        snprintf(out, n, "%s/%s", base, path);
    return out;
}

/* read_script reads a lua_file whole, at most TP__LUA_SCRIPT_MAX bytes. */
static char *
read_script(const char *file, size_t *len, char *why, size_t why_size)
{
    FILE *f = fopen(file, "rb");
    if (f == NULL) {
        snprintf(why, why_size, "cannot open %.300s: %s", file, strerror(errno));
        return NULL;
    }
    char *text = malloc(TP__LUA_SCRIPT_MAX + 1);
    size_t n = text != NULL ? fread(text, 1, TP__LUA_SCRIPT_MAX + 1, f) : 0;
    int bad = text == NULL || ferror(f);
    fclose(f);
    if (bad) {
        snprintf(why, why_size, "cannot read %.300s: %s", file,
                 text == NULL ? "out of memory" : strerror(errno));
        free(text);
        return NULL;
    }
    if (n > TP__LUA_SCRIPT_MAX) {
        snprintf(why, why_size, "%.300s is over %d bytes", file, TP__LUA_SCRIPT_MAX);
        free(text);
        return NULL;
    }
    *len = n;
    return text;
}

/*
 * "merges": each Lua strategy compiled and run once, so that a syntax
 * error, an error at the script's top level or a missing merge function
 * refuses the start with the script's line. The hub gets the list before
 * it restores a store that names them.
 */
static int
load_merges(build *b)
{
    tp__daemon *d = b->d;
    size_t n = d->cfg.n_merges;
    if (n == 0)
        return 0;
    d->luas = calloc(n, sizeof *d->luas);
    d->merge_list = calloc(n + 1, sizeof *d->merge_list);
    if (d->luas == NULL || d->merge_list == NULL)
        return fail(b, "merges", "out of memory");
    char path[600];
    for (size_t i = 0; i < n; i++) {
        const tp__config_merge *cm = &d->cfg.merges[i];
        path_of(path, sizeof path, "merges", cm->name, cm->lua ? "lua" : "lua_file", NULL);
        char why[512];
        char chunkname[300];
        size_t len = 0;
        char *text = NULL;
        if (cm->lua_file != NULL) {
            char *file = resolve(d->cfg.base_dir, cm->lua_file);
            if (file == NULL)
                return fail(b, path, "out of memory");
            text = read_script(file, &len, why, sizeof why);
            free(file);
            if (text == NULL)
                return fail(b, path, why);
            snprintf(chunkname, sizeof chunkname, "%.200s", cm->lua_file);
        } else {
            snprintf(chunkname, sizeof chunkname, "%.280s", path);
        }
        tp__lua_merge_config lc = {0};
        lc.name = cm->name;
        lc.code = text != NULL ? text : cm->lua;
        lc.len = text != NULL ? len : strlen(cm->lua);
        lc.chunkname = chunkname;
        lc.max_instructions = cm->max_instructions;
        lc.max_memory = cm->max_memory_bytes;
        lc.max_ms = cm->max_ms;
        lc.log = d->opt.log;
        lc.log_user = d->opt.log_user;
        lc.log_level = d->opt.log_level;
        tp_error e = {0, ""};
        d->luas[i] = tp__lua_merge_new(&lc, &e);
        free(text);
        if (d->luas[i] == NULL)
            return fail(b, path, e.message);
        d->n_luas = i + 1;
        d->merge_list[i] = tp__lua_merge_strategy(d->luas[i]);
    }
    d->cfg.hub.merges = d->merge_list;
    return 0;
}

/*
 * auth, tls and the metrics token: the key set loaded (files, the
 * environment), certificate paths resolved, and the refusal to serve
 * unauthenticated on an address others can reach.
 */
static int
setup_access(build *b)
{
    tp__daemon *d = b->d;
    tp__config *cfg = &d->cfg;
    if (cfg->auth_jwt) {
        tp_error e = {0, ""};
        tp__jwt_keys_config kc = {cfg->base_dir, NULL, NULL, "auth.keys"};
        d->keys = tp__jwt_keys_new(json_object_get(cfg->auth, "keys"), &kc, &e);
        if (d->keys == NULL)
            return fail(b, NULL, e.message);
        if (tp__jwt_rules_load(&d->rules, cfg->auth, "auth", &e) != TP_OK)
            return fail(b, NULL, e.message);
        d->rules_loaded = 1;
        cfg->hub.verify = jwt_verify;
        cfg->hub.verify_user = d;
        cfg->server.on_reload = reload_keys;
        cfg->server.on_reload_user = d;
        /* Browsers send cookies and Origin, not tokens they cannot see; a
         * token in a page's query is still the page's: with no allowlist,
         * any site can open connections with a token it got. */
        if (cfg->origins == NULL)
            d->warn_origins =
                "auth.mode \"jwt\" with no origins allowlist: a page on any site holding a "
                "token can connect with it (set \"origins\")";
    } else if (!tp__config_listen_loopback(cfg->listen)) {
        if (!cfg->allow_unauthenticated) {
            char why[512];
            snprintf(why, sizeof why,
                     "%.300s is not a loopback address and auth.mode is \"path\": anyone who "
                     "reaches it could connect as any tenant; use auth.mode \"jwt\", or set "
                     "auth.allow_unauthenticated to true",
                     cfg->listen);
            return fail(b, "listen", why);
        }
        d->warn_unauthenticated =
            "auth.mode \"path\" on an address that is not loopback: anyone who reaches it "
            "can connect as any tenant (auth.allow_unauthenticated is true)";
    }
    if (cfg->tls_cert_file != NULL) {
        d->tls_cert = resolve(cfg->base_dir, cfg->tls_cert_file);
        d->tls_key = resolve(cfg->base_dir, cfg->tls_key_file);
        if (d->tls_cert == NULL || d->tls_key == NULL)
            return fail(b, "tls", "out of memory");
        cfg->server.tls_cert_file = d->tls_cert;
        cfg->server.tls_key_file = d->tls_key;
    }
    if (cfg->metrics_token_env != NULL) {
        const char *v = getenv(cfg->metrics_token_env);
        if (v == NULL || strlen(v) < 16) {
            char why[256];
            snprintf(why, sizeof why, "the environment variable %.100s %s", cfg->metrics_token_env,
                     v == NULL ? "is not set" : "holds fewer than 16 bytes (too easy to guess)");
            return fail(b, "metrics_token_env", why);
        }
        if ((d->metrics_token = strdup(v)) == NULL)
            return fail(b, "metrics_token_env", "out of memory");
        cfg->server.metrics_token = d->metrics_token;
    }
    return 0;
}

tp__daemon *
tp__daemon_build(tp__config *cfg, const tp__daemon_options *opt, const char *source,
                 tp__derror *err)
{
    tp__daemon *d = calloc(1, sizeof *d);
    if (d == NULL) {
        tp__config_clear(cfg);
        snprintf(err->message, sizeof err->message, "%s: out of memory", source);
        return NULL;
    }
    /* The daemon owns the config from here on, whatever happens. */
    d->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);

    if (opt != NULL && opt->listen != NULL &&
        tp__config_set_listen(&d->cfg, opt->listen, err) != 0) {
        tp__daemon_free(d);
        return NULL;
    }
    if (opt != NULL)
        d->opt = *opt;
    if (opt != NULL && opt->static_dir != NULL &&
        tp__config_set_static_dir(&d->cfg, opt->static_dir, err) != 0) {
        tp__daemon_free(d);
        return NULL;
    }
    if (opt != NULL) {
        d->cfg.hub.log = opt->log;
        d->cfg.hub.log_user = opt->log_user;
        d->cfg.hub.log_level = opt->log_level;
    }

    build b = {d, source, err, {0}};
    tp__map_init(&b.schemas, tp__seed(d));
    tp_error herr = {0, ""};
    int rc = setup_access(&b);
    if (rc == 0)
        rc = load_merges(&b);
    /* A database this build creates is removed again when the config is
     * refused: else the next start, with the config corrected, would take
     * the empty store for the stored state and serve nothing. */
    struct stat st;
    int created = d->cfg.sqlite != NULL && stat(d->cfg.sqlite, &st) != 0 && errno == ENOENT;
    if (rc == 0 && d->cfg.sqlite != NULL) {
        tp_store_options so = {0};
        so.synchronous = d->cfg.synchronous;
        d->store = tp_store_sqlite(d->cfg.sqlite, &so, &herr);
        if (d->store == NULL)
            rc = fail(&b, "storage.sqlite", herr.message);
        d->cfg.hub.store = d->store;
    }
    /* The key of connection ids (issue 11): a secret, so that ids tell
     * nobody how many connections the server had. A stored hub keeps the
     * key it first stored. */
    for (size_t got = 0; rc == 0 && got < sizeof d->cfg.hub.conn_key;) {
        ssize_t n = getrandom(d->cfg.hub.conn_key + got, sizeof d->cfg.hub.conn_key - got, 0);
        if (n > 0)
            got += (size_t)n;
        else if (n < 0 && errno != EINTR)
            rc = fail(&b, "hub", "getrandom failed: cannot make the key of connection ids");
    }
    if (rc == 0) {
        d->hub = tp_hub_new(&d->cfg.hub, &herr);
        rc = d->hub == NULL ? fail(&b, d->store ? "storage.sqlite" : "hub", herr.message)
                            : load_schemas(&b);
    }
    /* The config's tenants and shared models are the initial state: a hub
     * restored from storage already holds them, and what it holds wins. They
     * are built all the same, in a hub of their own that is thrown away, so
     * that a mistake in them is reported on every start, not only the first. */
    d->restored = rc == 0 && tp_hub_restored(d->hub);
    tp_hub *served = d->hub;
    if (rc == 0 && d->restored) {
        tp_hub_config scratch = d->cfg.hub;
        scratch.store = NULL;
        scratch.log = NULL;
        d->hub = tp_hub_new(&scratch, &herr);
        if (d->hub == NULL)
            rc = fail(&b, "hub", herr.message);
    }
    if (rc == 0)
        rc = host_tenants(&b);
    if (rc == 0)
        rc = share_models(&b);
    /* What of the config the stored state does not hold: said at start
     * (main.c), since the stored state wins and the config alone changes
     * nothing of it. */
    if (rc == 0 && d->hub != served)
        d->n_diffs = tp__host_state_diff(served, d->hub, d->diffs, sizeof d->diffs);
    if (d->hub != served) {
        tp_hub_free(d->hub);
        d->hub = served;
    }
    /* The initial state is stored whole before anything is served. */
    if (rc == 0 && tp_hub_commit(d->hub, &herr) != TP_OK)
        rc = fail(&b, "storage.sqlite", herr.message);
    tp__map_free(&b.schemas);
    if (rc != 0) {
        char *path = created ? strdup(d->cfg.sqlite) : NULL;
        tp__daemon_free(d); /* closes the store first */
        if (path != NULL) {
            static const char *const suffixes[] = {"",     "-wal",     "-shm",     "-journal",
                                                   "-log", "-log-wal", "-log-shm", "-lock"};
            char file[4096];
            for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
                snprintf(file, sizeof file, "%s%s", path, suffixes[i]);
                unlink(file);
            }
            free(path);
        }
        return NULL;
    }
    return d;
}

tp__daemon *
tp__daemon_from_text(const char *text, const char *source, const tp__daemon_options *opt,
                     tp__derror *err)
{
    tp__config cfg;
    if (tp__config_load_text(&cfg, text, source, err) != 0)
        return NULL;
    return tp__daemon_build(&cfg, opt, source, err);
}

tp__daemon *
tp__daemon_load(const char *path, const tp__daemon_options *opt, tp__derror *err)
{
    tp__config cfg;
    if (tp__config_load_file(&cfg, path, err) != 0)
        return NULL;
    return tp__daemon_build(&cfg, opt, path, err);
}

tp__daemon *
tp__daemon_demo(const tp__daemon_options *opt, tp__derror *err)
{
    return tp__daemon_from_text(tp__daemon_demo_config, "--demo", opt, err);
}

void
tp__daemon_free(tp__daemon *d)
{
    if (d == NULL)
        return;
    tp__host_free(d->names); /* before the hub, which it names itself to */
    /* The hub holds its own reference to every schema it uses. */
    tp_hub_free(d->hub);
    /* After the hub, which may still call its order's backend as it goes. */
    tp__cluster_free(d->cluster);
    tp_store_free(d->store);
    for (size_t i = 0; i < d->n_schemas; i++)
        tp_schema_free(d->schemas[i]);
    free(d->schemas);
    tp__jwt_keys_free(d->keys);
    if (d->rules_loaded)
        tp__jwt_rules_clear(&d->rules);
    free(d->tls_cert);
    free(d->tls_key);
    free(d->metrics_token);
    /* After the hub: its shared models call these strategies. */
    for (size_t i = 0; i < d->n_luas; i++)
        tp__lua_merge_free(d->luas[i]);
    free(d->luas);
    free(d->merge_list);
    tp__config_clear(&d->cfg);
    free(d);
}

/* The names of schemas (the host API's, and a cluster's catalog names
 * models' schemas by them): the config's, and those stored earlier. */
static tp__host *
registry(tp__daemon *d, tp__derror *err)
{
    tp_error herr = {0, ""};
    tp__host *h = tp__host_new(d->hub, &herr);
    if (h == NULL) {
        snprintf(err->message, sizeof err->message, "host API: %s", herr.message);
        return NULL;
    }
    /* A name stored through the API earlier keeps its stored schema. */
    size_t i = 0;
    const char *name;
    json_t *v;
    json_object_foreach(d->cfg.schemas, name, v)
    {
        if (i < d->n_schemas && tp__host_name_schema(h, name, d->schemas[i]) != TP_OK) {
            tp__host_free(h);
            snprintf(err->message, sizeof err->message, "host API: out of memory");
            return NULL;
        }
        i++;
    }
    return h;
}

int
tp__daemon_host_api(tp__daemon *d, tp_server *server, int demo, char *made, size_t made_size,
                    tp__derror *err)
{
    if (made_size > 0)
        made[0] = '\0';
    if (d->cfg.admin_token_env == NULL)
        return 0; /* no token configured: there is no /v1/ at all */
    const char *token = getenv(d->cfg.admin_token_env);
    char fresh[65];
    if ((token == NULL || token[0] == '\0') && demo) {
        /* The demo makes one and prints it (main.c), so that `make run`
         * shows the API working without any setup. */
        unsigned char raw[16];
        size_t got = 0;
        while (got < sizeof raw) {
            ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
            if (n > 0)
                got += (size_t)n;
            else if (n < 0 && errno != EINTR) {
                snprintf(err->message, sizeof err->message, "--demo: getrandom failed");
                return -1;
            }
        }
        for (size_t i = 0; i < sizeof raw; i++)
            snprintf(fresh + 2 * i, 3, "%02x", raw[i]);
        token = fresh;
        snprintf(made, made_size, "%s", fresh);
    }
    if (token == NULL || token[0] == '\0') {
        snprintf(err->message, sizeof err->message,
                 "admin_token_env: the environment variable %s is unset or empty (the host "
                 "API needs its token)",
                 d->cfg.admin_token_env);
        return -1;
    }
    if (strlen(token) < 16 || strlen(token) > 512) {
        snprintf(err->message, sizeof err->message,
                 "admin_token_env: the token in %s must be 16 to 512 bytes",
                 d->cfg.admin_token_env);
        return -1;
    }
    tp__host *h = registry(d, err);
    if (h == NULL)
        return -1;
    if (tp__server_host_api(server, token, h) != TP_OK) {
        snprintf(err->message, sizeof err->message, "host API: out of memory");
        return -1;
    }
    return 0;
}

int
tp__daemon_webhooks(tp__daemon *d, tp_server *server, tp__derror *err)
{
    size_t n = d->cfg.n_webhooks;
    if (n == 0)
        return 0;
    const char *secrets[TP__WEBHOOKS_MAX];
    for (size_t i = 0; i < n; i++) {
        const char *env = d->cfg.webhooks[i].secret_env;
        secrets[i] = getenv(env);
        if (secrets[i] == NULL || strlen(secrets[i]) < 16) {
            snprintf(err->message, sizeof err->message,
                     "webhooks[%zu].secret_env: the environment variable %s must hold the "
                     "signing secret (at least 16 bytes)",
                     i, env);
            return -1;
        }
    }
    tp_error herr = {0, ""};
    if (tp__server_webhooks(server, d->cfg.webhooks, secrets, n, &herr) != TP_OK) {
        snprintf(err->message, sizeof err->message, "webhooks: %s", herr.message);
        return -1;
    }
    return 0;
}

int
tp__daemon_cluster(tp__daemon *d, tp_server *server, volatile sig_atomic_t *stop, tp__derror *err)
{
    if (d->cfg.cluster_redis == NULL)
        return 0;
    /* The catalog names schemas: a node without the host API keeps the
     * names all the same. */
    if (d->cfg.admin_token_env == NULL && (d->names = registry(d, err)) == NULL)
        return -1;
    tp__cluster_config cc = {d->cfg.cluster_redis, d->cfg.cluster_node, d->cfg.cluster_history,
                             d->cfg.cluster_connect_timeout_ms, &d->opt};
    tp_error e = {0, ""};
    /* The server's loop (net.h): the link's connections, timers and
     * callbacks run on it, beside the WebSocket connections. */
    d->cluster = tp__cluster_new(d->hub, &server->loop, &cc, &e);
    if (d->cluster == NULL) {
        snprintf(err->message, sizeof err->message, "cluster: %s", e.message);
        return -1;
    }
    char why[900];
    int rc = tp__cluster_sync(d->cluster, stop, why, sizeof why);
    if (rc < 0)
        snprintf(err->message, sizeof err->message, "cluster: %s", why);
    return rc;
}

void
tp__daemon_cluster_stop(tp__daemon *d)
{
    tp__cluster_stop(d->cluster);
}
