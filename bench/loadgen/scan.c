/*
 * A JSON scanner for the few fields the load generator reads. The server's
 * frames are compact JSON, but nothing here relies on member order or on the
 * absence of whitespace: every value is skipped by its own grammar. jansson
 * would build a tree per message, and at millions of deliveries a second on
 * one core the load generator must stay cheaper than the server it measures.
 */
#include <string.h>

#include "loadgen.h"

typedef struct cur {
    const char *p, *end;
} cur;

static void
ws(cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int
str(cur *c, const char **s, size_t *n)
{
    if (c->p >= c->end || *c->p != '"')
        return -1;
    const char *b = ++c->p;
    for (;;) {
        /* memchr: the load generator's hottest loop is finding quotes. */
        const char *q = memchr(c->p, '"', (size_t)(c->end - c->p));
        if (q == NULL)
            return -1;
        size_t bs = 0; /* an odd run of backslashes escapes the quote */
        while (q - bs > b && q[-1 - (long)bs] == '\\')
            bs++;
        c->p = q + 1;
        if (bs % 2 == 0) {
            *s = b;
            *n = (size_t)(q - b);
            return 0;
        }
    }
}

/* An integer; a number with a fraction or exponent is read up to it and
 * reported as not an integer (1). */
static int
num(cur *c, int64_t *v)
{
    int neg = 0;
    if (c->p < c->end && *c->p == '-') {
        neg = 1;
        c->p++;
    }
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return -1;
    int64_t x = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        x = x * 10 + (*c->p++ - '0');
    int frac = 0;
    while (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E' || *c->p == '+' ||
                             *c->p == '-' || (*c->p >= '0' && *c->p <= '9'))) {
        frac = 1;
        c->p++;
    }
    *v = neg ? -x : x;
    return frac;
}

static int
skip(cur *c)
{
    ws(c);
    if (c->p >= c->end)
        return -1;
    const char *s;
    size_t n;
    switch (*c->p) {
    case '"':
        return str(c, &s, &n);
    case '{':
    case '[': {
        int depth = 0;
        while (c->p < c->end) {
            char ch = *c->p;
            if (ch == '"') {
                if (str(c, &s, &n) != 0)
                    return -1;
                continue;
            }
            c->p++;
            if (ch == '{' || ch == '[')
                depth++;
            else if ((ch == '}' || ch == ']') && --depth == 0)
                return 0;
        }
        return -1;
    }
    default:
        while (c->p < c->end && *c->p != ',' && *c->p != '}' && *c->p != ']' && *c->p != ' ' &&
               *c->p != '\n' && *c->p != '\r' && *c->p != '\t')
            c->p++;
        return 0;
    }
}

static int
is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static int
type_of(const char *s, size_t n)
{
    if (is(s, n, "patch"))
        return LG_PATCH;
    if (is(s, n, "ack"))
        return LG_ACK;
    if (is(s, n, "write"))
        return LG_WRITE;
    if (is(s, n, "snapshot"))
        return LG_SNAPSHOT;
    if (is(s, n, "synced"))
        return LG_SYNCED;
    if (is(s, n, "hello"))
        return LG_HELLO;
    if (is(s, n, "error"))
        return LG_ERROR;
    return LG_OTHER;
}

/* Calls member(c, key) for each member of the object at c; member reads the
 * value or returns 1 to have it skipped. */
typedef int (*member_fn)(cur *c, const char *k, size_t kn, lg_msg *m);

static int
object(cur *c, member_fn member, lg_msg *m)
{
    ws(c);
    if (c->p >= c->end || *c->p != '{')
        return -1;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 0;
    }
    for (;;) {
        const char *k;
        size_t kn;
        ws(c);
        if (str(c, &k, &kn) != 0)
            return -1;
        ws(c);
        if (c->p >= c->end || *c->p != ':')
            return -1;
        c->p++;
        ws(c);
        int rc = member(c, k, kn, m);
        if (rc < 0 || (rc > 0 && skip(c) != 0))
            return -1;
        ws(c);
        if (c->p >= c->end)
            return -1;
        if (*c->p == '}') {
            c->p++;
            return 0;
        }
        if (*c->p++ != ',')
            return -1;
    }
}

static int
patch_member(cur *c, const char *k, size_t kn, lg_msg *m)
{
    (void)k;
    (void)kn;
    if (m->ts >= 0 || c->p >= c->end || (*c->p != '-' && (*c->p < '0' || *c->p > '9')))
        return 1;
    int64_t v;
    if (num(c, &v) != 0)
        return 1;
    m->ts = v;
    return 0;
}

static int
msg_member(cur *c, const char *k, size_t kn, lg_msg *m)
{
    const char *s;
    size_t n;
    switch (kn) {
    case 2:
        return 1;
    case 3:
        if (is(k, kn, "rev"))
            return num(c, &m->rev) == 0 ? 0 : -1;
        if (is(k, kn, "ref"))
            return num(c, &m->ref) == 0 ? 0 : -1;
        return 1;
    case 4:
        if (is(k, kn, "type")) {
            if (str(c, &s, &n) != 0)
                return -1;
            m->type = type_of(s, n);
            return 0;
        }
        if (is(k, kn, "from"))
            return num(c, &m->from) == 0 ? 0 : -1;
        if (is(k, kn, "code"))
            return str(c, &m->code, &m->code_len);
        return 1;
    case 5:
        if (is(k, kn, "patch"))
            return c->p < c->end && *c->p == '{' ? object(c, patch_member, m) : 1;
        return 1;
    case 7:
        if (is(k, kn, "message"))
            return str(c, &m->message, &m->message_len);
        return 1;
    default:
        return 1;
    }
}

static int
one(cur *c, lg_msg_fn fn, void *user)
{
    lg_msg m = {LG_OTHER, -1, -1, -1, -1, NULL, 0, NULL, 0};
    if (object(c, msg_member, &m) != 0)
        return -1;
    fn(&m, user);
    return 0;
}

int
lg_scan_frame(const char *p, size_t n, lg_msg_fn fn, void *user)
{
    cur c = {p, p + n};
    ws(&c);
    if (c.p >= c.end)
        return -1;
    if (*c.p == '{')
        return one(&c, fn, user);
    if (*c.p != '[')
        return -1;
    c.p++;
    for (;;) {
        ws(&c);
        if (c.p < c.end && *c.p == ']')
            return 0;
        if (one(&c, fn, user) != 0)
            return -1;
        ws(&c);
        if (c.p < c.end && *c.p == ',')
            c.p++;
        else if (c.p < c.end && *c.p == ']')
            return 0;
        else
            return -1;
    }
}
