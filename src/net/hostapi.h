/*
 * The host HTTP API (HOST-API.md) on the server's listener: /v1/... routes,
 * the admin token, bodies, JSON errors. The operations themselves are the
 * core's (core/hostops.h); this file only speaks HTTP.
 */
#ifndef TP_NET_HOSTAPI_H
#define TP_NET_HOSTAPI_H

#include <libwebsockets.h>

#include "core/hostops.h"
#include "transports.h"

typedef struct tp__apireq tp__apireq;
typedef struct tp__hostapi tp__hostapi;

/*
 * tp__server_host_api turns the API on: token is the admin token (copied;
 * never logged), host the registry the daemon built (the server takes it
 * and frees it). Without this call every /v1/ path answers 404, the API's
 * description included. Returns TP_OK or TP_ENOMEM.
 */
int tp__server_host_api(tp_server *s, const char *token, tp__host *host);

/* tp__hostapi_claims says whether a path is the API's (/v1 and below). */
int tp__hostapi_claims(const char *uri);
/* The lws callbacks of an API request: its head, its body, its end. */
int tp__hostapi_http(tp_server *s, struct lws *wsi, void *user, const char *uri);
int tp__hostapi_body(tp_server *s, struct lws *wsi, void *user, const void *in, size_t len);
int tp__hostapi_body_done(tp_server *s, struct lws *wsi, void *user);
/* tp__hostapi_gone frees what a wsi still holds of a request. */
void tp__hostapi_gone(void *user);
/* Answers whose change became durable (or whose commit failed) are
 * written: the server calls it when the hub released more (loop thread). */
void tp__hostapi_durable(tp_server *s);
/* LWS_CALLBACK_HTTP_WRITEABLE: writes an answer that waited. */
int tp__hostapi_writeable(tp_server *s, struct lws *wsi, void *user);
void tp__hostapi_free(tp__hostapi *api);

/* tp__hostapi_metrics appends the host API's and the webhooks' counters to
 * /metrics (Prometheus text). */
struct tp__sb;
void tp__hostapi_metrics(tp_server *s, struct tp__sb *sb);

/* The API's OpenAPI 3.1 description: src/net/openapi.json, compiled in by
 * CMakeLists.txt and served as is. */
extern const unsigned char tp__hostapi_openapi[];
extern const size_t tp__hostapi_openapi_len;

#endif /* TP_NET_HOSTAPI_H */
