/*
 * The handshake as the key function sees it: the route's path parameters,
 * the decoded query and the headers. The built-in server fills one per
 * handshake; other transports and tests make their own.
 */
#include <string.h>
#include <strings.h>

#include "core/route.h"
#include "util/alloc.h"

typedef struct pair {
    char *name;
    char *value;
} pair;

typedef struct pairs {
    pair *items;
    size_t len, cap;
} pairs;

struct tp_request {
    char *path;
    pairs params, query, headers;
    /* A transport's header lookup, asked for headers not set: the server
     * reads only the headers the key function asks for. */
    tp__header_fn lookup;
    void *lookup_user;
};

static void
pairs_free(pairs *p)
{
    for (size_t i = 0; i < p->len; i++) {
        tp__free(p->items[i].name);
        tp__free(p->items[i].value);
    }
    tp__free(p->items);
}

static const char *
pairs_get(const pairs *p, const char *name, int nocase)
{
    for (size_t i = 0; i < p->len; i++)
        if ((nocase ? strcasecmp : strcmp)(p->items[i].name, name) == 0)
            return p->items[i].value;
    return NULL;
}

static int
pairs_set(pairs *p, const char *name, const char *value, int nocase)
{
    if (name == NULL || value == NULL)
        return TP_EARG;
    char *v = tp__strdup(value);
    if (v == NULL)
        return TP_ENOMEM;
    for (size_t i = 0; i < p->len; i++) {
        if ((nocase ? strcasecmp : strcmp)(p->items[i].name, name) == 0) {
            tp__free(p->items[i].value);
            p->items[i].value = v;
            return TP_OK;
        }
    }
    if (p->len == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 4;
        pair *items = tp__reallocarray(p->items, cap, sizeof *items);
        if (items == NULL) {
            tp__free(v);
            return TP_ENOMEM;
        }
        p->items = items;
        p->cap = cap;
    }
    char *n = tp__strdup(name);
    if (n == NULL) {
        tp__free(v);
        return TP_ENOMEM;
    }
    p->items[p->len].name = n;
    p->items[p->len].value = v;
    p->len++;
    return TP_OK;
}

TP_API tp_request *
tp_request_new(const char *path)
{
    tp_request *req = tp__calloc(1, sizeof *req);
    if (req == NULL)
        return NULL;
    req->path = tp__strdup(path ? path : "/");
    if (req->path == NULL) {
        tp__free(req);
        return NULL;
    }
    return req;
}

TP_API void
tp_request_free(tp_request *req)
{
    if (req == NULL)
        return;
    pairs_free(&req->params);
    pairs_free(&req->query);
    pairs_free(&req->headers);
    tp__free(req->path);
    tp__free(req);
}

TP_API const char *
tp_request_path(const tp_request *req)
{
    return req->path;
}

TP_API const char *
tp_request_path_param(const tp_request *req, const char *name)
{
    return pairs_get(&req->params, name, 0);
}

TP_API const char *
tp_request_query(const tp_request *req, const char *name)
{
    return pairs_get(&req->query, name, 0);
}

TP_API const char *
tp_request_header(const tp_request *req, const char *name)
{
    /* HTTP header names are case-insensitive (RFC 9110, 5.1). */
    const char *v = pairs_get(&req->headers, name, 1);
    if (v != NULL || req->lookup == NULL || name == NULL)
        return v;
    char buf[4096];
    if (req->lookup(req->lookup_user, name, buf, sizeof buf) != 0)
        return NULL;
    /* Kept, so the pointer lives as long as the request (and the next ask
     * is answered here). The request is the transport's own: caching in it
     * does not change what it says. */
    tp_request *r = (tp_request *)req;
    if (pairs_set(&r->headers, name, buf, 1) != TP_OK)
        return NULL;
    return pairs_get(&r->headers, name, 1);
}

void
tp__request_set_lookup(tp_request *req, tp__header_fn fn, void *user)
{
    req->lookup = fn;
    req->lookup_user = user;
}

TP_API int
tp_request_set_path_param(tp_request *req, const char *name, const char *value)
{
    return pairs_set(&req->params, name, value, 0);
}

TP_API int
tp_request_set_query(tp_request *req, const char *name, const char *value)
{
    return pairs_set(&req->query, name, value, 0);
}

TP_API int
tp_request_set_header(tp_request *req, const char *name, const char *value)
{
    return pairs_set(&req->headers, name, value, 1);
}
