/*
 * The envelope scanner (envelope.h). It is strict the cheap way: whatever
 * it is not sure of, it leaves to jansson (TP__ENV_OTHER), so it only has
 * to be right about the shapes it takes.
 */
#include "core/envelope.h"

#include <stdint.h>
#include <string.h>

#include "util/alloc.h"
#include "util/error.h"

const char *const tp__env_names[TP__M_COUNT] = {
#define TP__ENV_NAME(name) #name,
    TP__ENV_MEMBERS(TP__ENV_NAME)
#undef TP__ENV_NAME
};

/* Deeper values go to jansson, which knows its own limit (2048 levels):
 * far below it, a value's own parse can never pass that limit when the
 * whole message's would not. */
#define SCAN_DEPTH_MAX 512

typedef struct scan {
    const unsigned char *p, *end;
    char *out; /* the next free byte of the arena */
} scan;

static void
skip_ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* A string without escapes, s->p after its opening quote: copied into the
 * arena, NUL-terminated. Returns 0, or -1 for anything else. */
static int
scan_string(scan *s, const char **str, size_t *len)
{
    const unsigned char *start = s->p;
    while (s->p < s->end && *s->p != '"') {
        unsigned char c = *s->p;
        if (c < 0x20 || c == '\\')
            return -1; /* refused, or an escape: jansson's */
        if (c < 0x80) {
            s->p++;
        } else {
            size_t n = tp__utf8_seq(s->p, (size_t)(s->end - s->p));
            if (n == 0)
                return -1;
            s->p += n;
        }
    }
    if (s->p == s->end)
        return -1;
    *len = (size_t)(s->p - start);
    memcpy(s->out, start, *len);
    s->out[*len] = '\0';
    *str = s->out;
    s->out += *len + 1;
    s->p++; /* the closing quote */
    return 0;
}

/* An integer, as jansson reads one (-?(0|[1-9][0-9]*), in json_int_t's
 * range); a number with a fraction or an exponent is jansson's. */
static int
scan_integer(scan *s, json_int_t *out)
{
    int neg = 0;
    if (s->p < s->end && *s->p == '-') {
        neg = 1;
        s->p++;
    }
    if (s->p == s->end || *s->p < '0' || *s->p > '9')
        return -1;
    uint64_t u = 0;
    const uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (*s->p == '0') {
        s->p++;
    } else {
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
            unsigned d = (unsigned)(*s->p - '0');
            if (u > (limit - d) / 10)
                return -1; /* out of range: jansson says so */
            u = u * 10 + d;
            s->p++;
        }
    }
    if (s->p < s->end &&
        ((*s->p >= '0' && *s->p <= '9') || *s->p == '.' || *s->p == 'e' || *s->p == 'E'))
        return -1;
    *out = neg ? (json_int_t)(0 - u) : (json_int_t)u;
    return 0;
}

/* The end of the object or array at s->p (brackets counted outside
 * strings); jansson then parses exactly that span and judges it. */
static const unsigned char *
value_end(const unsigned char *p, const unsigned char *end)
{
    int depth = 0;
    while (p < end) {
        unsigned char c = *p++;
        if (c == '"') {
            while (p < end && *p != '"') {
                if (*p == '\\' && ++p == end)
                    return NULL;
                p++;
            }
            if (p >= end)
                return NULL;
            p++;
        } else if (c == '{' || c == '[') {
            if (++depth > SCAN_DEPTH_MAX)
                return NULL;
        } else if (c == '}' || c == ']') {
            if (--depth == 0)
                return p;
        }
    }
    return NULL;
}

static int
literal(scan *s, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

static int
scan_value(scan *s, tp__jv *jv, json_t **owned)
{
    if (s->p == s->end)
        return -1;
    switch (*s->p) {
    case '"':
        s->p++;
        jv->kind = TP__JV_STRING;
        return scan_string(s, &jv->str, &jv->len);
    case '{':
    case '[': {
        const unsigned char *e = value_end(s->p, s->end);
        if (e == NULL)
            return -1;
        json_error_t jerr;
        json_t *v = json_loadb((const char *)s->p, (size_t)(e - s->p),
                               JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
        if (v == NULL)
            return -1;
        jv->kind = json_is_object(v) ? TP__JV_OBJECT : TP__JV_ARRAY;
        jv->json = v;
        *owned = v;
        s->p = e;
        return 0;
    }
    case 't': jv->kind = TP__JV_TRUE; return literal(s, "true", 4);
    case 'f': jv->kind = TP__JV_FALSE; return literal(s, "false", 5);
    case 'n': jv->kind = TP__JV_NULL; return literal(s, "null", 4);
    default: jv->kind = TP__JV_INTEGER; return scan_integer(s, &jv->num);
    }
}

static int
member_index(const char *key, size_t len)
{
    for (int i = 0; i < TP__M_COUNT; i++)
        if (strlen(tp__env_names[i]) == len && memcmp(tp__env_names[i], key, len) == 0)
            return i;
    return -1;
}

static int
scan_object(tp__env *env, scan *s)
{
    if (s->p == s->end || *s->p++ != '{')
        return -1;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        if (s->p == s->end || *s->p++ != '"')
            return -1;
        const char *key;
        size_t klen;
        char *mark = s->out;
        if (scan_string(s, &key, &klen) != 0)
            return -1;
        int k = member_index(key, klen);
        s->out = mark; /* the key is not kept */
        /* A member the hub does not read (jansson checks it and the hub
         * ignores it) or one given twice (jansson refuses it): jansson's. */
        if (k < 0 || env->m[k].kind != TP__JV_ABSENT)
            return -1;
        skip_ws(s);
        if (s->p == s->end || *s->p++ != ':')
            return -1;
        skip_ws(s);
        if (scan_value(s, &env->m[k], &env->owned[k]) != 0)
            return -1;
        skip_ws(s);
        if (s->p == s->end)
            return -1;
        unsigned char c = *s->p++;
        if (c == '}')
            return 0;
        if (c != ',')
            return -1;
    }
}

/* Room for one more envelope of a batch; NULL when out of memory. */
static tp__env *
text_push(tp__text *t)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        tp__env *v = tp__reallocarray(t->msgs == &t->one ? NULL : t->msgs, cap, sizeof *v);
        if (v == NULL)
            return NULL;
        if (t->msgs == &t->one && t->n > 0)
            v[0] = t->one;
        t->msgs = v;
        t->cap = cap;
    }
    tp__env *e = &t->msgs[t->n++];
    memset(e, 0, sizeof *e);
    return e;
}

static int
scan_batch(tp__text *t, scan *s)
{
    s->p++; /* '[' */
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        tp__env *e = text_push(t);
        /* A member that is not an object is jansson's (the hub refuses it
         * by its index). */
        if (e == NULL || scan_object(e, s) != 0)
            return -1;
        skip_ws(s);
        if (s->p == s->end)
            return -1;
        unsigned char c = *s->p++;
        if (c == ']')
            return 0;
        if (c != ',')
            return -1;
    }
}

int
tp__env_scan(tp__text *t, const char *text, size_t len)
{
    t->n = 0;
    t->cap = 1;
    t->batch = 0;
    t->msgs = &t->one;
    memset(&t->one, 0, sizeof t->one);
    /* Decoded strings take at most the bytes of their text (the quotes
     * make room for the NUL). */
    t->arena = len <= sizeof t->small ? t->small : tp__malloc(len);
    if (t->arena == NULL)
        return TP__ENV_OTHER;
    scan s = {(const unsigned char *)text, (const unsigned char *)text + len, t->arena};
    skip_ws(&s);
    int rc;
    if (s.p < s.end && *s.p == '[') {
        t->batch = 1;
        t->cap = 0; /* the first push allocates the array */
        rc = scan_batch(t, &s);
    } else {
        t->n = 1;
        rc = scan_object(&t->one, &s);
    }
    if (rc == 0) {
        skip_ws(&s);
        if (s.p != s.end)
            rc = -1; /* trailing bytes: jansson's message */
    }
    if (rc != 0) {
        tp__text_clear(t);
        return TP__ENV_OTHER;
    }
    return TP__ENV_OK;
}

void
tp__jv_from_json(tp__jv *jv, const json_t *v)
{
    memset(jv, 0, sizeof *jv);
    if (v == NULL)
        return;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        jv->kind = TP__JV_OBJECT;
        jv->json = (json_t *)v;
        break;
    case JSON_ARRAY:
        jv->kind = TP__JV_ARRAY;
        jv->json = (json_t *)v;
        break;
    case JSON_STRING:
        jv->kind = TP__JV_STRING;
        jv->str = json_string_value(v);
        jv->len = json_string_length(v);
        break;
    case JSON_INTEGER:
        jv->kind = TP__JV_INTEGER;
        jv->num = json_integer_value(v);
        break;
    case JSON_REAL: jv->kind = TP__JV_REAL; break;
    case JSON_TRUE: jv->kind = TP__JV_TRUE; break;
    case JSON_FALSE: jv->kind = TP__JV_FALSE; break;
    case JSON_NULL:
    default: jv->kind = TP__JV_NULL; break;
    }
}

void
tp__env_from_json(tp__env *env, const json_t *msg)
{
    memset(env->owned, 0, sizeof env->owned);
    for (int i = 0; i < TP__M_COUNT; i++)
        tp__jv_from_json(&env->m[i], json_object_get(msg, tp__env_names[i]));
}

void
tp__text_clear(tp__text *t)
{
    for (size_t k = 0; k < t->n; k++)
        for (int i = 0; i < TP__M_COUNT; i++)
            json_decref(t->msgs[k].owned[i]);
    if (t->msgs != &t->one)
        tp__free(t->msgs);
    if (t->arena != t->small)
        tp__free(t->arena);
    t->arena = NULL;
    t->msgs = &t->one;
    t->n = 0;
    t->cap = 1;
    memset(&t->one, 0, sizeof t->one);
}
