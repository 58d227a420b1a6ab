/*
 * Webhook delivery (webhook.h).
 *
 * The loop thread notes events (the hub's observer: a model change, a
 * connection) into records keyed per endpoint and model ("whk:..." META
 * records), so that a model changed a thousand times between two
 * deliveries is one record holding its latest rev: debouncing costs one
 * record per model, not per change. Each record is written in the hub's
 * next transaction, the one holding the change; once that transaction is
 * durable (the committed callback names the highest durable one), an event
 * is due at min(last change + debounce_ms, first change + max_delay_ms),
 * and not before the previous delivery for that model + debounce_ms. Due
 * events go to worker threads (libcurl, one keep-alive handle each) as jobs
 * holding everything they need; the answer comes back to the loop through
 * tp_server_post. A 2xx deletes the record (in the next commit); anything
 * else retries after retry_min_ms * 2^attempts (at most 24 h), with jitter.
 * A change arriving while its model's event is being delivered starts a new
 * event (a new id) under the same record, so the older delivery, whatever
 * its outcome, never deletes what it did not report.
 */
#include "net/webhook.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/commit.h"
#include "core/journal.h"
#include "core/json.h"
#include "net/net.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/map.h"
#include "util/vec.h"

#define WORKERS 2
#define MAX_QUEUED 256                    /* jobs handed to workers at once */
#define RETRY_MAX_MS (24LL * 3600 * 1000) /* HOST-API.md: backoff up to 24 h */
#define SCHEDULE_MS 5                     /* due events are looked for at most this often */
#define RESPONSE_MAX (64 * 1024)          /* what is read of a receiver's answer */

typedef struct ev {
    char *key; /* the META record's k1, the map's key */
    char *id;  /* the event id the receiver dedupes by */
    int hook;
    unsigned type; /* TP__WH_* */
    int shared;
    char *tenant; /* NULL for a shared model */
    char *name;   /* the model id, or the connection id */
    int64_t rev;
    int64_t first_ms, last_ms, not_before_ms, retry_at_ms;
    unsigned attempts;
    int dirty;    /* its record must be written at the next commit */
    uint64_t seq; /* the transaction holding its record: delivered once durable */
    int queued;   /* a worker has it */
    int orphan;   /* replaced while queued: the record belongs to the newer event */
} ev;

typedef struct job {
    struct tp__webhooks *w;
    ev *e;
    char *url, *secret, *body;
    unsigned timeout_ms;
    long status; /* HTTP status, or 0 when no answer came */
    char why[CURL_ERROR_SIZE];
    struct job *next;
} job;

struct tp__webhooks {
    tp_server *s;
    tp_hub *hub;
    tp__observer ob;
    tp__webhook_config *cfg; /* copies */
    char **secrets;
    size_t n;
    tp__map evs;
    tp__vec dirty;    /* ev * */
    tp__vec dels;     /* char *: keys of records to delete */
    uint64_t durable; /* every transaction up to this one is durable */
    uint64_t id_prefix, id_seq;
    uv_timer_t timer;
    int timer_armed;
    unsigned queued;

    pthread_t threads[WORKERS];
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    job *dropped; /* answered while stopping: freed by tp__webhooks_free */
    atomic_int stopping;
    uint64_t delivered, failed;
};

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
ev_free(ev *e)
{
    if (e == NULL)
        return;
    tp__free(e->key);
    tp__free(e->id);
    tp__free(e->tenant);
    tp__free(e->name);
    tp__free(e);
}

static char *
new_id(tp__webhooks *w)
{
    char id[48];
    snprintf(id, sizeof id, "%016" PRIx64 "-%" PRIu64, w->id_prefix, ++w->id_seq);
    return tp__strdup(id);
}

/* A model's record key: lengths make it unambiguous whatever the keys hold. */
static char *
model_key(int hook, int shared, const char *tenant, const char *id)
{
    tp__sb sb;
    tp__sb_init(&sb, 64);
    char head[64];
    snprintf(head, sizeof head, "whk:%d:m:%c:%zu:", hook, shared ? 's' : 'p',
             tenant ? strlen(tenant) : 0);
    tp__sb_puts(&sb, head);
    if (tenant != NULL)
        tp__sb_puts(&sb, tenant);
    tp__sb_puts(&sb, ":");
    tp__sb_puts(&sb, id);
    tp__buf *b = tp__sb_finish(&sb);
    char *k = b ? tp__malloc(b->len + 1) : NULL;
    if (k != NULL) {
        memcpy(k, b->data, b->len);
        k[b->len] = '\0';
    }
    tp__buf_unref(b);
    return k;
}

static void
mark_dirty(tp__webhooks *w, ev *e)
{
    if (!e->dirty && tp__vec_push(&w->dirty, e) == 0)
        e->dirty = 1;
}

static void arm(tp__webhooks *w, uint64_t ms);

/* ---- The hub's observer (loop thread) ---- */

static void
on_model(void *user, int shared, const char *tenant, const char *id, int64_t rev)
{
    tp__webhooks *w = user;
    int64_t now = now_ms();
    for (size_t h = 0; h < w->n; h++) {
        if (!(w->cfg[h].events & TP__WH_MODEL_CHANGED))
            continue;
        char *key = model_key((int)h, shared, tenant, id);
        if (key == NULL)
            continue;
        ev *e = tp__map_get(&w->evs, key);
        if (e != NULL && !e->queued) {
            tp__free(key);
            e->rev = rev;
            e->last_ms = now;
            mark_dirty(w, e);
            continue;
        }
        int64_t not_before = 0;
        if (e != NULL) { /* being delivered: a new event takes the record */
            e->orphan = 1;
            tp__map_del(&w->evs, e->key);
            not_before = now + w->cfg[h].debounce_ms;
        }
        ev *n = tp__calloc(1, sizeof *n);
        if (n == NULL || (n->id = new_id(w)) == NULL ||
            (tenant != NULL && (n->tenant = tp__strdup(tenant)) == NULL) ||
            (n->name = tp__strdup(id)) == NULL || tp__map_put(&w->evs, key, n) != 0) {
            ev_free(n);
            tp__free(key);
            continue; /* out of memory: this change is not reported */
        }
        n->key = key;
        n->hook = (int)h;
        n->type = TP__WH_MODEL_CHANGED;
        n->shared = shared;
        n->rev = rev;
        n->first_ms = n->last_ms = now;
        n->not_before_ms = not_before;
        mark_dirty(w, n);
    }
}

static void
on_conn(void *user, const char *tenant, const char *conn, int opened)
{
    tp__webhooks *w = user;
    unsigned type = opened ? TP__WH_CONN_OPENED : TP__WH_CONN_CLOSED;
    for (size_t h = 0; h < w->n; h++) {
        if (!(w->cfg[h].events & type))
            continue;
        char key[96];
        snprintf(key, sizeof key, "whk:%zu:c:%s:%c", h, conn, opened ? 'o' : 'c');
        if (tp__map_get(&w->evs, key) != NULL)
            continue;
        ev *n = tp__calloc(1, sizeof *n);
        if (n == NULL || (n->key = tp__strdup(key)) == NULL || (n->id = new_id(w)) == NULL ||
            (n->tenant = tp__strdup(tenant)) == NULL || (n->name = tp__strdup(conn)) == NULL ||
            tp__map_put(&w->evs, n->key, n) != 0) {
            ev_free(n);
            continue;
        }
        n->hook = (int)h;
        n->type = type;
        n->first_ms = n->last_ms = now_ms();
        mark_dirty(w, n);
    }
}

static const char *
type_name(unsigned type)
{
    return type == TP__WH_MODEL_CHANGED ? "model.changed"
           : type == TP__WH_CONN_OPENED ? "connection.opened"
                                        : "connection.closed";
}

static json_t *
record_json(const ev *e)
{
    json_t *o = json_pack("{s:s, s:s, s:i, s:o, s:s, s:I, s:I}", "id", e->id, "type",
                          type_name(e->type), "hook", e->hook, "tenant",
                          e->tenant ? json_string(e->tenant) : json_null(), "name", e->name,
                          "first", (json_int_t)e->first_ms, "last", (json_int_t)e->last_ms);
    if (o != NULL && e->type == TP__WH_MODEL_CHANGED) {
        json_object_set_new(o, "shared", json_boolean(e->shared));
        json_object_set_new(o, "rev", json_integer(e->rev));
    }
    return o;
}

/* Adds the records noted to the hub's transaction tx (NULL: no store);
 * from then on they are the transaction's, delivered once it is durable. */
static int
on_journal(void *user, struct tp__txn *tx, uint64_t seq, tp_error *err)
{
    tp__webhooks *w = user;
    for (size_t i = 0; tx != NULL && i < w->dels.len; i++) {
        int rc = tp__txn_del(tx, TP__REC_META, w->dels.items[i], "", 0, err);
        if (rc != TP_OK)
            return rc;
    }
    for (size_t i = 0; tx != NULL && i < w->dirty.len; i++) {
        ev *e = w->dirty.items[i];
        json_t *o = record_json(e);
        char *text = o ? tp__json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (text == NULL)
            return tp__error_set(err, TP_ENOMEM, "out of memory");
        tp__rec r = {TP__REC_META, e->key, "", 0, text, strlen(text)};
        int rc = tp__txn_put(tx, &r, err);
        tp__free(text);
        if (rc != TP_OK)
            return rc;
    }
    for (size_t i = 0; i < w->dirty.len; i++) {
        ev *e = w->dirty.items[i];
        e->dirty = 0;
        e->seq = seq;
    }
    w->dirty.len = 0;
    for (size_t i = 0; i < w->dels.len; i++)
        tp__free(w->dels.items[i]);
    w->dels.len = 0;
    return TP_OK;
}

static int
on_pending(void *user)
{
    const tp__webhooks *w = user;
    return w->dirty.len > 0 || w->dels.len > 0;
}

static void
on_committed(void *user, uint64_t seq)
{
    tp__webhooks *w = user;
    if (seq > w->durable)
        w->durable = seq;
    if (!w->timer_armed)
        arm(w, SCHEDULE_MS);
}

/* ---- Scheduling (loop thread) ---- */

static int64_t
due_at(const tp__webhooks *w, const ev *e)
{
    if (e->attempts > 0)
        return e->retry_at_ms;
    if (e->type != TP__WH_MODEL_CHANGED)
        return e->first_ms;
    const tp__webhook_config *c = &w->cfg[e->hook];
    int64_t a = e->last_ms + c->debounce_ms, b = e->first_ms + c->max_delay_ms;
    int64_t d = a < b ? a : b;
    return d > e->not_before_ms ? d : e->not_before_ms;
}

static void
fmt_time(int64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%03dZ", base, (int)(ms % 1000));
}

static char *
delivery_body(const ev *e)
{
    char when[40];
    fmt_time(e->last_ms, when, sizeof when);
    json_t *o = json_pack("{s:s, s:s, s:s, s:o}", "id", e->id, "type", type_name(e->type), "time",
                          when, "tenant", e->tenant ? json_string(e->tenant) : json_null());
    if (o == NULL)
        return NULL;
    if (e->type == TP__WH_MODEL_CHANGED) {
        json_object_set_new(o, "scope", json_string(e->shared ? "shared" : "private"));
        json_object_set_new(o, "model", json_string(e->name));
        json_object_set_new(o, "rev", json_integer(e->rev));
    } else {
        json_object_set_new(o, "conn", json_string(e->name));
    }
    char *text = tp__json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

static void job_free(job *j);

/* A job that will never be answered: its event too when only it holds it. */
static void
job_drop(job *j)
{
    if (j->e->orphan)
        ev_free(j->e);
    job_free(j);
}

static void
job_free(job *j)
{
    if (j == NULL)
        return;
    tp__free(j->url);
    tp__free(j->secret);
    tp__free(j->body);
    tp__free(j);
}

static int
enqueue(tp__webhooks *w, ev *e)
{
    job *j = tp__calloc(1, sizeof *j);
    if (j == NULL)
        return -1;
    j->w = w;
    j->e = e;
    j->timeout_ms = w->cfg[e->hook].timeout_ms;
    if ((j->url = tp__strdup(w->cfg[e->hook].url)) == NULL ||
        (j->secret = tp__strdup(w->secrets[e->hook])) == NULL ||
        (j->body = delivery_body(e)) == NULL) {
        job_free(j);
        return -1;
    }
    e->queued = 1;
    w->queued++;
    pthread_mutex_lock(&w->mu);
    if (w->tail != NULL)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

static void
schedule(tp__webhooks *w)
{
    int64_t now = now_ms(), next = -1;
    void *v;
    for (size_t it = 0; tp__map_next(&w->evs, &it, NULL, &v);) {
        ev *e = v;
        /* Dirty: a change since its record was stored, not yet committed;
         * it goes once the commit says the change happened. */
        if (e->seq > w->durable || e->queued || e->dirty)
            continue;
        int64_t due = due_at(w, e);
        if (due <= now && w->queued < MAX_QUEUED) {
            if (enqueue(w, e) == 0)
                continue;
            due = now + 1000; /* out of memory: later */
        }
        if (due <= now)
            due = now + SCHEDULE_MS; /* the workers are full: when some come back */
        if (next < 0 || due < next)
            next = due;
    }
    if (next >= 0)
        arm(w, (uint64_t)(next - now < SCHEDULE_MS ? SCHEDULE_MS : next - now));
}

static void
timer_fired(uv_timer_t *t)
{
    tp__webhooks *w = t->data;
    w->timer_armed = 0;
    schedule(w);
}

static void
arm(tp__webhooks *w, uint64_t ms)
{
    uv_timer_start(&w->timer, timer_fired, ms, 0);
    w->timer_armed = 1;
}

static int64_t
backoff_ms(const tp__webhook_config *c, unsigned attempts)
{
    int64_t d = c->retry_min_ms;
    for (unsigned i = 1; i < attempts && d < RETRY_MAX_MS; i++)
        d *= 2;
    if (d > RETRY_MAX_MS)
        d = RETRY_MAX_MS;
    /* Full jitter on the upper half: receivers coming back are not hit by
     * every sender at the same moment. */
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
        r = (uint32_t)now_ms();
    return d / 2 + (int64_t)((double)(d / 2) * ((double)r / 4294967296.0));
}

/* A worker's answer, on the loop thread. */
static void
job_done(void *arg)
{
    job *j = arg;
    tp__webhooks *w = j->w;
    ev *e = j->e;
    if (atomic_load(&w->stopping)) {
        job_drop(j); /* tp__webhooks_free runs the last answers: nothing more is sent */
        return;
    }
    w->queued--;
    e->queued = 0;
    int ok = j->status >= 200 && j->status < 300;
    char qt[TP__LOG_VALUE_MAX];
    if (ok) {
        w->delivered++;
        tp__log(w->s->log, TP_LOG_DEBUG, "webhook delivered id=%s type=%s url=%s status=%ld", e->id,
                type_name(e->type), tp__log_value(j->url, qt, sizeof qt), j->status);
        if (!e->orphan) {
            char *k = tp__strdup(e->key);
            if (k == NULL || tp__vec_push(&w->dels, k) != 0)
                tp__free(k); /* the record stays: delivered again after a restart */
            tp__map_del(&w->evs, e->key);
        }
        ev_free(e);
    } else if (e->orphan) {
        ev_free(e); /* a newer event reports its model */
    } else {
        w->failed++;
        e->attempts++;
        int64_t d = backoff_ms(&w->cfg[e->hook], e->attempts);
        e->retry_at_ms = now_ms() + d;
        tp__log(w->s->log, TP_LOG_WARN,
                "webhook failed id=%s type=%s url=%s attempt=%u retry_in_ms=%lld: %s", e->id,
                type_name(e->type), tp__log_value(j->url, qt, sizeof qt), e->attempts, (long long)d,
                j->status ? "not a 2xx answer" : j->why);
    }
    job_free(j);
    if (!w->timer_armed)
        arm(w, SCHEDULE_MS);
}

/* ---- Workers ---- */

static size_t
discard(char *p, size_t size, size_t n, void *user)
{
    size_t *got = user;
    (void)p;
    *got += size * n;
    return *got > RESPONSE_MAX ? 0 : size * n; /* an endless answer is cut off */
}

static int
progress(void *user, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    tp__webhooks *w = user;
    return atomic_load(&w->stopping) ? 1 : 0; /* stopping: abort the transfer */
}

static void
deliver(tp__webhooks *w, CURL *curl, job *j)
{
    long long t = (long long)time(NULL);
    char ts[32];
    int tl = snprintf(ts, sizeof ts, "%lld.", t);
    size_t blen = strlen(j->body);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    /* HMAC-SHA256 of "<t>.<body>", in two updates (no copy of the body). */
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[2] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                            OSSL_PARAM_construct_end()};
    size_t outl = 0;
    int ok = ctx != NULL &&
             EVP_MAC_init(ctx, (const unsigned char *)j->secret, strlen(j->secret), params) &&
             EVP_MAC_update(ctx, (const unsigned char *)ts, (size_t)tl) &&
             EVP_MAC_update(ctx, (const unsigned char *)j->body, blen) &&
             EVP_MAC_final(ctx, mac, &outl, sizeof mac);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
    maclen = (unsigned int)outl;
    if (!ok) {
        snprintf(j->why, sizeof j->why, "cannot compute the signature");
        return;
    }
    char sig[64 + 2 * EVP_MAX_MD_SIZE];
    int sl = snprintf(sig, sizeof sig, "Transports-Signature: t=%lld,v1=", t);
    for (unsigned i = 0; i < maclen; i++)
        snprintf(sig + sl + 2 * i, 3, "%02x", mac[i]);
    char idh[96];
    snprintf(idh, sizeof idh, "Transports-Delivery: %s", j->e->id);
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, sig);
    h = curl_slist_append(h, idh);
    h = curl_slist_append(h, "Expect:");
    size_t got = 0;
    curl_easy_setopt(curl, CURLOPT_URL, j->url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, j->body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)blen);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)j->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)j->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &got);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, j->why);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "transports/" TP_VERSION);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, w);
    j->why[0] = '\0';
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &j->status);
    else if (j->why[0] == '\0')
        snprintf(j->why, sizeof j->why, "%s", curl_easy_strerror(rc));
    curl_slist_free_all(h);
}

static void *
worker(void *arg)
{
    tp__webhooks *w = arg;
    CURL *curl = curl_easy_init();
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->head == NULL && !atomic_load(&w->stopping))
            pthread_cond_wait(&w->cv, &w->mu);
        if (atomic_load(&w->stopping)) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        job *j = w->head;
        w->head = j->next;
        if (w->head == NULL)
            w->tail = NULL;
        j->next = NULL;
        pthread_mutex_unlock(&w->mu);
        if (curl != NULL)
            deliver(w, curl, j);
        else
            snprintf(j->why, sizeof j->why, "libcurl could not start");
        /* Stopping: the job is dropped (its record is delivered again
         * after a restart), never posted to a loop that is going away. */
        if (atomic_load(&w->stopping) || tp_server_post(w->s, job_done, j) != TP_OK) {
            pthread_mutex_lock(&w->mu);
            j->next = w->dropped;
            w->dropped = j;
            pthread_mutex_unlock(&w->mu);
        }
    }
    curl_easy_cleanup(curl);
    return NULL;
}

/* ---- Life cycle ---- */

static int
load_record(const tp__rec *r, void *user)
{
    tp__webhooks *w = user;
    if (strncmp(r->k1, "whk:", 4) != 0)
        return 0;
    json_t *o = json_loadb(r->body, r->body_len, 0, NULL);
    const char *type = json_string_value(json_object_get(o, "type"));
    json_int_t hook = json_integer_value(json_object_get(o, "hook"));
    unsigned t = type == NULL                             ? 0
                 : strcmp(type, "model.changed") == 0     ? TP__WH_MODEL_CHANGED
                 : strcmp(type, "connection.opened") == 0 ? TP__WH_CONN_OPENED
                 : strcmp(type, "connection.closed") == 0 ? TP__WH_CONN_CLOSED
                                                          : 0;
    ev *e = NULL;
    if (t != 0 && hook >= 0 && (size_t)hook < w->n && (w->cfg[hook].events & t) &&
        json_is_string(json_object_get(o, "id")) && json_is_string(json_object_get(o, "name"))) {
        e = tp__calloc(1, sizeof *e);
        const char *tenant = json_string_value(json_object_get(o, "tenant"));
        if (e != NULL) {
            e->key = tp__strdup(r->k1);
            e->id = tp__strdup(json_string_value(json_object_get(o, "id")));
            e->name = tp__strdup(json_string_value(json_object_get(o, "name")));
            e->tenant = tenant ? tp__strdup(tenant) : NULL;
            e->hook = (int)hook;
            e->type = t;
            e->shared = json_is_true(json_object_get(o, "shared"));
            e->rev = json_integer_value(json_object_get(o, "rev"));
            e->first_ms = json_integer_value(json_object_get(o, "first"));
            e->last_ms = json_integer_value(json_object_get(o, "last"));
            e->seq = 0; /* stored already */
            if (e->key == NULL || e->id == NULL || e->name == NULL ||
                (tenant != NULL && e->tenant == NULL) || tp__map_put(&w->evs, e->key, e) != 0) {
                ev_free(e);
                json_decref(o);
                return TP_ENOMEM;
            }
        }
    } else {
        /* An endpoint or event the config no longer has: forgotten. */
        char *k = tp__strdup(r->k1);
        if (k == NULL || tp__vec_push(&w->dels, k) != 0)
            tp__free(k);
    }
    json_decref(o);
    return 0;
}

int
tp__server_webhooks(tp_server *s, const tp__webhook_config *cfg, const char *const *secrets,
                    size_t n, tp_error *err)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return tp__error_set(err, TP_EINTERNAL, "webhooks: libcurl cannot start");
    tp__webhooks *w = tp__calloc(1, sizeof *w);
    if (w == NULL)
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    w->s = s;
    w->hub = s->hub;
    w->n = n;
    tp__map_init(&w->evs, tp__seed(w));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    atomic_init(&w->stopping, 0);
    if (getrandom(&w->id_prefix, sizeof w->id_prefix, 0) != sizeof w->id_prefix)
        w->id_prefix = (uint64_t)now_ms();
    uv_timer_init(&s->loop, &w->timer);
    w->timer.data = w;
    s->webhooks = w;
    w->cfg = tp__calloc(n ? n : 1, sizeof *w->cfg);
    w->secrets = tp__calloc(n ? n : 1, sizeof *w->secrets);
    if (w->cfg == NULL || w->secrets == NULL)
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        w->cfg[i] = cfg[i];
        w->cfg[i].secret_env = NULL;
        if ((w->cfg[i].url = tp__strdup(cfg[i].url)) == NULL ||
            (w->secrets[i] = tp__strdup(secrets[i])) == NULL)
            return tp__error_set(err, TP_ENOMEM, "out of memory");
    }
    tp_store *st = tp__hub_store(s->hub);
    if (st != NULL) {
        int rc = tp__store_read_begin(s->hub, err);
        if (rc != TP_OK)
            return rc;
        rc = st->ops->scan(st, TP__REC_META, NULL, NULL, load_record, w, err);
        tp__store_read_end(s->hub);
        if (rc != TP_OK)
            return err ? err->code : TP_EINTERNAL;
    }
    w->ob = (tp__observer){on_model, on_conn, on_journal, on_pending, on_committed, w};
    tp__hub_set_observer(s->hub, &w->ob);
    for (int i = 0; i < WORKERS; i++) {
        if (pthread_create(&w->threads[i], NULL, worker, w) != 0)
            return tp__error_set(err, TP_EINTERNAL, "webhooks: cannot start a worker thread");
        w->nthreads++;
    }
    if (w->evs.len > 0)
        tp__log(s->log, TP_LOG_INFO, "webhooks resumed events=%zu", (size_t)w->evs.len);
    arm(w, SCHEDULE_MS);
    return TP_OK;
}

void
tp__webhooks_free(tp__webhooks *w)
{
    if (w == NULL)
        return;
    /* What was noted goes to storage: delivered after the next start. */
    if (tp__hub_observer(w->hub) == &w->ob) {
        tp_hub_commit(w->hub, NULL);
        tp__hub_set_observer(w->hub, NULL);
    }
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->stopping, 1);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    /* Answers posted to the loop and not yet run: they drop their jobs. */
    tp__server_run_posts(w->s);
    for (job *j = w->head, *next; j != NULL; j = next) {
        next = j->next;
        job_drop(j);
    }
    for (job *j = w->dropped, *next; j != NULL; j = next) {
        next = j->next;
        job_drop(j);
    }
    void *v;
    for (size_t it = 0; tp__map_next(&w->evs, &it, NULL, &v);)
        ev_free(v);
    tp__map_free(&w->evs);
    for (size_t i = 0; i < w->dels.len; i++)
        tp__free(w->dels.items[i]);
    tp__vec_free(&w->dels);
    tp__vec_free(&w->dirty);
    for (size_t i = 0; i < w->n; i++) {
        if (w->cfg != NULL)
            tp__free(w->cfg[i].url);
        if (w->secrets != NULL && w->secrets[i] != NULL) {
            OPENSSL_cleanse(w->secrets[i], strlen(w->secrets[i]));
            tp__free(w->secrets[i]);
        }
    }
    tp__free(w->cfg);
    tp__free(w->secrets);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    /* libuv closes a handle on its next run: the server frees w after it
     * (tp__webhooks_release). */
    uv_close((uv_handle_t *)&w->timer, NULL);
}

void
tp__webhooks_release(tp__webhooks *w)
{
    tp__free(w);
}

int
tp__webhooks_stats(const tp__webhooks *w, uint64_t out[3])
{
    if (w == NULL)
        return 0;
    out[0] = w->delivered;
    out[1] = w->failed;
    out[2] = (uint64_t)w->evs.len;
    return 1;
}
