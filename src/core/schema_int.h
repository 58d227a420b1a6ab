/*
 * Schemas, inside: the compiled tree shared by schema.c (loading, defaults),
 * schema_check.c (validation and messages) and schema_regex.c (the pattern
 * dialect and the checked formats). See docs/internals/schema.md.
 */
#ifndef TP_CORE_SCHEMA_INT_H
#define TP_CORE_SCHEMA_INT_H

#include <locale.h>
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/schema.h"
#include "util/error.h"

/*
 * Type masks. A JSON number is TP__ST_INT when it has no fraction (1 and
 * 1.0 alike, as JSON Schema says) and TP__ST_REAL otherwise, so "integer" is
 * TP__ST_INT and "number" is both.
 */
enum {
    TP__ST_NULL = 1u << 0,
    TP__ST_BOOL = 1u << 1,
    TP__ST_INT = 1u << 2,
    TP__ST_REAL = 1u << 3,
    TP__ST_STR = 1u << 4,
    TP__ST_ARR = 1u << 5,
    TP__ST_OBJ = 1u << 6,
    TP__ST_NUM = TP__ST_INT | TP__ST_REAL,
    TP__ST_ALL = 0x7fu
};

/* The formats that are checked; every other format is an annotation. */
enum tp__sformat { TP__SF_NONE = 0, TP__SF_DATE_TIME, TP__SF_DATE, TP__SF_TIME, TP__SF_UUID };

struct schema_node;

/* One declared property of an object schema. */
struct schema_prop {
    const char *name; /* borrowed from the schema document */
    struct schema_node *node;
    bool required;
    /* required, yet an absent member passes: its schema accepts null, and an
     * absent member and a null one are the same thing (PROTOCOL.md). */
    bool absent_ok;
};

/* One compiled regex of a pattern. */
struct schema_re {
    regex_t re;
    bool negate;
};

/* One entry of a discriminator's mapping: tag value to branch. */
struct schema_tag {
    const char *tag; /* borrowed */
    struct schema_node *node;
};

/*
 * A compiled subschema. Every keyword is resolved at load: $ref to a node
 * pointer, patterns to compiled regexes, bounds to the document's numbers.
 * Values it points to (enum, const, default, bounds, names) are borrowed
 * from the schema document, which the schema keeps alive and never changes.
 */
struct schema_node {
    struct schema_node *next; /* the schema's list of every node, for freeing */
    const json_t *src;        /* the schema object this node came from (NULL for true/false) */
    char *where;              /* $ref targets only: their path, for load errors */
    unsigned types;           /* from "type": the mask of accepted types */
    unsigned eff;             /* types that can pass at all, with $ref, allOf, anyOf, enum */
    unsigned char mark;       /* load-time depth-first search colour */
    bool never;               /* the false schema */

    const json_t *konst; /* "const" (may be the null value), or NULL */
    const json_t *enums; /* "enum": an array, or NULL */

    struct schema_node *ref; /* "$ref" */
    struct schema_node **all_of, **any_of, **one_of;
    size_t n_all_of, n_any_of, n_one_of;
    const char *discr; /* discriminator.propertyName, or NULL */
    struct schema_tag *tags;
    size_t n_tags;

    /* strings */
    size_t min_len, max_len; /* in code points; max_len SIZE_MAX when absent */
    /* A pattern compiles to one regex, or to one per leading lookahead of
     * "^(?=A)(?!B)C" and one for "^C": all must match (negate: must not). */
    struct schema_re *res;
    size_t n_res;
    const char *pattern; /* the pattern as written, for messages */
    locale_t loc;        /* the locale the regex was compiled in, or 0 */
    enum tp__sformat format;

    /* numbers: borrowed JSON numbers, or NULL */
    const json_t *minimum, *maximum, *xminimum, *xmaximum, *multiple;

    /* arrays */
    size_t min_items, max_items;
    struct schema_node *items; /* NULL: anything */
    bool items_false;          /* no items past prefix */
    struct schema_node **prefix;
    size_t n_prefix;
    bool unique;

    /* objects */
    struct schema_prop *props; /* in the document's order */
    size_t n_props;
    struct schema_prop **sorted; /* by name, when there are many props; else NULL */
    const char **req_extra;      /* required names without a declared property */
    size_t n_req_extra;
    bool extra_absent_ok;
    struct schema_node *names; /* propertyNames, or NULL */
    struct schema_node *addl;  /* additionalProperties schema, or NULL */
    bool addl_false;
    size_t min_props, max_props;

    const json_t *def; /* "default" when not null, or NULL */
};

struct tp_schema {
    size_t refs;
    json_t *doc;
    struct schema_node *root;
    struct schema_node *nodes;
    size_t n_nodes;
    /* The root and every node reached from it through $ref and allOf: the
     * object schemas one top-level member is checked against. */
    struct schema_node **root_objs;
    size_t n_root_objs;
    const char *title;
    locale_t loc; /* C.UTF-8 for patterns, made on first pattern; 0 if none */
    bool loc_tried;
    char key[17]; /* tp__schema_key, "" until asked */
};

/*
 * A path, as a list on the stack from the innermost segment outwards: a
 * member key, an array index (key NULL), or a JSON pointer (ptr) for a
 * $ref target. Rendered only when an error is reported, as
 * "items[3].qty", or "(root)" for the empty path.
 */
struct schema_seg {
    const struct schema_seg *up;
    const char *key;
    const char *ptr;
    size_t index;
};

/* ------------------------------------------------------------------------ */
/* Validation (schema_check.c)                                               */
/* ------------------------------------------------------------------------ */

/* tp__schema_type_of returns the TP__ST_ bit of a JSON value. */
unsigned tp__schema_type_of(const json_t *v);

/*
 * tp__schema_check validates v against n. Returns 0, or -1 with err (when
 * not NULL) filled with TP_EINVALID and "<path>: <reason>". With err NULL it
 * formats nothing: that is how anyOf tries its branches.
 */
int tp__schema_check(const struct schema_node *n, const json_t *v, const struct schema_seg *at,
                     tp_error *err);

/* tp__schema_check_member is tp__schema_validate_member against one object node. */
int tp__schema_check_member(const struct schema_node *n, const char *key, const json_t *v,
                            tp_error *err);

/* tp__schema_find_prop looks a property up by name, or returns NULL. */
const struct schema_prop *tp__schema_find_prop(const struct schema_node *n, const char *key);

/* tp__schema_render_path writes a path as messages show it ("(root)" when empty). */
void tp__schema_render_path(char *buf, size_t cap, const struct schema_seg *at);

/*
 * tp__schema_fail fills err with code and "<path>: <reason>", truncated to
 * fit at a UTF-8 boundary, the path shortened from the left when long.
 * Returns -1 (not the code: validation functions return -1).
 */
int tp__schema_fail(tp_error *err, int code, const struct schema_seg *at, const char *fmt, ...)
    TP__PRINTF(4, 5);

/* ------------------------------------------------------------------------ */
/* Patterns and formats (schema_regex.c)                                     */
/* ------------------------------------------------------------------------ */

/*
 * tp__schema_regex_translate turns a pattern in the ECMA-262 / Python
 * dialect pydantic emits into a POSIX extended regex. Call it first with
 * out NULL to learn *need (bytes, with the NUL), then with a buffer of that
 * size. Returns 0, or -1 with *why (a static string) and *at (the byte
 * offset in src) saying what cannot be translated.
 */
int tp__schema_regex_translate(const char *src, char *out, size_t cap, size_t *need,
                               const char **why, size_t *at);

/*
 * tp__schema_regex_lookahead recognises a lookahead "(?=A)" or "(?!A)" at
 * src[i]. Returns the length of A (A starts at i + 3) and sets *end past the
 * group and *negate; returns 0 when there is none (or A is empty).
 */
size_t tp__schema_regex_lookahead(const char *src, size_t i, size_t *end, bool *negate);

/* tp__schema_format_of maps a "format" value to the formats checked. */
enum tp__sformat tp__schema_format_of(const char *name);

/* tp__schema_format_name names a checked format. */
const char *tp__schema_format_name(enum tp__sformat f);

/* tp__schema_format_ok checks a string of len bytes against a format. */
bool tp__schema_format_ok(enum tp__sformat f, const char *s, size_t len);

/* tp__schema_type_name names a value's JSON type as messages do: every
 * number is a "number" (schema_check.c). */
const char *tp__schema_type_name(const json_t *v);

#endif /* TP_CORE_SCHEMA_INT_H */
