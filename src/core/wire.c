/*
 * The messages the hub sends (wire.h). Built by appending pieces: integers
 * with tp__sb_int, strings with tp__wire_string, values (a snapshot's, a
 * patch's) with jansson's encoder, so a message costs its buffer and no
 * jansson tree. tp__wire_value writes the bytes jansson's encoder writes
 * without its fixed costs (a set of the parents and a snprintf per
 * container, a snprintf per integer): the journal encodes a model's whole
 * value at every seal with it.
 */
#include "core/wire.h"

#include <string.h>

#include "util/alloc.h"

/* json_dump_callback target: append to a builder. */
static int
dump_to_sb(const char *buffer, size_t size, void *data)
{
    tp__sb *sb = data;
    tp__sb_append(sb, buffer, size);
    return sb->failed ? -1 : 0;
}

static void
sb_json(tp__sb *sb, const json_t *v)
{
    if (sb->failed)
        return;
    if (json_dump_callback(v, dump_to_sb, sb, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
        sb->failed = 1;
}

void
tp__wire_string(tp__sb *sb, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    tp__sb_append(sb, "\"", 1);
    size_t run = 0; /* bytes copied as they are, appended in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        tp__sb_append(sb, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t len = 2;
        switch (ch) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default: /* as jansson writes the other controls: \u00XX */
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 0xF];
            len = 6;
        }
        tp__sb_append(sb, esc, len);
    }
    tp__sb_append(sb, s + run, n - run);
    tp__sb_append(sb, "\"", 1);
}

void
tp__wire_value(tp__sb *sb, const json_t *v)
{
    if (sb->failed)
        return;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        tp__sb_append(sb, "{", 1);
        int first = 1;
        for (void *it = json_object_iter((json_t *)v); it != NULL;
             it = json_object_iter_next((json_t *)v, it)) {
            if (!first)
                tp__sb_append(sb, ",", 1);
            first = 0;
            tp__wire_string(sb, json_object_iter_key(it), json_object_iter_key_len(it));
            tp__sb_append(sb, ":", 1);
            tp__wire_value(sb, json_object_iter_value(it));
        }
        tp__sb_append(sb, "}", 1);
        return;
    }
    case JSON_ARRAY: {
        tp__sb_append(sb, "[", 1);
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                tp__sb_append(sb, ",", 1);
            tp__wire_value(sb, json_array_get(v, i));
        }
        tp__sb_append(sb, "]", 1);
        return;
    }
    case JSON_STRING: tp__wire_string(sb, json_string_value(v), json_string_length(v)); return;
    case JSON_INTEGER: tp__sb_int(sb, (int64_t)json_integer_value(v)); return;
    case JSON_TRUE: tp__sb_append(sb, "true", 4); return;
    case JSON_FALSE: tp__sb_append(sb, "false", 5); return;
    case JSON_NULL: tp__sb_append(sb, "null", 4); return;
    default:
        /* A real: jansson's own text for it (its "%.17g" with the point
         * kept and the exponent trimmed), so that both encoders agree. */
        sb_json(sb, v);
        return;
    }
}

char *
tp__wire_addr(int shared, const char *id, size_t *len)
{
    tp__sb sb;
    size_t n = strlen(id);
    tp__sb_init(&sb, 32 + n);
    tp__sb_puts(&sb, shared ? "\"scope\":\"shared\",\"id\":" : "\"scope\":\"private\",\"id\":");
    tp__wire_string(&sb, id, n);
    tp__buf *b = tp__sb_finish(&sb);
    if (b == NULL)
        return NULL;
    char *addr = tp__strndup(b->data, b->len);
    *len = b->len;
    tp__buf_unref(b);
    return addr;
}

tp__buf *
tp__wire_hello(const char *tenant_json, const char *conn, int64_t tick_ms,
               int64_t max_message_bytes)
{
    tp__sb sb;
    tp__sb_init(&sb, 128 + strlen(tenant_json));
    tp__sb_puts(&sb, "{\"type\":\"hello\",\"protocol\":1,\"tenant\":");
    tp__sb_puts(&sb, tenant_json);
    tp__sb_puts(&sb, ",\"conn\":\"");
    tp__sb_puts(&sb, conn); /* c<16 hex digits>: nothing to escape */
    tp__sb_puts(&sb, "\",\"tick_ms\":");
    tp__sb_int(&sb, tick_ms);
    tp__sb_puts(&sb, ",\"max_message_bytes\":");
    tp__sb_int(&sb, max_message_bytes);
    tp__sb_puts(&sb, "}");
    return tp__sb_finish(&sb);
}

tp__buf *
tp__wire_synced(void)
{
    static const char text[] = "{\"type\":\"synced\"}";
    return tp__buf_copy(text, sizeof text - 1);
}

tp__buf *
tp__wire_pong(json_int_t ref)
{
    tp__sb sb;
    tp__sb_init(&sb, 48);
    tp__sb_puts(&sb, "{\"type\":\"pong\",\"ref\":");
    tp__sb_int(&sb, ref);
    tp__sb_puts(&sb, "}");
    return tp__sb_finish(&sb);
}

tp__buf *
tp__wire_error(int has_ref, json_int_t ref, const char *code, const char *message)
{
    size_t n = strlen(message);
    tp__sb sb;
    tp__sb_init(&sb, 64 + n + n / 8);
    tp__sb_puts(&sb, "{\"type\":\"error\"");
    if (has_ref) {
        tp__sb_puts(&sb, ",\"ref\":");
        tp__sb_int(&sb, ref);
    }
    tp__sb_puts(&sb, ",\"code\":");
    tp__wire_string(&sb, code, strlen(code));
    tp__sb_puts(&sb, ",\"message\":");
    tp__wire_string(&sb, message, n);
    tp__sb_puts(&sb, "}");
    return tp__sb_finish(&sb);
}

tp__buf *
tp__wire_ack(tp__buf *room, json_int_t ref, const char *addr, size_t addr_len, int64_t rev,
             int64_t from)
{
    tp__sb sb = {room, 0};
    room->len = 0;
    tp__sb_puts(&sb, "{\"type\":\"ack\",\"ref\":");
    tp__sb_int(&sb, ref);
    tp__sb_append(&sb, ",", 1);
    tp__sb_append(&sb, addr, addr_len);
    tp__sb_puts(&sb, ",\"rev\":");
    tp__sb_int(&sb, rev);
    if (from >= 0) {
        tp__sb_puts(&sb, ",\"from\":");
        tp__sb_int(&sb, from);
    }
    tp__sb_puts(&sb, "}");
    return tp__sb_finish(&sb);
}

tp__buf *
tp__wire_auth_ack(int has_ref, json_int_t ref)
{
    tp__sb sb;
    tp__sb_init(&sb, 48);
    tp__sb_puts(&sb, "{\"type\":\"ack\"");
    if (has_ref) {
        tp__sb_puts(&sb, ",\"ref\":");
        tp__sb_int(&sb, ref);
    }
    tp__sb_puts(&sb, "}");
    return tp__sb_finish(&sb);
}

tp__buf *
tp__wire_snapshot(const char *addr, size_t addr_len, const char *schema_title, int64_t rev,
                  tp_access access, const json_t *value)
{
    tp__sb sb;
    tp__sb_init(&sb, 128);
    tp__sb_puts(&sb, "{\"type\":\"snapshot\",");
    tp__sb_append(&sb, addr, addr_len);
    tp__sb_puts(&sb, ",\"schema\":");
    tp__wire_string(&sb, schema_title, strlen(schema_title));
    tp__sb_puts(&sb, ",\"rev\":");
    tp__sb_int(&sb, rev);
    tp__sb_puts(&sb, access == TP_WRITE ? ",\"access\":\"write\",\"value\":"
                                        : ",\"access\":\"read\",\"value\":");
    sb_json(&sb, value);
    tp__sb_puts(&sb, "}");
    return tp__sb_finish(&sb);
}

tp__buf *
tp__wire_patch(const char *addr, size_t addr_len, int64_t from, const json_t *patch,
               const char *origin)
{
    tp__sb sb;
    tp__sb_init(&sb, 96 + addr_len);
    tp__sb_puts(&sb, "{\"type\":\"patch\",");
    tp__sb_append(&sb, addr, addr_len);
    tp__sb_puts(&sb, ",\"from\":");
    tp__sb_int(&sb, from);
    tp__sb_puts(&sb, ",\"rev\":");
    tp__sb_int(&sb, from + 1);
    tp__sb_puts(&sb, ",\"patch\":");
    sb_json(&sb, patch);
    tp__sb_puts(&sb, ",\"origin\":\"");
    tp__sb_puts(&sb, origin); /* a conn id or "host": nothing to escape */
    tp__sb_puts(&sb, "\"}");
    return tp__sb_finish(&sb);
}

/* A message of a model that says nothing but its address and a tail. */
static tp__buf *
addressed(const char *head, const char *addr, size_t addr_len, const char *tail)
{
    tp__sb sb;
    tp__sb_init(&sb, 64 + addr_len);
    tp__sb_puts(&sb, head);
    tp__sb_append(&sb, addr, addr_len);
    tp__sb_puts(&sb, tail);
    return tp__sb_finish(&sb);
}

tp__buf *
tp__wire_removed(const char *addr, size_t addr_len)
{
    return addressed("{\"type\":\"removed\",", addr, addr_len, "}");
}

tp__buf *
tp__wire_removed_id(int shared, const char *id, size_t id_len)
{
    tp__sb sb;
    tp__sb_init(&sb, 64 + id_len);
    tp__sb_puts(&sb, shared ? "{\"type\":\"removed\",\"scope\":\"shared\",\"id\":"
                            : "{\"type\":\"removed\",\"scope\":\"private\",\"id\":");
    tp__wire_string(&sb, id, id_len);
    tp__sb_puts(&sb, "}");
    return tp__sb_finish(&sb);
}

tp__buf *
tp__wire_access(const char *addr, size_t addr_len, tp_access access)
{
    return addressed("{\"type\":\"access\",", addr, addr_len,
                     access == TP_WRITE ? ",\"access\":\"write\"}" : ",\"access\":\"read\"}");
}
