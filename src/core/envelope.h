/*
 * The envelope of a client message: the top-level members the hub reads
 * (type, ref, scope, id, ...), taken from the text without building a
 * jansson tree for the message. Only the members whose values are objects
 * or arrays (a write's patch, a ts, a resume's list) become jansson values,
 * each parsed from its own span of the text.
 *
 * The scanner takes the common shape of a message (an object, or a batch
 * array of objects; members the hub knows, strings without escapes,
 * integers) and answers TP__ENV_OTHER
 * for anything else: the caller then parses the text with jansson as it
 * always did and fills an envelope from the tree (tp__env_from_json), so
 * every refusal (not JSON, duplicate members, bad UTF-8 or escapes, depth,
 * trailing bytes, numbers out of range) keeps jansson's exact message. The
 * scanner never accepts what jansson refuses (tests/fuzz/fuzz_envelope.c
 * checks that, and that both give the same members).
 */
#ifndef TP_CORE_ENVELOPE_H
#define TP_CORE_ENVELOPE_H

#include <stddef.h>

#include <jansson.h>

/*
 * The members the hub reads, the one place to add one: a new message type
 * adds the members it reads here (and a branch to conn.c's handle_message).
 * A member not listed sends its message down the jansson path, which
 * ignores it, as PROTOCOL.md says of unknown members.
 */
#define TP__ENV_MEMBERS(X)                                                                         \
    X(type)                                                                                        \
    X(ref)                                                                                         \
    X(scope)                                                                                       \
    X(id)                                                                                          \
    X(ts)                                                                                          \
    X(patch)                                                                                       \
    X(models)                                                                                      \
    X(client)                                                                                      \
    X(token)                                                                                       \
    X(state)

enum {
#define TP__ENV_ENUM(name) TP__M_##name,
    TP__ENV_MEMBERS(TP__ENV_ENUM)
#undef TP__ENV_ENUM
        TP__M_COUNT
};

/* A member's kind; 0 (absent) so that a zeroed envelope has no members. */
typedef enum {
    TP__JV_ABSENT = 0,
    TP__JV_OBJECT,
    TP__JV_ARRAY,
    TP__JV_STRING,
    TP__JV_INTEGER,
    TP__JV_REAL,
    TP__JV_TRUE,
    TP__JV_FALSE,
    TP__JV_NULL
} tp__jv_kind;

/* One member's value. */
typedef struct tp__jv {
    tp__jv_kind kind;
    const char *str; /* TP__JV_STRING: NUL-terminated, no NUL inside */
    size_t len;      /* TP__JV_STRING: bytes */
    json_int_t num;  /* TP__JV_INTEGER */
    json_t *json;    /* TP__JV_OBJECT, TP__JV_ARRAY (a borrowed reference) */
} tp__jv;

/* One message's envelope. */
typedef struct tp__env {
    tp__jv m[TP__M_COUNT];
    json_t *owned[TP__M_COUNT]; /* values parsed by the scanner, released with the text */
} tp__env;

#define TP__ENV_SMALL 256

/* The envelopes of one text: a message, or a batch (an array of them). */
typedef struct tp__text {
    tp__env *msgs; /* n envelopes, in order */
    size_t n;
    int batch; /* the text was an array */
    size_t cap;
    tp__env one; /* msgs when the text is one message */
    char *arena; /* the decoded strings: small, or an allocation */
    char small[TP__ENV_SMALL];
} tp__text;

#define TP__ENV_OK 0
#define TP__ENV_OTHER 1

/* tp__env_scan reads one text (a message or a batch of messages):
 * TP__ENV_OK, or TP__ENV_OTHER (t then holds nothing: parse the text with
 * jansson). Release an OK text with tp__text_clear. */
int tp__env_scan(tp__text *t, const char *text, size_t len);
void tp__text_clear(tp__text *t);
/* tp__env_from_json fills env from a parsed message object (borrowing from
 * it: nothing to release). */
void tp__env_from_json(tp__env *env, const json_t *msg);
/* tp__jv_from_json describes a jansson value (NULL: absent), borrowing from it. */
void tp__jv_from_json(tp__jv *jv, const json_t *v);

/* The member names, in TP__ENV_MEMBERS order. */
extern const char *const tp__env_names[TP__M_COUNT];

#endif /* TP_CORE_ENVELOPE_H */
