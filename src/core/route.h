/*
 * Routes and query strings: how a handshake's request line becomes the
 * tp_request the key function reads. Pure string work, so the server (net)
 * and any other transport share it and it is tested without sockets.
 *
 * A route is a path pattern whose segments are literals or `{name}`
 * parameters matching one non-empty segment: "/ws/{tenant}",
 * "/t/{org}/{tenant}". Matching is exact (no prefix match), a trailing
 * slash is not ignored, and parameters are percent-decoded.
 */
#ifndef TP_CORE_ROUTE_H
#define TP_CORE_ROUTE_H

#include "transports.h"

typedef struct tp__route tp__route;

/* tp__route_new compiles a pattern. NULL with TP_EARG (and the reason in
 * err) for a pattern that does not start with '/', has an empty, unclosed
 * or repeated parameter name, or mixes text and a parameter in a segment. */
tp__route *tp__route_new(const char *pattern, tp_error *err);
void tp__route_free(tp__route *route);

/*
 * tp__route_match matches a path (without its query) and, on a match, sets
 * each parameter on req (decoded). Returns TP_OK, TP_ENOTFOUND (no match:
 * HTTP 404), or TP_ENOMEM.
 */
int tp__route_match(const tp__route *route, const char *path, tp_request *req);

/*
 * tp__route_match_decoded is tp__route_match for a path its transport has
 * already percent-decoded (libwebsockets decodes the request line): the
 * parameters are taken as they are, so that each is decoded exactly once
 * ("/ws/%2562ob" must not name "bob").
 */
int tp__route_match_decoded(const tp__route *route, const char *path, tp_request *req);

/*
 * tp__query_parse sets every parameter of a query string ("a=1&b=x%20y",
 * without the '?') on req, decoded ('+' is a space). A name without '=' gets
 * the empty value; when a name repeats, the first value wins. Returns TP_OK,
 * TP_EBADREQUEST (a bad percent escape, or a decoded NUL), or TP_ENOMEM.
 */
int tp__query_parse(const char *query, tp_request *req);

/* tp__percent_decode decodes n bytes of src into dst (room for n + 1
 * bytes); plus_space turns '+' into ' '. Returns the decoded length, or -1
 * for a bad escape or a decoded NUL. */
long tp__percent_decode(const char *src, size_t n, char *dst, int plus_space);

/*
 * tp__header_fn looks a header up for a request: writes its value (NUL
 * terminated, cut to n - 1 bytes) to buf and returns 0, or returns -1 when
 * the header is absent.
 */
typedef int (*tp__header_fn)(void *user, const char *name, char *buf, size_t n);

/* tp__request_set_lookup makes tp_request_header ask fn for headers that
 * were not set. */
void tp__request_set_lookup(tp_request *req, tp__header_fn fn, void *user);

#endif /* TP_CORE_ROUTE_H */
