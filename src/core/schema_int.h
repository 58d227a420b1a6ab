/*
 * Schemas, inside: the compiled tree shared by schema.c (loading, defaults),
 * schema_check.c (validation and messages), schema_pattern.c (patterns on
 * PCRE2, with their limits) and schema_format.c (the checked formats and
 * decimals). See docs/internals/schema.md.
 */
#ifndef TP_CORE_SCHEMA_INT_H
#define TP_CORE_SCHEMA_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
enum tp__sformat {
    TP__SF_NONE = 0,
    TP__SF_DATE_TIME,
    TP__SF_DATE,
    TP__SF_TIME,
    TP__SF_UUID,
    TP__SF_URI,
    TP__SF_HTTP_URI, /* "uri" with pydantic HttpUrl's maxLength 2083: http and https only */
    TP__SF_IPV4,
    TP__SF_IPV6,
    TP__SF_IPANY,
    TP__SF_DURATION,
    TP__SF_EMAIL
};

/* Patterns: at most this many bytes, and this deep in groups (PCRE2's
 * compile context enforces both, so compiling stays fast). */
#define TP__PATTERN_MAX 4096
#define TP__PATTERN_NEST 64
/* The steps (PCRE2 callouts: one per item tried, plus the characters the
 * match moved over, TP__PATTERN_SCAN_PER_STEP to a step) every pattern
 * check of one validation may take together; a check that would go past
 * them fails (schema_pattern.c, docs/internals/schema.md). About 10 to
 * 25 ms on the 2-core test machine: bench/pattern_bench prints it. */
#define TP__PATTERN_BUDGET_STEPS 3000000u
#define TP__PATTERN_SCAN_PER_STEP 16u

struct schema_node;

/* One declared property of an object schema. */
struct schema_prop {
    const char *name; /* borrowed from the schema document */
    struct schema_node *node;
    bool required;
    /* required, its schema accepts null and it has no default (pydantic's
     * required Optional[X]): null is a value, kept in stored values, and an
     * absent member is missing (docs/protocol.md, "Values") */
    bool keeps_null;
    /* required, its schema accepts null and it has a default (not what
     * pydantic writes): an absent member passes */
    bool absent_ok;
};

/* One compiled pattern (schema_pattern.c). */
struct schema_re;

/* A schema's pattern machinery: PCRE2's contexts, one match data, the JIT
 * stack, and the step budget of the validation running (schema_pattern.c). */
struct schema_rx;

/* A pattern found in "patternProperties". */
struct schema_pprop {
    struct schema_re *re;
    const char *pattern; /* borrowed */
    struct schema_node *node;
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
    struct schema_re *re;    /* "pattern", compiled, or NULL */
    const char *pattern;     /* the pattern as written, for messages */
    enum tp__sformat format;
    /* pydantic's Decimal: anyOf [{number + bounds}, {string + pattern}].
     * The string branch points at the number branch (its bounds apply to
     * the string's value), the number branch at the string branch (its
     * pattern applies to the number's digits). */
    const struct schema_node *dec_num, *dec_str;
    /* The string branch: max_digits and decimal_places, read back from
     * pydantic's pattern (which alone does not bound them), or -1. */
    int dec_digits, dec_places;

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
    struct schema_node *names;   /* propertyNames, or NULL */
    struct schema_pprop *pprops; /* patternProperties, in the document's order */
    size_t n_pprops;
    /* patternProperties alone (no properties, no additionalProperties):
     * pydantic's Dict[constr(pattern=...), X], whose keys must match */
    bool pprops_only;
    struct schema_node *addl; /* additionalProperties schema, or NULL */
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
    struct schema_rx *rx; /* made on the first pattern; NULL if none */
    bool req_null;        /* some property keeps_null: nulls are stripped by the schema */
    char key[17];         /* tp__schema_key, "" until asked */
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
/* Patterns (schema_pattern.c)                                               */
/* ------------------------------------------------------------------------ */

/* tp__schema_rx_new makes a schema's pattern machinery. NULL: out of memory. */
struct schema_rx *tp__schema_rx_new(void);
void tp__schema_rx_free(struct schema_rx *rx);

/*
 * tp__schema_pattern_compile compiles a pattern as pydantic means it
 * (Python's re and the Rust regex crate: lookaround, (?i), \d, \p{..},
 * Unicode). Returns 0; TP_ENOMEM; or TP_ESCHEMA with why (a message of at
 * most cap bytes) saying what is wrong and where.
 */
int tp__schema_pattern_compile(struct schema_rx *rx, const char *src, size_t len,
                               struct schema_re **out, char *why, size_t cap);
void tp__schema_pattern_free(struct schema_re *re);

/* What a match says. */
enum { TP__RE_NO = 0, TP__RE_YES = 1, TP__RE_LIMIT = -1 };

/*
 * tp__schema_pattern_match searches s (len bytes) for the pattern. Returns
 * TP__RE_YES, TP__RE_NO, or TP__RE_LIMIT when the check would take too long
 * (the validation's step budget, PCRE2's match, depth or heap limit, or the
 * JIT stack). Allocates nothing.
 */
int tp__schema_pattern_match(const struct schema_re *re, const char *s, size_t len);

/* ------------------------------------------------------------------------ */
/* Formats and decimals (schema_format.c)                                    */
/* ------------------------------------------------------------------------ */

/* tp__schema_format_of maps a "format" value to the formats checked. */
enum tp__sformat tp__schema_format_of(const char *name);

/* tp__schema_format_name names a checked format. */
const char *tp__schema_format_name(enum tp__sformat f);

/* tp__schema_format_ok checks a string of len bytes against a format. */
bool tp__schema_format_ok(enum tp__sformat f, const char *s, size_t len);

/*
 * tp__schema_decimal_cmp compares the decimal written in s (len bytes: an
 * optional sign, digits, an optional point and digits, an optional
 * exponent) with a JSON number, exactly. Returns -1, 0 or 1, or 2 when s is
 * not such a decimal.
 */
int tp__schema_decimal_cmp(const char *s, size_t len, const json_t *bound);

/*
 * tp__schema_decimal_limits reads max_digits and decimal_places back from
 * the string pattern pydantic writes for a Decimal (-1 when absent).
 * Returns false when the pattern is not one of pydantic's.
 */
bool tp__schema_decimal_limits(const char *pattern, int *max_digits, int *places);

/*
 * tp__schema_decimal_digits counts as pydantic does: the digits and the
 * decimal places of the decimal s once normalised (trailing zeros dropped).
 * Returns false when s is not a decimal.
 */
bool tp__schema_decimal_digits(const char *s, size_t len, long *digits, long *places);

/* tp__schema_decimal_multiple says whether the decimal s is a multiple of
 * the JSON number m, exactly; false when it cannot tell. */
bool tp__schema_decimal_multiple(const char *s, size_t len, const json_t *m);

/*
 * tp__schema_number_text writes a JSON number in positional notation (no
 * exponent), the shortest digits that read back the same: "1.5", "100",
 * "0.000001". Returns false when it does not fit in cap.
 */
bool tp__schema_number_text(const json_t *v, char *buf, size_t cap);

/* tp__schema_type_name names a value's JSON type as messages do: every
 * number is a "number" (schema_check.c). */
const char *tp__schema_type_name(const json_t *v);

#endif /* TP_CORE_SCHEMA_INT_H */
