/*
 * The messages the hub sends (PROTOCOL.md), each built by one function
 * here and nowhere else, so that their bytes are written in one place.
 * Every builder returns a new buffer (one reference), or NULL when out of
 * memory; none of them reads the hub's structures: a model's part is its
 * address, encoded once per model (tp__wire_addr).
 */
#ifndef TP_CORE_WIRE_H
#define TP_CORE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "transports.h"
#include "util/buf.h"

/* `"scope":"private","id":"<id>"` (or shared): a model's address, the part
 * of its every message that names it. Returns tp__malloc'd text and its
 * length in *len, or NULL. */
char *tp__wire_addr(int shared, const char *id, size_t *len);

/* hello: tenant_json is the tenant key already encoded as a JSON string. */
tp__buf *tp__wire_hello(const char *tenant_json, const char *conn, int64_t tick_ms,
                        int64_t max_message_bytes);
tp__buf *tp__wire_synced(void);
tp__buf *tp__wire_pong(json_int_t ref);
/* error: has_ref says whether the refused message had a usable ref. */
tp__buf *tp__wire_error(int has_ref, json_int_t ref, const char *code, const char *message);

/* The room tp__wire_ack needs for a model of this address length: an ack
 * is allocated before its write is applied, so that nothing can fail once
 * the model has changed. */
#define TP__WIRE_ACK_ROOM(addr_len) (128 + (addr_len))
/* ack of a write, built into room (TP__WIRE_ACK_ROOM bytes, allocates
 * nothing); from < 0: no `from`. */
tp__buf *tp__wire_ack(tp__buf *room, json_int_t ref, const char *addr, size_t addr_len, int64_t rev,
                      int64_t from);
/* ack of an auth message (ref when it had one). */
tp__buf *tp__wire_auth_ack(int has_ref, json_int_t ref);

tp__buf *tp__wire_snapshot(const char *addr, size_t addr_len, const char *schema_title, int64_t rev,
                           tp_access access, const json_t *value);
tp__buf *tp__wire_patch(const char *addr, size_t addr_len, int64_t from, const json_t *patch,
                        const char *origin);
tp__buf *tp__wire_removed(const char *addr, size_t addr_len);
/* removed, for an id a resume listed that names no model (any string). */
tp__buf *tp__wire_removed_id(int shared, const char *id, size_t id_len);
tp__buf *tp__wire_access(const char *addr, size_t addr_len, tp_access access);

/* tp__wire_string appends s (n bytes of UTF-8) as jansson encodes a string
 * (UTF-8 kept, '/' not escaped). */
void tp__wire_string(tp__sb *sb, const char *s, size_t n);
/* tp__wire_value appends v as json_dump_callback(JSON_COMPACT |
 * JSON_ENCODE_ANY) writes it, byte for byte (object members in jansson's
 * order). v must hold no cycle (a model's value: tp__json_size walks it
 * the same way). On failure the builder is marked failed. */
void tp__wire_value(tp__sb *sb, const json_t *v);

#endif /* TP_CORE_WIRE_H */
