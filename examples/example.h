/*
 * example.h: the few helpers the guide's examples share. They only print and
 * check; read the examples themselves for the API.
 *
 * The examples play both ends of a WebSocket without opening one. The hub
 * attaches one connection per client (tp_conn_open), takes the text of each
 * frame a client sends (tp_conn_feed) and hands out the frames to send back
 * (tp_conn_next_frame). That is what the built-in server does with real
 * sockets, so the lines these programs print are the messages a client of
 * `transportsd` receives:
 *
 *     alice/c1 -> {"type":"write",...}     a client (tenant alice, connection c1) sends
 *     alice/c1 <- {"type":"ack",...}       that client receives
 *
 * A frame holds one message or a batch of them (a JSON array): they are
 * printed one message a line either way.
 *
 * A connection's id is `c` and 16 hex digits that tell nothing of how many
 * connections there were (a keyed permutation of the count, with a key
 * that changes from run to run): the examples print them as c1, c2... in
 * the order the connections were opened, so that their output is the same
 * on every run.
 *
 * Each example counts the checks that fail and returns nonzero when anything
 * is not as the guide says; ctest also compares its output with
 * examples/<name>.expected.
 */
#ifndef TP_EXAMPLES_EXAMPLE_H
#define TP_EXAMPLES_EXAMPLE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <transports.h>

/*
 * The guide's model, in every example:
 *
 *     class Document(BaseModel):
 *         title: str
 *         body: str = ""
 *
 * and the JSON Schema that pydantic's Document.model_json_schema() emits for
 * it, which tp_schema_new loads as is.
 */
static const char DOCUMENT_SCHEMA[] =
    "{\"title\": \"Document\", \"type\": \"object\","
    " \"properties\": {\"title\": {\"title\": \"Title\", \"type\": \"string\"},"
    " \"body\": {\"default\": \"\", \"title\": \"Body\", \"type\": \"string\"}},"
    " \"required\": [\"title\"]}";

/* The number of failed checks: main() returns it. */
static int failures;

/* check records one promise of the guide; a broken one is printed and counted. */
static inline void
check(int ok, const char *promise)
{
    if (!ok) {
        printf("NOT AS THE GUIDE SAYS: %s\n", promise);
        failures++;
    }
}

/* is tells whether a JSON object (may be NULL) has a string member with this value. */
static inline int
is(const json_t *object, const char *key, const char *value)
{
    const char *s = json_string_value(json_object_get(object, key));
    return s != NULL && strcmp(s, value) == 0;
}

/* The connection ids seen, in the order their connections were opened. */
static char seen_ids[16][24];
static int n_seen_ids;

/* shown returns how a connection id is printed: c1, c2... */
static inline const char *
shown(const char *id)
{
    static char names[16][16];
    for (int i = 0; i < n_seen_ids; i++)
        if (strcmp(seen_ids[i], id) == 0) {
            snprintf(names[i], sizeof names[i], "c%d", i + 1);
            return names[i];
        }
    return id;
}

/* print_shown prints text with every connection id in it shown as c1, c2... */
static inline void
print_shown(const char *text)
{
    while (*text != '\0') {
        const char *next = NULL;
        int which = -1;
        for (int i = 0; i < n_seen_ids; i++) {
            const char *at = strstr(text, seen_ids[i]);
            if (at != NULL && (next == NULL || at < next)) {
                next = at;
                which = i;
            }
        }
        if (next == NULL) {
            fputs(text, stdout);
            return;
        }
        printf("%.*s%s", (int)(next - text), text, shown(seen_ids[which]));
        text = next + strlen(seen_ids[which]);
    }
}

/* open_client attaches a connection for a tenant, as the server does after a handshake. */
static inline tp_conn *
open_client(tp_hub *hub, const char *tenant)
{
    tp_error err;
    tp_conn *c = tp_conn_open(hub, tenant, 0, &err);
    if (c == NULL) {
        printf("tp_conn_open(%s): %s\n", tenant, err.message);
        failures++;
        exit(failures);
    }
    if (n_seen_ids < 16)
        snprintf(seen_ids[n_seen_ids++], sizeof seen_ids[0], "%s", tp_conn_id(c));
    return c;
}

/* client_send feeds one text frame from a client to the hub, as if it came off the socket. */
static inline void
client_send(tp_conn *c, const char *text)
{
    printf("  %s/%s -> %s\n", tp_conn_tenant(c), shown(tp_conn_id(c)), text);
    if (tp_conn_feed(c, text, strlen(text)) != TP_OK)
        check(0, "the connection stays open");
}

/* before orders snapshots by scope, then id. */
static inline int
before(const json_t *a, const json_t *b)
{
    int by_scope = strcmp(json_string_value(json_object_get(a, "scope")),
                          json_string_value(json_object_get(b, "scope")));
    if (by_scope != 0)
        return by_scope < 0;
    return strcmp(json_string_value(json_object_get(a, "id")),
                  json_string_value(json_object_get(b, "id"))) < 0;
}

/*
 * sort_snapshots sorts each run of consecutive snapshots by scope and id. The
 * protocol leaves the order of the snapshots after hello open, and the hub
 * keeps models in hash maps: sorting makes the output the same on every run.
 */
static inline void
sort_snapshots(json_t *messages)
{
    size_t n = json_array_size(messages);
    for (size_t i = 1; i < n; i++) {
        /* Insertion sort: the runs are short, and it moves only snapshots past snapshots. */
        for (size_t j = i; j > 0; j--) {
            json_t *a = json_array_get(messages, j - 1);
            json_t *b = json_array_get(messages, j);
            if (!is(a, "type", "snapshot") || !is(b, "type", "snapshot") || !before(b, a))
                break;
            json_incref(a);
            json_array_set(messages, j - 1, b);
            json_array_set_new(messages, j, a);
        }
    }
}

/*
 * receive takes every frame waiting for a connection, prints its messages and
 * returns them as one JSON array (json_decref it), so the caller can check
 * them. An empty outbox prints "nothing": that a client learns nothing is
 * often the point.
 */
static inline json_t *
receive(tp_conn *c)
{
    json_t *all = json_array();
    const char *frame;
    size_t len;
    while ((frame = tp_conn_next_frame(c, &len)) != NULL) {
        json_t *msg = json_loadb(frame, len, 0, NULL);
        if (json_is_array(msg))
            json_array_extend(all, msg);
        else if (msg != NULL)
            json_array_append(all, msg);
        else
            check(0, "every frame is JSON");
        json_decref(msg);
    }
    sort_snapshots(all);
    size_t i;
    json_t *msg;
    json_array_foreach(all, i, msg)
    {
        char *text = json_dumps(msg, JSON_COMPACT);
        printf("  %s/%s <- ", tp_conn_tenant(c), shown(tp_conn_id(c)));
        print_shown(text != NULL ? text : "?");
        printf("\n");
        free(text);
    }
    if (json_array_size(all) == 0)
        printf("  %s/%s <- nothing\n", tp_conn_tenant(c), shown(tp_conn_id(c)));
    return all;
}

/* find returns the first message of a type among received ones (borrowed), or NULL. */
static inline const json_t *
find(const json_t *messages, const char *type)
{
    size_t i;
    const json_t *msg;
    json_array_foreach(messages, i, msg)
    {
        if (is(msg, "type", type))
            return msg;
    }
    return NULL;
}

/* count returns how many of the received messages have this type. */
static inline size_t
count(const json_t *messages, const char *type)
{
    size_t i, n = 0;
    const json_t *msg;
    json_array_foreach(messages, i, msg)
    {
        if (is(msg, "type", type))
            n++;
    }
    return n;
}

/* int_of returns an integer member ("rev", "from", "ref"), or -1 when absent. */
static inline json_int_t
int_of(const json_t *object, const char *key)
{
    const json_t *v = json_object_get(object, key);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/*
 * show prints a value the host reads back (tp_session_get, tp_hub_get_shared
 * return JSON text the caller frees), and tells whether its member `key` is
 * the string `value`. It frees the text.
 */
static inline int
show(const char *what, char *text, const char *key, const char *value)
{
    printf("  host reads %s: %s\n", what, text != NULL ? text : "(none)");
    json_t *v = text != NULL ? json_loads(text, 0, NULL) : NULL;
    int ok = is(v, key, value);
    json_decref(v);
    free(text);
    return ok;
}

#endif /* TP_EXAMPLES_EXAMPLE_H */
