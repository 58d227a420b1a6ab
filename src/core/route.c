/* Routes and query strings (route.h). */
#include "core/route.h"

#include <string.h>

#include "util/alloc.h"
#include "util/error.h"

typedef struct segment {
    char *text; /* a literal, or the parameter's name */
    int param;
} segment;

struct tp__route {
    segment *segs;
    size_t n;
};

long
tp__percent_decode(const char *src, size_t n, char *dst, int plus_space)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = src[i];
        if (ch == '%') {
            if (i + 2 >= n || tp__hex_digit(src[i + 1]) < 0 || tp__hex_digit(src[i + 2]) < 0)
                return -1;
            ch = (char)(tp__hex_digit(src[i + 1]) * 16 + tp__hex_digit(src[i + 2]));
            if (ch == '\0')
                return -1; /* a NUL would cut the C string short */
            i += 2;
        } else if (ch == '+' && plus_space) {
            ch = ' ';
        }
        dst[o++] = ch;
    }
    dst[o] = '\0';
    return (long)o;
}

void
tp__route_free(tp__route *route)
{
    if (route == NULL)
        return;
    for (size_t i = 0; i < route->n; i++)
        tp__free(route->segs[i].text);
    tp__free(route->segs);
    tp__free(route);
}

tp__route *
tp__route_new(const char *pattern, tp_error *err)
{
    if (pattern == NULL || pattern[0] != '/') {
        tp__error_set(err, TP_EARG, "route: must start with '/'");
        return NULL;
    }
    tp__route *r = tp__calloc(1, sizeof *r);
    size_t cap = 1;
    for (const char *p = pattern + 1; *p; p++)
        cap += *p == '/';
    if (r == NULL || (r->segs = tp__calloc(cap, sizeof *r->segs)) == NULL) {
        tp__free(r);
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    const char *p = pattern + 1;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        segment *s = &r->segs[r->n];
        int param = len >= 2 && p[0] == '{' && p[len - 1] == '}';
        if (!param && (memchr(p, '{', len) || memchr(p, '}', len))) {
            tp__error_set(err, TP_EARG,
                          "route: a parameter is a whole segment, \"{name}\", in \"%s\"", pattern);
            goto fail;
        }
        if (param && len == 2) {
            tp__error_set(err, TP_EARG, "route: a parameter without a name in \"%s\"", pattern);
            goto fail;
        }
        s->param = param;
        s->text = param ? tp__strndup(p + 1, len - 2) : tp__strndup(p, len);
        if (s->text == NULL) {
            tp__error_set(err, TP_ENOMEM, "out of memory");
            goto fail;
        }
        r->n++;
        for (size_t i = 0; param && i + 1 < r->n; i++) {
            if (r->segs[i].param && strcmp(r->segs[i].text, s->text) == 0) {
                tp__error_set(err, TP_EARG, "route: the parameter \"%s\" appears twice", s->text);
                goto fail;
            }
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    return r;
fail:
    tp__route_free(r);
    return NULL;
}

static int
match(const tp__route *route, const char *path, tp_request *req, int decode)
{
    if (path == NULL || path[0] != '/')
        return TP_ENOTFOUND;
    /* Decode every parameter first and set them only on a whole match: a
     * path that does not match leaves req untouched. */
    char **values = tp__calloc(route->n, sizeof *values);
    if (values == NULL)
        return TP_ENOMEM;
    int rc = TP_OK;
    const char *p = path + 1;
    for (size_t i = 0; rc == TP_OK && i < route->n; i++) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const segment *s = &route->segs[i];
        if ((end == NULL) != (i + 1 == route->n))
            rc = TP_ENOTFOUND; /* the path has fewer or more segments */
        else if (!s->param && (len != strlen(s->text) || memcmp(p, s->text, len) != 0))
            rc = TP_ENOTFOUND;
        else if (s->param && len == 0)
            rc = TP_ENOTFOUND;
        else if (s->param && (values[i] = tp__malloc(len + 1)) == NULL)
            rc = TP_ENOMEM;
        else if (s->param && decode && tp__percent_decode(p, len, values[i], 0) < 0)
            rc = TP_ENOTFOUND;
        else if (s->param && !decode) {
            memcpy(values[i], p, len);
            values[i][len] = '\0';
        }
        if (end != NULL)
            p = end + 1;
    }
    for (size_t i = 0; rc == TP_OK && i < route->n; i++)
        if (route->segs[i].param)
            rc = tp_request_set_path_param(req, route->segs[i].text, values[i]);
    for (size_t i = 0; i < route->n; i++)
        tp__free(values[i]);
    tp__free(values);
    return rc;
}

int
tp__route_match(const tp__route *route, const char *path, tp_request *req)
{
    return match(route, path, req, 1);
}

int
tp__route_match_decoded(const tp__route *route, const char *path, tp_request *req)
{
    return match(route, path, req, 0);
}

int
tp__query_parse(const char *query, tp_request *req)
{
    if (query == NULL)
        return TP_OK;
    const char *p = query;
    while (*p != '\0') {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t nlen = eq ? (size_t)(eq - p) : len;
        size_t vlen = eq ? len - nlen - 1 : 0;
        if (nlen > 0) {
            char *name = tp__malloc(nlen + 1), *value = tp__malloc(vlen + 1);
            int rc = name && value ? TP_OK : TP_ENOMEM;
            if (rc == TP_OK && (tp__percent_decode(p, nlen, name, 1) < 0 ||
                                tp__percent_decode(eq ? eq + 1 : "", vlen, value, 1) < 0))
                rc = TP_EBADREQUEST;
            /* The first value of a repeated name wins: a proxy or a client
             * appending ?token=... cannot be overridden by a later copy. */
            if (rc == TP_OK && tp_request_query(req, name) == NULL)
                rc = tp_request_set_query(req, name, value);
            tp__free(name);
            tp__free(value);
            if (rc != TP_OK)
                return rc;
        }
        p += len + (amp != NULL);
    }
    return TP_OK;
}
