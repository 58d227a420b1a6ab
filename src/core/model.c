/*
 * A model: its value, its rev, the patches it published (kept for resume),
 * and the messages that reveal it. tp__model_commit is the one place where
 * a model changes, for client writes and host writes alike.
 */
#include <string.h>

#include "core/conn_int.h"
#include "core/hub.h"
#include "core/merge.h"
#include "core/model.h"
#include "core/notes.h"
#include "core/patch.h"
#include "core/presence.h"
#include "core/schema.h"
#include "core/wire.h"
#include "util/alloc.h"
#include "util/error.h"

tp__model *
tp__model_new(tp_hub *hub, int shared, const char *id, const tp_schema *schema, json_t *value)
{
    tp__model *m = tp__calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->hub = hub;
    m->shared = shared;
    m->rev = 1;
    m->kind = TP__LWW;
    m->merge = tp_last_write_wins;
    tp__map_init(&m->stamps, hub->seed ^ 0x5bd1e995U);
    m->id = tp__strdup(id);
    m->addr = m->id ? tp__wire_addr(shared, id, &m->addr_len) : NULL;
    if (m->addr == NULL) {
        tp__free(m->id);
        tp__free(m);
        return NULL;
    }
    m->schema = tp__schema_ref(schema);
    m->value = json_incref(value);
    m->bytes = tp__value_bytes(value);
    return m;
}

void
tp__model_free(tp__model *m)
{
    if (m == NULL)
        return;
    tp__presence_model_gone(m);
    for (unsigned i = 0; i < m->hist_len; i++)
        tp__buf_unref(m->hist[(m->hist_start + i) % m->hist_cap].msg);
    tp__free(m->hist);
    tp__buf_unref(m->snap[0]);
    tp__buf_unref(m->snap[1]);
    tp__stamps_free(&m->stamps);
    tp__vec_free(&m->subs);
    json_decref(m->value);
    json_decref(m->pending);
    tp_schema_free(m->schema);
    tp__free(m->merge_name);
    tp__free(m->addr);
    tp__free(m->id);
    tp__free(m);
}

tp__buf *
tp__model_snapshot(tp__model *m, tp_access access)
{
    int w = access == TP_WRITE;
    if (m->snap[w] != NULL && m->snap_rev[w] == m->rev)
        return m->snap[w];
    tp__buf_unref(m->snap[w]);
    m->snap[w] = NULL;
    m->snap[w] = tp__wire_snapshot(m->addr, m->addr_len, tp_schema_title(m->schema), m->rev, access,
                                   m->value);
    m->snap_rev[w] = m->rev;
    return m->snap[w];
}

/* ---- History ---- */

void
tp__model_history_push(tp__model *m, int64_t from, int64_t rev, tp__buf *msg)
{
    const tp_limits *lim = &m->hub->limits;
    if (lim->history_patches == 0)
        return;
    /* The ring grows by doubling up to history_patches: a model that
     * changes rarely does not hold room for 256 patches. */
    if (m->hist_len == m->hist_cap && m->hist_cap < lim->history_patches) {
        unsigned cap = m->hist_cap ? 2 * m->hist_cap : 4;
        if (cap > lim->history_patches)
            cap = lim->history_patches;
        tp__hist *h = tp__calloc(cap, sizeof *h);
        if (h == NULL && m->hist_cap == 0)
            return; /* resume falls back to a snapshot */
        if (h != NULL) {
            for (unsigned i = 0; i < m->hist_len; i++)
                h[i] = m->hist[(m->hist_start + i) % m->hist_cap];
            tp__free(m->hist);
            m->hist = h;
            m->hist_start = 0;
            m->hist_cap = cap;
        }
    }
    /* A gap in the revs would make resume hand out patches that do not
     * chain: start over when this patch does not follow the newest kept. */
    if (m->hist_len > 0 && m->hist[(m->hist_start + m->hist_len - 1) % m->hist_cap].rev != from)
        tp__model_history_clear(m);
    while (m->hist_len > 0 &&
           (m->hist_len == m->hist_cap || m->hist_bytes + msg->len > lim->history_bytes)) {
        tp__hist *old = &m->hist[m->hist_start];
        m->hist_bytes -= old->msg->len;
        m->hist_dropped += old->msg->len;
        tp__buf_unref(old->msg);
        m->hist_start = (m->hist_start + 1) % m->hist_cap;
        m->hist_len--;
    }
    if (msg->len > lim->history_bytes)
        return;
    tp__hist *h = &m->hist[(m->hist_start + m->hist_len) % m->hist_cap];
    h->from = from;
    h->rev = rev;
    h->msg = tp__buf_ref(msg);
    m->hist_len++;
    m->hist_bytes += msg->len;
}

long
tp__model_history_find(const tp__model *m, int64_t rev)
{
    if (m->hist_len == 0)
        return -1;
    /* Revs in the history are consecutive: index arithmetic, no search. */
    int64_t oldest = m->hist[m->hist_start].from;
    if (rev < oldest || rev >= m->rev)
        return -1;
    long i = (long)(rev - oldest);
    return i < (long)m->hist_len ? i : -1;
}

void
tp__model_history_clear(tp__model *m)
{
    while (m->hist_len > 0) {
        m->hist_dropped += m->hist[m->hist_start].msg->len;
        tp__buf_unref(m->hist[m->hist_start].msg);
        m->hist_start = (m->hist_start + 1) % m->hist_cap;
        m->hist_len--;
    }
    m->hist_bytes = 0;
}

tp__buf *
tp__model_history_at(const tp__model *m, unsigned i)
{
    return m->hist[(m->hist_start + i) % m->hist_cap].msg;
}

/*
 * lww-map stamps are recorded in two steps so that a change either lands
 * whole or not at all: stage_stamps makes every allocation (new entries, map
 * room), install_stamps then cannot fail.
 */
static int
stage_stamps(tp__model *m, const tp__change *ch, tp__stamp_entry ***made)
{
    *made = NULL;
    if (!ch->stamped)
        return 0;
    size_t fresh = 0;
    for (size_t i = 0; i < ch->n; i++)
        fresh += tp__map_get(&m->stamps, ch->members[i].key) == NULL;
    if (fresh == 0)
        return 0;
    if (tp__map_reserve(&m->stamps, fresh) != 0 ||
        (*made = tp__calloc(fresh, sizeof **made)) == NULL)
        return TP_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < ch->n; i++) {
        if (tp__map_get(&m->stamps, ch->members[i].key) != NULL)
            continue;
        size_t len = strlen(ch->members[i].key);
        tp__stamp_entry *e = tp__malloc(sizeof(tp__stamp_entry) + len + 1);
        if (e == NULL) {
            for (size_t j = 0; j < k; j++)
                tp__free((*made)[j]);
            tp__free(*made);
            *made = NULL;
            return TP_ENOMEM;
        }
        memcpy(e->field, ch->members[i].key, len + 1);
        (*made)[k++] = e;
    }
    return 0;
}

static void
install_stamps(tp__model *m, const tp__change *ch, tp__stamp_entry **made)
{
    if (!ch->stamped)
        return;
    size_t k = 0;
    for (size_t i = 0; i < ch->n; i++) {
        tp__stamp_entry *e = tp__map_get(&m->stamps, ch->members[i].key);
        if (e == NULL) {
            e = made[k++];
            tp__map_put(&m->stamps, e->field, e); /* reserved: cannot fail */
        }
        e->st = ch->stamp;
    }
    tp__free(made);
}

/* The bytes a member takes in the encoded value (an upper bound: keys are
 * counted unescaped, plus quotes, colon and comma). */
static size_t
member_bytes(const char *key, const json_t *v)
{
    return v == NULL ? 0 : strlen(key) + 4 + tp__json_size(v);
}

size_t
tp__value_bytes(const json_t *v)
{
    return tp__json_size(v);
}

int
tp__check_size(const tp_hub *hub, size_t bytes, tp_error *err)
{
    /* PROTOCOL.md: a single message (a snapshot) is at most the
     * max_message_bytes announced in hello; keep room for its envelope. */
    size_t limit = hub->limits.max_message_bytes;
    size_t room = limit > 2 * TP__ENVELOPE ? limit - TP__ENVELOPE : limit / 2;
    if (bytes > room)
        return tp__error_set(err, TP_EINVALID,
                             "(root): the value would take %zu bytes, over the limit of %zu", bytes,
                             room);
    return TP_OK;
}

int
tp__model_prepare(tp__model *m, const tp__change *ch, int validate, const char *origin,
                  tp__buf **msg, size_t *bytes_out, tp_error *err)
{
    size_t changed = 0;
    size_t bytes = m->bytes;
    if (msg != NULL)
        *msg = NULL;
    for (size_t i = 0; i < ch->n; i++) {
        const struct tp__member *mb = &ch->members[i];
        if (mb->same)
            continue;
        int rc = validate ? tp__schema_validate_member(m->schema, mb->key, mb->value, err) : TP_OK;
        if (rc != TP_OK)
            return rc;
        bytes = bytes - member_bytes(mb->key, json_object_get(m->value, mb->key)) +
                member_bytes(mb->key, mb->value);
        changed++;
    }
    int rc = changed > 0 && validate ? tp__check_size(m->hub, bytes, err) : TP_OK;
    if (rc != TP_OK)
        return rc;
    *bytes_out = bytes;
    if (changed == 0 || msg == NULL)
        return (int)changed;
    json_t *patch = json_object();
    rc = patch != NULL ? 0 : TP_ENOMEM;
    for (size_t i = 0; rc == 0 && i < ch->n; i++) {
        const struct tp__member *mb = &ch->members[i];
        if (mb->same)
            continue;
        json_t *was = json_object_get(m->value, mb->key);
        json_t *pv = mb->value == NULL ? json_null() : tp_merge_patch_diff(was, mb->value);
        if (pv == NULL || json_object_set_new(patch, mb->key, pv) != 0)
            rc = TP_ENOMEM;
    }
    *msg = rc == 0 ? tp__wire_patch(m->addr, m->addr_len, m->rev, patch, origin) : NULL;
    json_decref(patch);
    if (*msg == NULL)
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    return (int)changed;
}

int
tp__model_apply(tp__model *m, tp__change *ch, tp__buf *msg, size_t bytes, tp_conn *except,
                tp_error *err)
{
    /* Stage everything that can fail before the model changes. */
    tp__stamp_entry **made = NULL;
    if (stage_stamps(m, ch, &made) != 0)
        return tp__error_set(err, TP_ENOMEM, "out of memory");
    if (msg == NULL) {
        if (ch->stamped)
            tp__journal_model(m); /* a field's stamp moves on */
        install_stamps(m, ch, made);
        return 0;
    }
    tp__journal_model(m);
    /* Values below the root are shared, never changed in place; the root is
     * changed in place when nobody else holds it (a merge callback may). */
    if (m->value->refcount > 1) {
        json_t *copy = tp__json_shallow_copy(m->value);
        if (copy == NULL)
            goto nomem;
        json_decref(m->value);
        m->value = copy;
    }
    /* Members new to the object are the only ones whose insertion may
     * allocate: they go first, and a failure removes those added, which
     * cannot fail. Replacing and deleting members cannot fail either. */
    size_t added;
    for (added = 0; added < ch->n; added++) {
        struct tp__member *mb = &ch->members[added];
        if (mb->same || mb->value == NULL || json_object_get(m->value, mb->key) != NULL)
            continue;
        if (json_object_set(m->value, mb->key, mb->value) != 0)
            break;
        mb->same = -1; /* marks "inserted" until the pass below */
    }
    if (added < ch->n) {
        for (size_t i = 0; i < added; i++)
            if (ch->members[i].same == -1) {
                json_object_del(m->value, ch->members[i].key);
                ch->members[i].same = 0;
            }
        goto nomem;
    }
    size_t changed = 0;
    for (size_t i = 0; i < ch->n; i++) {
        struct tp__member *mb = &ch->members[i];
        if (mb->same == -1)
            mb->same = 0;
        else if (mb->same)
            continue;
        else if (mb->value != NULL)
            json_object_set(m->value, mb->key, mb->value); /* an existing member */
        else
            json_object_del(m->value, mb->key);
        changed++;
    }
    install_stamps(m, ch, made);
    m->bytes = bytes;

    int64_t from = m->rev++;
    tp__model_history_push(m, from, m->rev, msg);
    tp__fanout(m, msg, except);
    const tp__observer *ob = m->hub->observer;
    if (ob != NULL && !ch->quiet)
        ob->model_changed(ob->user, m->shared, m->owner ? m->owner->tenant : NULL, m->id, m->rev);
    return (int)changed;

nomem:
    if (made != NULL) {
        /* Staged entries not installed: free them (count them by the map). */
        size_t k = 0;
        for (size_t i = 0; i < ch->n; i++)
            if (tp__map_get(&m->stamps, ch->members[i].key) == NULL)
                tp__free(made[k++]);
        tp__free(made);
    }
    return tp__error_set(err, TP_ENOMEM, "out of memory");
}

int
tp__model_commit(tp__model *m, tp__change *ch, tp_conn *origin, tp_conn *except, tp_error *err)
{
    tp__buf *msg = NULL;
    size_t bytes = 0;
    int rc = tp__model_prepare(m, ch, 1, origin ? origin->id : "host", &msg, &bytes, err);
    if (rc < 0)
        return rc;
    rc = tp__model_apply(m, ch, msg, bytes, except, err);
    tp__buf_unref(msg);
    return rc;
}
