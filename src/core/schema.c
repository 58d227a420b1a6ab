/*
 * Schemas: loading a JSON Schema document into a tree of nodes, the public
 * calls, and filling in defaults. Validation is in schema_check.c, patterns
 * in schema_pattern.c, formats in schema_format.c; docs/internals/schema.md
 * describes the whole.
 *
 * Loading is strict: every keyword is either understood or refused with its
 * JSON path, so a schema never means less here than it does in pydantic.
 */
#include "core/schema.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/patch.h"
#include "core/schema_int.h"
#include "util/alloc.h"
#include "util/error.h"

/* Objects with more properties than this get a sorted index. */
#define SORTED_FROM 8

/* A subschema already compiled, found again by the JSON value it came from. */
struct reg {
    const json_t *target;
    struct schema_node *node;
};

struct ctx {
    tp_schema *s;
    tp_error *err;
    struct reg *regs;
    size_t n_regs, cap_regs;
};

static int compile_node(struct ctx *c, struct schema_node *n, json_t *sch,
                        const struct schema_seg *at);

static int
nomem(struct ctx *c)
{
    tp__error_set(c->err, TP_ENOMEM, "out of memory");
    return TP_ENOMEM;
}

/* Fills c->err with "<path>: <reason>" and returns TP_ESCHEMA. */
#define BAD(at, ...) ((void)tp__schema_fail(c->err, TP_ESCHEMA, (at), __VA_ARGS__), TP_ESCHEMA)

/* ------------------------------------------------------------------------ */
/* Nodes                                                                     */
/* ------------------------------------------------------------------------ */

static struct schema_node *
new_node(struct ctx *c)
{
    struct schema_node *n = tp__calloc(1, sizeof *n);
    if (n == NULL)
        return NULL;
    n->types = TP__ST_ALL;
    n->max_len = SIZE_MAX;
    n->max_items = SIZE_MAX;
    n->max_props = SIZE_MAX;
    /* On the schema's list at once, so a failed load frees it. */
    n->next = c->s->nodes;
    c->s->nodes = n;
    c->s->n_nodes++;
    return n;
}

static void
free_node(struct schema_node *n)
{
    tp__free(n->where);
    tp__free(n->all_of);
    tp__free(n->any_of);
    tp__free(n->one_of);
    tp__free(n->tags);
    tp__free(n->prefix);
    tp__free(n->props);
    tp__free(n->sorted);
    tp__free(n->req_extra);
    tp__schema_pattern_free(n->re);
    for (size_t i = 0; i < n->n_pprops; i++)
        tp__schema_pattern_free(n->pprops[i].re);
    tp__free(n->pprops);
    tp__free(n);
}

/* Compiles a subschema into a new node. */
static int
compile_sub(struct ctx *c, json_t *sch, const struct schema_seg *at, struct schema_node **out)
{
    struct schema_node *n = new_node(c);
    if (n == NULL)
        return nomem(c);
    *out = n;
    return compile_node(c, n, sch, at);
}

/*
 * Returns the node of a subschema that $ref or $defs names, compiling it on
 * first use. The node is registered before it is compiled, so a recursive
 * model's $ref finds it while it is still being filled in.
 */
static int
get_or_compile(struct ctx *c, json_t *target, const struct schema_seg *at, struct schema_node **out)
{
    char where[sizeof c->err->message];
    for (size_t i = 0; i < c->n_regs; i++) {
        if (c->regs[i].target == target) {
            *out = c->regs[i].node;
            return 0;
        }
    }
    if (c->n_regs == c->cap_regs) {
        size_t cap = c->cap_regs ? c->cap_regs * 2 : 16;
        struct reg *r = tp__reallocarray(c->regs, cap, sizeof *r);
        if (r == NULL)
            return nomem(c);
        c->regs = r;
        c->cap_regs = cap;
    }
    struct schema_node *n = new_node(c);
    if (n == NULL)
        return nomem(c);
    tp__schema_render_path(where, sizeof where, at);
    if ((n->where = tp__strdup(where)) == NULL)
        return nomem(c);
    c->regs[c->n_regs].target = target;
    c->regs[c->n_regs].node = n;
    c->n_regs++;
    *out = n;
    return compile_node(c, n, target, at);
}

/*
 * Resolves a local reference: "#" or a JSON pointer "#/a/b" (with ~0 and
 * ~1 escapes) into the document.
 */
static int
resolve(struct ctx *c, const char *ref, const struct schema_seg *at, json_t **out)
{
    if (ref[0] != '#')
        return BAD(at, "only local references (\"#/...\") are supported, not \"%.100s\"", ref);
    if (ref[1] == '\0') {
        *out = c->s->doc;
        return 0;
    }
    if (ref[1] != '/')
        return BAD(at, "anchors are not supported: \"%.100s\"", ref);
    char *copy = tp__strdup(ref + 2);
    if (copy == NULL)
        return nomem(c);
    json_t *cur = c->s->doc;
    char *tok = copy;
    for (;;) {
        char *slash = strchr(tok, '/');
        if (slash != NULL)
            *slash = '\0';
        /* Unescape in place: ~1 is '/', ~0 is '~'. */
        char *w = tok;
        for (char *r = tok; *r != '\0'; r++) {
            if (r[0] == '~' && (r[1] == '0' || r[1] == '1')) {
                *w++ = r[1] == '0' ? '~' : '/';
                r++;
            } else {
                *w++ = *r;
            }
        }
        *w = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end;
            unsigned long idx = strtoul(tok, &end, 10);
            cur = *tok != '\0' && *end == '\0' ? json_array_get(cur, idx) : NULL;
        } else {
            cur = NULL;
        }
        if (cur == NULL || slash == NULL)
            break;
        tok = slash + 1;
    }
    tp__free(copy);
    if (cur == NULL)
        return BAD(at, "cannot resolve \"%.100s\"", ref);
    *out = cur;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Keywords                                                                  */
/* ------------------------------------------------------------------------ */

typedef int (*kw_fn)(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at);

static int
kw_string(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    (void)n;
    return json_is_string(v) ? 0 : BAD(at, "must be a string, not %s", tp__schema_type_name(v));
}

static int
kw_boolean(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    (void)n;
    return json_is_boolean(v) ? 0 : BAD(at, "must be a boolean, not %s", tp__schema_type_name(v));
}

static int
kw_examples(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    (void)n;
    return json_is_array(v) ? 0 : BAD(at, "must be an array, not %s", tp__schema_type_name(v));
}

static int
kw_id(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    /* An $id below the root would change how $refs resolve. */
    if (at->up != NULL)
        return BAD(at, "is supported only at the root");
    return kw_string(c, n, v, at);
}

static int
kw_default(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    (void)c;
    (void)at;
    /* A null default is no default: a null member is an absent one. */
    n->def = json_is_null(v) ? NULL : v;
    return 0;
}

static unsigned
type_bit(const char *name)
{
    static const struct {
        const char *name;
        unsigned mask;
    } names[] = {{"string", TP__ST_STR},   {"number", TP__ST_NUM}, {"integer", TP__ST_INT},
                 {"boolean", TP__ST_BOOL}, {"null", TP__ST_NULL},  {"object", TP__ST_OBJ},
                 {"array", TP__ST_ARR}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0)
            return names[i].mask;
    return 0;
}

static int
kw_type(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    unsigned mask = 0;
    if (json_is_string(v)) {
        if ((mask = type_bit(json_string_value(v))) == 0)
            return BAD(at, "unknown type \"%.60s\"", json_string_value(v));
    } else if (json_is_array(v) && json_array_size(v) > 0) {
        size_t i;
        json_t *t;
        json_array_foreach(v, i, t)
        {
            struct schema_seg seg = {at, NULL, NULL, i};
            unsigned bit;
            if (!json_is_string(t))
                return BAD(&seg, "must be a string, not %s", tp__schema_type_name(t));
            if ((bit = type_bit(json_string_value(t))) == 0)
                return BAD(&seg, "unknown type \"%.60s\"", json_string_value(t));
            mask |= bit;
        }
    } else {
        return BAD(at, "must be a type name or a non-empty array of them");
    }
    n->types = mask;
    return 0;
}

static int
kw_enum(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return BAD(at, "must be a non-empty array");
    n->enums = v;
    return 0;
}

static int
kw_const(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    (void)c;
    (void)at;
    n->konst = v;
    return 0;
}

/* Reads a non-negative integer (2.0 counts, as JSON Schema says). */
static int
get_count(struct ctx *c, json_t *v, const struct schema_seg *at, size_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (size_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d >= 0 && d < 9007199254740992.0 && d == (double)(int64_t)d) {
            *out = (size_t)d;
            return 0;
        }
    }
    return BAD(at, "must be a non-negative integer");
}

#define COUNT_KEYWORD(fn, field)                                                                   \
    static int fn(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)    \
    {                                                                                              \
        return get_count(c, v, at, &n->field);                                                     \
    }
COUNT_KEYWORD(kw_min_length, min_len)
COUNT_KEYWORD(kw_max_length, max_len)
COUNT_KEYWORD(kw_min_items, min_items)
COUNT_KEYWORD(kw_max_items, max_items)
COUNT_KEYWORD(kw_min_props, min_props)
COUNT_KEYWORD(kw_max_props, max_props)

#define NUMBER_KEYWORD(fn, field)                                                                  \
    static int fn(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)    \
    {                                                                                              \
        if (!json_is_number(v))                                                                    \
            return BAD(at, "must be a number, not %s", tp__schema_type_name(v));                   \
        n->field = v;                                                                              \
        return 0;                                                                                  \
    }
NUMBER_KEYWORD(kw_minimum, minimum)
NUMBER_KEYWORD(kw_maximum, maximum)
NUMBER_KEYWORD(kw_xminimum, xminimum)
NUMBER_KEYWORD(kw_xmaximum, xmaximum)

static int
kw_multiple(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    if (!json_is_number(v) || !(json_number_value(v) > 0))
        return BAD(at, "must be a number greater than 0");
    n->multiple = v;
    return 0;
}

static int
kw_unique(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    if (!json_is_boolean(v))
        return BAD(at, "must be a boolean, not %s", tp__schema_type_name(v));
    n->unique = json_is_true(v);
    return 0;
}

static int
kw_format(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    if (!json_is_string(v))
        return BAD(at, "must be a string, not %s", tp__schema_type_name(v));
    /* date-time, date, time and uuid are checked; other formats annotate. */
    n->format = tp__schema_format_of(json_string_value(v));
    return 0;
}

/* Compiles a pattern ("pattern", or a key of "patternProperties"). */
static int
compile_pattern(struct ctx *c, const char *src, size_t len, const struct schema_seg *at,
                struct schema_re **out)
{
    tp_schema *s = c->s;
    char why[200];
    if (strlen(src) != len)
        return BAD(at, "must not contain NUL");
    if (len > TP__PATTERN_MAX)
        return BAD(at, "is longer than %d bytes", TP__PATTERN_MAX);
    if (s->rx == NULL && (s->rx = tp__schema_rx_new()) == NULL)
        return nomem(c);
    int rc = tp__schema_pattern_compile(s->rx, src, len, out, why, sizeof why);
    if (rc == TP_ENOMEM)
        return nomem(c);
    if (rc != 0)
        return BAD(at, "%s", why);
    return 0;
}

static int
kw_pattern(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    if (!json_is_string(v))
        return BAD(at, "must be a string, not %s", tp__schema_type_name(v));
    int rc = compile_pattern(c, json_string_value(v), json_string_length(v), at, &n->re);
    if (rc == 0)
        n->pattern = json_string_value(v);
    return rc;
}

static int
kw_pattern_properties(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    const char *key;
    json_t *sub;
    if (!json_is_object(v))
        return BAD(at, "must be an object, not %s", tp__schema_type_name(v));
    if ((n->pprops = tp__calloc(json_object_size(v), sizeof *n->pprops)) == NULL)
        return nomem(c);
    json_object_foreach(v, key, sub)
    {
        struct schema_seg seg = {at, key, NULL, 0};
        struct schema_pprop *pp = &n->pprops[n->n_pprops++];
        pp->pattern = key;
        /* Object keys hold no NUL here: jansson's key is the whole name
         * unless it has one, which the length check below catches. */
        int rc = compile_pattern(c, key, json_object_iter_key_len(json_object_key_to_iter(key)),
                                 &seg, &pp->re);
        if (rc == 0)
            rc = compile_sub(c, sub, &seg, &pp->node);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int
kw_ref(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    json_t *target;
    int rc;
    if (!json_is_string(v))
        return BAD(at, "must be a string, not %s", tp__schema_type_name(v));
    if ((rc = resolve(c, json_string_value(v), at, &target)) != 0)
        return rc;
    /* The target's own path, so that its errors read the same from any $ref. */
    struct schema_seg ptr = {NULL, NULL, json_string_value(v), 0};
    return get_or_compile(c, target, &ptr, &n->ref);
}

static int
kw_defs(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    const char *name;
    json_t *sub;
    (void)n;
    if (!json_is_object(v))
        return BAD(at, "must be an object, not %s", tp__schema_type_name(v));
    /* Every definition is compiled, used or not: none is left unchecked. */
    json_object_foreach(v, name, sub)
    {
        struct schema_seg seg = {at, name, NULL, 0};
        struct schema_node *ignored;
        int rc = get_or_compile(c, sub, &seg, &ignored);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Compiles an array of schemas; allow_empty for none of the keywords here. */
static int
compile_list(struct ctx *c, json_t *v, const struct schema_seg *at, struct schema_node ***out,
             size_t *count)
{
    size_t i, size = json_array_size(v);
    json_t *sub;
    if (!json_is_array(v) || size == 0)
        return BAD(at, "must be a non-empty array of schemas");
    if ((*out = tp__calloc(size, sizeof **out)) == NULL)
        return nomem(c);
    json_array_foreach(v, i, sub)
    {
        struct schema_seg seg = {at, NULL, NULL, i};
        int rc = compile_sub(c, sub, &seg, &(*out)[i]);
        *count = i + 1;
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int
kw_all_of(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    return compile_list(c, v, at, &n->all_of, &n->n_all_of);
}

static int
kw_any_of(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    return compile_list(c, v, at, &n->any_of, &n->n_any_of);
}

static int
kw_one_of(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    return compile_list(c, v, at, &n->one_of, &n->n_one_of);
}

static int
kw_prefix_items(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    if (n->prefix != NULL)
        return BAD(at, "cannot be combined with an array-form \"items\"");
    return compile_list(c, v, at, &n->prefix, &n->n_prefix);
}

static int
kw_items(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    if (json_is_array(v)) {
        /* Draft 7's tuple form, which pydantic 1 emits: prefixItems today. */
        if (n->prefix != NULL)
            return BAD(at, "an array-form \"items\" cannot be combined with \"prefixItems\"");
        return compile_list(c, v, at, &n->prefix, &n->n_prefix);
    }
    if (json_is_boolean(v)) {
        n->items_false = json_is_false(v);
        return 0;
    }
    if (!json_is_object(v))
        return BAD(at, "must be a schema or an array of schemas, not %s", tp__schema_type_name(v));
    return compile_sub(c, v, at, &n->items);
}

static int
kw_addl(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    if (json_is_boolean(v)) {
        n->addl_false = json_is_false(v);
        return 0;
    }
    if (!json_is_object(v))
        return BAD(at, "must be a boolean or a schema, not %s", tp__schema_type_name(v));
    return compile_sub(c, v, at, &n->addl);
}

static int
kw_property_names(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    if (!json_is_object(v) && !json_is_boolean(v))
        return BAD(at, "must be a schema, not %s", tp__schema_type_name(v));
    return compile_sub(c, v, at, &n->names);
}

static int
kw_content_schema(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    struct schema_node *ignored;
    (void)n;
    /* An annotation (2020-12): compiled so that it is checked like any
     * schema, never applied. pydantic writes it for Json[...] fields. */
    if (!json_is_object(v) && !json_is_boolean(v))
        return BAD(at, "must be a schema, not %s", tp__schema_type_name(v));
    return compile_sub(c, v, at, &ignored);
}

static int
kw_properties(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    const char *name;
    json_t *sub;
    if (!json_is_object(v))
        return BAD(at, "must be an object, not %s", tp__schema_type_name(v));
    if ((n->props = tp__calloc(json_object_size(v), sizeof *n->props)) == NULL)
        return nomem(c);
    json_object_foreach(v, name, sub)
    {
        struct schema_seg seg = {at, name, NULL, 0};
        struct schema_prop *p = &n->props[n->n_props++];
        p->name = name;
        int rc = compile_sub(c, sub, &seg, &p->node);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int
kw_required(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    size_t i;
    json_t *name;
    (void)n;
    if (!json_is_array(v))
        return BAD(at, "must be an array of strings, not %s", tp__schema_type_name(v));
    json_array_foreach(v, i, name)
    {
        struct schema_seg seg = {at, NULL, NULL, i};
        if (!json_is_string(name))
            return BAD(&seg, "must be a string, not %s", tp__schema_type_name(name));
    }
    /* Applied once every property is known: see finish_node. */
    return 0;
}

static int
kw_discriminator(struct ctx *c, struct schema_node *n, json_t *v, const struct schema_seg *at)
{
    const char *key;
    json_t *sub, *mapping = NULL;
    if (!json_is_object(v))
        return BAD(at, "must be an object, not %s", tp__schema_type_name(v));
    json_object_foreach(v, key, sub)
    {
        struct schema_seg seg = {at, key, NULL, 0};
        if (strcmp(key, "propertyName") == 0) {
            if (!json_is_string(sub))
                return BAD(&seg, "must be a string, not %s", tp__schema_type_name(sub));
            n->discr = json_string_value(sub);
        } else if (strcmp(key, "mapping") == 0) {
            if (!json_is_object(sub))
                return BAD(&seg, "must be an object, not %s", tp__schema_type_name(sub));
            mapping = sub;
        } else {
            return BAD(&seg, "unsupported keyword");
        }
    }
    if (n->discr == NULL)
        return BAD(at, "propertyName is missing");
    if (mapping == NULL || json_object_size(mapping) == 0)
        return 0;
    struct schema_seg mseg = {at, "mapping", NULL, 0};
    if ((n->tags = tp__calloc(json_object_size(mapping), sizeof *n->tags)) == NULL)
        return nomem(c);
    json_object_foreach(mapping, key, sub)
    {
        struct schema_seg seg = {&mseg, key, NULL, 0};
        json_t *target;
        int rc;
        if (!json_is_string(sub))
            return BAD(&seg, "must be a string, not %s", tp__schema_type_name(sub));
        if ((rc = resolve(c, json_string_value(sub), &seg, &target)) != 0)
            return rc;
        struct schema_seg ptr = {NULL, NULL, json_string_value(sub), 0};
        struct schema_tag *t = &n->tags[n->n_tags++];
        t->tag = key;
        if ((rc = get_or_compile(c, target, &ptr, &t->node)) != 0)
            return rc;
    }
    return 0;
}

/*
 * Every keyword understood. Annotations are checked for their type and
 * otherwise ignored; anything else is refused at load.
 */
static const struct {
    const char *name;
    kw_fn fn;
} keywords[] = {
    {"$defs", kw_defs},
    {"$ref", kw_ref},
    {"additionalProperties", kw_addl},
    {"allOf", kw_all_of},
    {"anyOf", kw_any_of},
    {"const", kw_const},
    {"default", kw_default},
    {"definitions", kw_defs},
    {"discriminator", kw_discriminator},
    {"enum", kw_enum},
    {"exclusiveMaximum", kw_xmaximum},
    {"exclusiveMinimum", kw_xminimum},
    {"format", kw_format},
    {"items", kw_items},
    {"maxItems", kw_max_items},
    {"maxLength", kw_max_length},
    {"maxProperties", kw_max_props},
    {"maximum", kw_maximum},
    {"minItems", kw_min_items},
    {"minLength", kw_min_length},
    {"minProperties", kw_min_props},
    {"minimum", kw_minimum},
    {"multipleOf", kw_multiple},
    {"oneOf", kw_one_of},
    {"pattern", kw_pattern},
    {"patternProperties", kw_pattern_properties},
    {"prefixItems", kw_prefix_items},
    {"properties", kw_properties},
    {"propertyNames", kw_property_names},
    {"required", kw_required},
    {"type", kw_type},
    {"uniqueItems", kw_unique},
    /* annotations */
    {"$comment", kw_string},
    {"$id", kw_id},
    {"$schema", kw_string},
    {"contentEncoding", kw_string},
    {"contentMediaType", kw_string},
    {"contentSchema", kw_content_schema},
    {"deprecated", kw_boolean},
    {"description", kw_string},
    {"examples", kw_examples},
    {"readOnly", kw_boolean},
    {"title", kw_string},
    {"writeOnly", kw_boolean},
};

static int
cmp_prop(const void *a, const void *b)
{
    const struct schema_prop *x = *(const struct schema_prop *const *)a;
    const struct schema_prop *y = *(const struct schema_prop *const *)b;
    return strcmp(x->name, y->name);
}

/* What needs every keyword of a node first: the index, required, discriminator. */
static int
finish_node(struct ctx *c, struct schema_node *n, json_t *sch, const struct schema_seg *at)
{
    if (n->n_props > SORTED_FROM) {
        if ((n->sorted = tp__calloc(n->n_props, sizeof *n->sorted)) == NULL)
            return nomem(c);
        for (size_t i = 0; i < n->n_props; i++)
            n->sorted[i] = &n->props[i];
        qsort(n->sorted, n->n_props, sizeof *n->sorted, cmp_prop);
    }
    json_t *req = json_object_get(sch, "required");
    if (req != NULL && json_array_size(req) > 0) {
        size_t i;
        json_t *name;
        json_array_foreach(req, i, name)
        {
            struct schema_prop *p =
                (struct schema_prop *)tp__schema_find_prop(n, json_string_value(name));
            if (p != NULL) {
                p->required = true;
                continue;
            }
            if (n->req_extra == NULL &&
                (n->req_extra = tp__calloc(json_array_size(req), sizeof *n->req_extra)) == NULL)
                return nomem(c);
            n->req_extra[n->n_req_extra++] = json_string_value(name);
        }
    }
    /* pydantic's HttpUrl is a "uri" of at most 2083 characters, AnyUrl has
     * no bound: take that length as HttpUrl's, whose schemes are http and
     * https only (a stricter check, never a laxer one). */
    /* pydantic writes patternProperties for Dict[constr(pattern=...), X]
     * and means that every key matches: with no properties and no
     * additionalProperties beside it, a key that matches no pattern is
     * refused (JSON Schema alone would take it). */
    if (n->n_pprops > 0 && n->n_props == 0 && json_object_get(sch, "additionalProperties") == NULL)
        n->pprops_only = true;
    if (n->format == TP__SF_URI && n->max_len == 2083)
        n->format = TP__SF_HTTP_URI;
    if (n->discr != NULL && n->n_any_of == 0 && n->n_one_of == 0) {
        struct schema_seg seg = {at, "discriminator", NULL, 0};
        return BAD(&seg, "needs oneOf or anyOf beside it");
    }
    return 0;
}

static int
compile_node(struct ctx *c, struct schema_node *n, json_t *sch, const struct schema_seg *at)
{
    const char *key;
    json_t *v;
    if (json_is_boolean(sch)) {
        n->never = json_is_false(sch);
        return 0;
    }
    if (!json_is_object(sch))
        return BAD(at, "expected a schema (an object or a boolean), got %s",
                   tp__schema_type_name(sch));
    n->src = sch;
    json_object_foreach(sch, key, v)
    {
        struct schema_seg seg = {at, key, NULL, 0};
        kw_fn fn = NULL;
        for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++) {
            if (strcmp(key, keywords[i].name) == 0) {
                fn = keywords[i].fn;
                break;
            }
        }
        /* "x-..." keys are extensions (OpenAPI; pydantic's json_schema_extra):
         * annotations, whatever they hold. */
        if (fn == NULL && strncmp(key, "x-", 2) == 0)
            continue;
        if (fn == NULL)
            return BAD(&seg, "unsupported keyword");
        int rc = fn(c, n, v, &seg);
        if (rc != 0)
            return rc;
    }
    return finish_node(c, n, sch, at);
}

/* ------------------------------------------------------------------------ */
/* After loading: cycles, effective types, the root                          */
/* ------------------------------------------------------------------------ */

/* The types a node's enum or const allows. */
static unsigned
value_types(const struct schema_node *n)
{
    unsigned mask = TP__ST_ALL;
    if (n->konst != NULL)
        mask &= tp__schema_type_of(n->konst);
    if (n->enums != NULL) {
        unsigned m = 0;
        size_t i;
        json_t *e;
        json_array_foreach(n->enums, i, e) m |= tp__schema_type_of(e);
        mask &= m;
    }
    return mask;
}

/*
 * Depth-first over the edges that apply to the same value ($ref, allOf,
 * anyOf, oneOf, discriminator mapping). A cycle among them would loop
 * forever (A is $ref B, B is $ref A); a cycle through a property or an item
 * is a recursive model, which is fine, since it follows the value.
 * Computes each node's effective types on the way back.
 */
struct dfs {
    struct ctx *c;
    struct schema_node **stack;
    size_t depth;
};

static int visit(struct dfs *d, struct schema_node *n);

static int
edge(struct dfs *d, struct schema_node *to)
{
    if (to->mark == 2)
        return 0;
    if (to->mark == 0)
        return visit(d, to);
    /* On the stack: a cycle. Name a $ref target on it. */
    const char *where = "(root)";
    for (size_t i = d->depth; i-- > 0;) {
        if (d->stack[i]->where != NULL)
            where = d->stack[i]->where;
        if (d->stack[i] == to)
            break;
    }
    tp__error_set(d->c->err, TP_ESCHEMA, "%s: $ref cycle that never reaches a property or an item",
                  where);
    return TP_ESCHEMA;
}

static int
visit(struct dfs *d, struct schema_node *n)
{
    int rc = 0;
    n->mark = 1;
    d->stack[d->depth++] = n;
    if (n->ref != NULL)
        rc = edge(d, n->ref);
    for (size_t i = 0; rc == 0 && i < n->n_all_of; i++)
        rc = edge(d, n->all_of[i]);
    for (size_t i = 0; rc == 0 && i < n->n_any_of; i++)
        rc = edge(d, n->any_of[i]);
    for (size_t i = 0; rc == 0 && i < n->n_one_of; i++)
        rc = edge(d, n->one_of[i]);
    for (size_t i = 0; rc == 0 && i < n->n_tags; i++)
        rc = edge(d, n->tags[i].node);
    if (rc != 0)
        return rc;

    unsigned eff = n->never ? 0 : n->types & value_types(n);
    if (n->ref != NULL)
        eff &= n->ref->eff;
    for (size_t i = 0; i < n->n_all_of; i++)
        eff &= n->all_of[i]->eff;
    if (n->n_any_of > 0) {
        unsigned any = 0;
        for (size_t i = 0; i < n->n_any_of; i++)
            any |= n->any_of[i]->eff;
        eff &= any;
    }
    if (n->n_one_of > 0) {
        unsigned one = 0;
        for (size_t i = 0; i < n->n_one_of; i++)
            one |= n->one_of[i]->eff;
        eff &= one;
    }
    n->eff = eff;
    n->mark = 2;
    d->depth--;
    return 0;
}

/*
 * pydantic's Decimal: anyOf [{"type": "number", bounds...}, {"type":
 * "string", "pattern": "^(?!^[-+.]*$)..."}]. The string branch alone would
 * take "11" for a Decimal at most 10, and the number branch 1.234 for one of
 * two decimal places: each branch gets the other's checks (schema_check.c).
 */
static void
mark_decimal(struct schema_node *n)
{
    static const char dec_prefix[] = "^(?!^[-+.]*$)";
    struct schema_node *num = NULL, *str = NULL;
    for (size_t i = 0; i < n->n_any_of; i++) {
        struct schema_node *b = n->any_of[i];
        if (b->types == TP__ST_NUM && b->re == NULL && b->ref == NULL && b->n_any_of == 0)
            num = b;
        else if (b->types == TP__ST_STR && b->pattern != NULL &&
                 strncmp(b->pattern, dec_prefix, sizeof dec_prefix - 1) == 0)
            str = b;
    }
    if (num != NULL && str != NULL) {
        str->dec_num = num;
        num->dec_str = str;
        if (!tp__schema_decimal_limits(str->pattern, &str->dec_digits, &str->dec_places))
            str->dec_digits = str->dec_places = -1;
    }
}

/* Collects the root and what $ref and allOf reach from it, in order. */
static void
collect_root(tp_schema *s, struct schema_node *n)
{
    if (n->mark == 3)
        return;
    n->mark = 3;
    s->root_objs[s->n_root_objs++] = n;
    if (n->ref != NULL)
        collect_root(s, n->ref);
    for (size_t i = 0; i < n->n_all_of; i++)
        collect_root(s, n->all_of[i]);
}

static int
finalize(struct ctx *c)
{
    tp_schema *s = c->s;
    struct dfs d = {c, tp__calloc(s->n_nodes, sizeof *d.stack), 0};
    if (d.stack == NULL)
        return nomem(c);
    for (struct schema_node *n = s->nodes; n != NULL; n = n->next) {
        int rc = n->mark == 0 ? visit(&d, n) : 0;
        if (rc != 0) {
            tp__free(d.stack);
            return rc;
        }
    }
    tp__free(d.stack);

    /* A required member whose schema accepts null: pydantic's required
     * Optional[X], whose null is a value (docs/protocol.md, "Values"). */
    for (struct schema_node *n = s->nodes; n != NULL; n = n->next) {
        for (size_t i = 0; i < n->n_props; i++) {
            struct schema_prop *p = &n->props[i];
            bool nullable = p->required && tp__schema_check(p->node, json_null(), NULL, NULL) == 0;
            p->keeps_null = nullable && p->node->def == NULL;
            p->absent_ok = nullable && !p->keeps_null;
            s->req_null = s->req_null || p->keeps_null;
        }
        n->extra_absent_ok =
            n->addl != NULL && tp__schema_check(n->addl, json_null(), NULL, NULL) == 0;
        mark_decimal(n);
    }

    /* The root must be an object model whose members can be checked one at
     * a time (tp__schema_validate_member). */
    if ((s->root_objs = tp__calloc(s->n_nodes, sizeof *s->root_objs)) == NULL)
        return nomem(c);
    collect_root(s, s->root);
    if (s->root->eff != TP__ST_OBJ)
        return BAD(NULL, "the root schema must be of type object");
    for (size_t i = 0; i < s->n_root_objs; i++) {
        const struct schema_node *n = s->root_objs[i];
        const char *what = n->n_any_of   ? "anyOf"
                           : n->n_one_of ? "oneOf"
                           : n->enums    ? "enum"
                           : n->konst    ? "const"
                           : n->min_props || n->max_props != SIZE_MAX
                               ? "minProperties/maxProperties"
                               : NULL;
        if (what != NULL)
            return BAD(NULL, "the root model cannot use %s: its members are checked one by one",
                       what);
    }
    for (size_t i = 0; i < s->n_root_objs && s->title == NULL; i++) {
        const json_t *t =
            s->root_objs[i]->src ? json_object_get(s->root_objs[i]->src, "title") : NULL;
        if (json_is_string(t))
            s->title = json_string_value(t);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */
/* ------------------------------------------------------------------------ */

/*
 * A syntax check of JSON text that allocates nothing, to tell a parse
 * error from a failed allocation: jansson's lexer reports an allocation that
 * fails inside a string as a syntax error ("this is not very nice", says
 * its source). Returns the end of the value, or NULL.
 */
static const char *
skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static const char *
scan_hex4(const char *p, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++, p++) {
        unsigned char c = (unsigned char)*p;
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16u;
        if (d == 16u)
            return NULL;
        *v = *v * 16 + d;
    }
    return p;
}

static const char *
scan_string(const char *p)
{
    for (p++; *p != '"'; p++) {
        unsigned v, w;
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p != '\\')
            continue;
        p++;
        if (*p != 'u') {
            if (*p == '\0' || strchr("\"\\/bfnrt", *p) == NULL)
                return NULL;
            continue;
        }
        if ((p = scan_hex4(p + 1, &v)) == NULL || v == 0 || (v >= 0xdc00 && v <= 0xdfff))
            return NULL;
        if (v >= 0xd800 && v <= 0xdbff) {
            if (p[0] != '\\' || p[1] != 'u' || (p = scan_hex4(p + 2, &w)) == NULL || w < 0xdc00 ||
                w > 0xdfff)
                return NULL;
        }
        p--;
    }
    return p + 1;
}

static const char *
scan_digits(const char *p)
{
    const char *start = p;
    while (*p >= '0' && *p <= '9')
        p++;
    return p == start ? NULL : p;
}

static const char *
scan_value(const char *p, int depth)
{
    p = skip_ws(p);
    if (depth > 2048)
        return NULL;
    switch (*p) {
    case '"': return scan_string(p);
    case 't': return strncmp(p, "true", 4) == 0 ? p + 4 : NULL;
    case 'f': return strncmp(p, "false", 5) == 0 ? p + 5 : NULL;
    case 'n': return strncmp(p, "null", 4) == 0 ? p + 4 : NULL;
    case '[':
    case '{': {
        char close = *p == '[' ? ']' : '}';
        bool obj = *p == '{';
        p = skip_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (obj) {
                if (*p != '"' || (p = scan_string(p)) == NULL || *(p = skip_ws(p)) != ':')
                    return NULL;
                p++;
            }
            if ((p = scan_value(p, depth + 1)) == NULL)
                return NULL;
            p = skip_ws(p);
            if (*p == close)
                return p + 1;
            if (*p != ',')
                return NULL;
            p = skip_ws(p + 1);
        }
    }
    default:
        if (*p == '-')
            p++;
        if (*p == '0')
            p++;
        else if ((p = scan_digits(p)) == NULL)
            return NULL;
        if (*p == '.' && (p = scan_digits(p + 1)) == NULL)
            return NULL;
        if (*p == 'e' || *p == 'E') {
            p++;
            if (*p == '+' || *p == '-')
                p++;
            if ((p = scan_digits(p)) == NULL)
                return NULL;
        }
        return p;
    }
}

/*
 * Whether jansson failed for want of memory: it says so, or its first
 * allocation failed before any error was recorded (an empty text), or it
 * reported a syntax error in text that has none.
 */
static bool
parse_nomem(const json_error_t *jerr, const char *text)
{
    enum json_error_code code = json_error_code(jerr);
    if (code == json_error_out_of_memory || jerr->text[0] == '\0')
        return true;
    if (code != json_error_invalid_syntax && code != json_error_premature_end_of_input)
        return false;
    const char *end = scan_value(text, 0);
    return end != NULL && *skip_ws(end) == '\0';
}

TP_API tp_schema *
tp_schema_new(const char *json_schema, tp_error *err)
{
    json_error_t jerr;
    if (json_schema == NULL) {
        tp__error_set(err, TP_EARG, "tp_schema_new: json_schema is NULL");
        return NULL;
    }
    json_t *doc = json_loads(json_schema, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        if (parse_nomem(&jerr, json_schema))
            tp__error_set(err, TP_ENOMEM, "out of memory");
        else
            tp__error_set(err, TP_ESCHEMA, "(root): not a JSON document: %s (line %d, column %d)",
                          jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    tp_schema *s = tp__calloc(1, sizeof *s);
    if (s == NULL) {
        json_decref(doc);
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    s->refs = 1;
    s->doc = doc;

    struct ctx ctx = {s, err, NULL, 0, 0}, *c = &ctx;
    int rc;
    if (!json_is_object(doc)) {
        rc = BAD(NULL, "the root schema must be an object, not %s", tp__schema_type_name(doc));
    } else {
        /* The root is registered like any $ref target: "#" names it. */
        rc = get_or_compile(c, doc, NULL, &s->root);
        if (rc == 0)
            rc = finalize(c);
    }
    tp__free(c->regs);
    if (rc != 0) {
        tp_schema_free(s);
        return NULL;
    }
    tp__error_clear(err);
    return s;
}

tp_schema *
tp__schema_ref(const tp_schema *schema)
{
    /* The count is not part of what const protects: a const schema is one
     * whose meaning cannot change. */
    tp_schema *s = (tp_schema *)schema;
    if (s != NULL)
        s->refs++;
    return s;
}

TP_API void
tp_schema_free(tp_schema *schema)
{
    if (schema == NULL || --schema->refs > 0)
        return;
    struct schema_node *n = schema->nodes;
    while (n != NULL) {
        struct schema_node *next = n->next;
        free_node(n);
        n = next;
    }
    tp__free(schema->root_objs);
    tp__schema_rx_free(schema->rx);
    json_decref(schema->doc);
    tp__free(schema);
}

const json_t *
tp__schema_doc(const tp_schema *schema)
{
    return schema->doc;
}

static int
hash_chunk(const char *buffer, size_t size, void *data)
{
    uint64_t *h = data;
    for (size_t i = 0; i < size; i++) {
        *h ^= (unsigned char)buffer[i];
        *h *= 0x100000001b3ULL;
    }
    return 0;
}

const char *
tp__schema_key(const tp_schema *schema)
{
    tp_schema *s = (tp_schema *)schema; /* the key is a cache, not the meaning */
    if (s->key[0] == '\0') {
        uint64_t h = 0xcbf29ce484222325ULL;
        if (json_dump_callback(s->doc, hash_chunk, &h, JSON_COMPACT | JSON_SORT_KEYS) != 0)
            return NULL;
        snprintf(s->key, sizeof s->key, "%016llx", (unsigned long long)h);
    }
    return s->key;
}

TP_API const char *
tp_schema_title(const tp_schema *schema)
{
    return schema != NULL && schema->title != NULL ? schema->title : "";
}

/* ------------------------------------------------------------------------ */
/* Validating                                                                */
/* ------------------------------------------------------------------------ */

int
tp__schema_validate(const tp_schema *schema, const json_t *value, tp_error *err)
{
    if (schema == NULL || value == NULL)
        return tp__error_set(err, TP_EARG, "tp__schema_validate: NULL argument");
    tp__schema_budget_begin(schema);
    int rc = tp__schema_check(schema->root, value, NULL, err);
    tp__schema_budget_end(schema);
    if (rc != 0)
        return TP_EINVALID;
    tp__error_clear(err);
    return TP_OK;
}

int
tp__schema_validate_member(const tp_schema *schema, const char *key, const json_t *value,
                           tp_error *err)
{
    if (schema == NULL || key == NULL)
        return tp__error_set(err, TP_EARG, "tp__schema_validate_member: NULL argument");
    int rc = 0;
    tp__schema_budget_begin(schema);
    for (size_t i = 0; rc == 0 && i < schema->n_root_objs; i++)
        rc = tp__schema_check_member(schema->root_objs[i], key, value, err);
    tp__schema_budget_end(schema);
    if (rc != 0)
        return TP_EINVALID;
    tp__error_clear(err);
    return TP_OK;
}

TP_API int
tp_schema_validate(const tp_schema *schema, const char *value, tp_error *err)
{
    json_error_t jerr;
    if (schema == NULL || value == NULL)
        return tp__error_set(err, TP_EARG, "tp_schema_validate: NULL argument");
    json_t *v = json_loads(value, JSON_DECODE_ANY, &jerr);
    if (v == NULL) {
        if (parse_nomem(&jerr, value))
            return tp__error_set(err, TP_ENOMEM, "out of memory");
        return tp__error_set(err, TP_EBADREQUEST, "(root): not JSON: %s (line %d, column %d)",
                             jerr.text, jerr.line, jerr.column);
    }
    int rc = tp__schema_validate(schema, v, err);
    json_decref(v);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Defaults                                                                  */
/* ------------------------------------------------------------------------ */

static int fill(const struct schema_node *n, json_t *v, bool defaults);

/*
 * Which branch of an anyOf or oneOf a value belongs to, for filling: the
 * discriminator's, or the only one that takes its type (Optional[Model]:
 * the model, never null), or else the first that accepts it.
 */
static const struct schema_node *
pick(const struct schema_node *n, struct schema_node *const *b, size_t nb, const json_t *v)
{
    unsigned t = tp__schema_type_of(v);
    const struct schema_node *only = NULL;
    size_t k = 0;
    if (n->discr != NULL && json_is_object(v)) {
        const json_t *tag = json_object_get(v, n->discr);
        for (size_t i = 0; json_is_string(tag) && i < n->n_tags; i++)
            if (strcmp(n->tags[i].tag, json_string_value(tag)) == 0)
                return n->tags[i].node;
    }
    for (size_t i = 0; i < nb; i++) {
        if (b[i]->eff & t) {
            only = b[i];
            k++;
        }
    }
    if (k == 1)
        return only;
    for (size_t i = 0; i < nb; i++)
        if ((b[i]->eff & t) && tp__schema_check(b[i], v, NULL, NULL) == 0)
            return b[i];
    return NULL;
}

static int
fill_object(const struct schema_node *n, json_t *v, bool defaults)
{
    for (size_t i = 0; i < n->n_props; i++) {
        const struct schema_prop *p = &n->props[i];
        json_t *m = json_object_get(v, p->name);
        if (m == NULL || json_is_null(m)) {
            if (p->node->def == NULL || !defaults)
                continue;
            /* Deep copies: the document is shared by every value. */
            if ((m = json_deep_copy(p->node->def)) == NULL)
                return TP_ENOMEM;
            if (json_object_set_new(v, p->name, m) != 0)
                return TP_ENOMEM;
        }
        int rc = fill(p->node, m, defaults);
        if (rc != 0)
            return rc;
    }
    if (n->addl != NULL || n->n_pprops > 0) {
        const char *key;
        json_t *m;
        json_object_foreach(v, key, m)
        {
            if (json_is_null(m) || (n->n_props > 0 && tp__schema_find_prop(n, key) != NULL))
                continue;
            bool matched = false;
            for (size_t i = 0; i < n->n_pprops; i++) {
                int r = tp__schema_pattern_match(n->pprops[i].re, key, strlen(key));
                if (r != TP__RE_YES)
                    continue;
                matched = true;
                int rc = fill(n->pprops[i].node, m, defaults);
                if (rc != 0)
                    return rc;
            }
            int rc = !matched && n->addl != NULL ? fill(n->addl, m, defaults) : 0;
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

static int
fill(const struct schema_node *n, json_t *v, bool defaults)
{
    int rc = 0;
    if (n == NULL || n->never)
        return 0;
    /* Only objects get members, and only containers hold objects. */
    if (json_is_object(v)) {
        rc = fill_object(n, v, defaults);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            const struct schema_node *item = i < n->n_prefix ? n->prefix[i] : n->items;
            if (item != NULL && (rc = fill(item, e, defaults)) != 0)
                return rc;
        }
    } else {
        return 0;
    }
    if (rc == 0 && n->ref != NULL)
        rc = fill(n->ref, v, defaults);
    for (size_t i = 0; rc == 0 && i < n->n_all_of; i++)
        rc = fill(n->all_of[i], v, defaults);
    if (rc == 0 && n->n_any_of > 0)
        rc = fill(pick(n, n->any_of, n->n_any_of, v), v, defaults);
    if (rc == 0 && n->n_one_of > 0)
        rc = fill(pick(n, n->one_of, n->n_one_of, v), v, defaults);
    return rc;
}

int
tp__schema_fill_defaults(const tp_schema *schema, json_t *value)
{
    if (schema == NULL || !json_is_object(value))
        return TP_OK;
    return fill(schema->root, value, true) == 0 ? TP_OK : TP_ENOMEM;
}

/* ------------------------------------------------------------------------ */
/* Nulls that are values                                                     */
/* ------------------------------------------------------------------------ */

/*
 * The node a member `key` of the object value v is checked against under n
 * (its own properties, then through $ref, allOf and the branch of
 * anyOf/oneOf that v belongs to, then patternProperties and
 * additionalProperties), or NULL. *keeps: the member is a required
 * Optional[X], whose null is a value.
 */
static const struct schema_node *
member_of(const struct schema_node *n, const json_t *v, const char *key, bool *keeps)
{
    const struct schema_node *r;
    if (n == NULL || n->never)
        return NULL;
    const struct schema_prop *p = tp__schema_find_prop(n, key);
    if (p != NULL) {
        *keeps = *keeps || p->keeps_null;
        return p->node;
    }
    if ((r = member_of(n->ref, v, key, keeps)) != NULL)
        return r;
    for (size_t i = 0; i < n->n_all_of; i++)
        if ((r = member_of(n->all_of[i], v, key, keeps)) != NULL)
            return r;
    if (n->n_any_of > 0 && (r = member_of(pick(n, n->any_of, n->n_any_of, v), v, key, keeps)))
        return r;
    if (n->n_one_of > 0 && (r = member_of(pick(n, n->one_of, n->n_one_of, v), v, key, keeps)))
        return r;
    for (size_t i = 0; i < n->n_pprops; i++)
        if (tp__schema_pattern_match(n->pprops[i].re, key, strlen(key)) == TP__RE_YES)
            return n->pprops[i].node;
    return n->addl;
}

/* The node item i of the array value v is checked against under n, or NULL. */
static const struct schema_node *
item_of(const struct schema_node *n, const json_t *v, size_t i)
{
    const struct schema_node *r;
    if (n == NULL || n->never)
        return NULL;
    if (i < n->n_prefix)
        return n->prefix[i];
    if (n->items != NULL)
        return n->items;
    if ((r = item_of(n->ref, v, i)) != NULL)
        return r;
    for (size_t k = 0; k < n->n_all_of; k++)
        if ((r = item_of(n->all_of[k], v, i)) != NULL)
            return r;
    if (n->n_any_of > 0 && (r = item_of(pick(n, n->any_of, n->n_any_of, v), v, i)) != NULL)
        return r;
    if (n->n_one_of > 0)
        return item_of(pick(n, n->one_of, n->n_one_of, v), v, i);
    return NULL;
}

/* v without its null object members, at any depth, but for those of
 * required Optional[X] members. A new value (nothing shared with v). */
static json_t *
strip(const struct schema_node *n, json_t *v)
{
    if (json_is_object(v)) {
        json_t *out = json_object();
        const char *key;
        json_t *m;
        if (out == NULL)
            return NULL;
        json_object_foreach(v, key, m)
        {
            bool keeps = false;
            const struct schema_node *sub = member_of(n, v, key, &keeps);
            json_t *nm = json_is_null(m) ? (keeps ? json_null() : NULL) : strip(sub, m);
            if (json_is_null(m) && !keeps)
                continue;
            if (nm == NULL || json_object_set_new(out, key, nm) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        size_t i;
        json_t *e;
        if (out == NULL)
            return NULL;
        json_array_foreach(v, i, e)
        {
            if (json_array_append_new(out, strip(item_of(n, v, i), e)) != 0) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    }
    return json_incref(v);
}

/* RFC 7396 MergePatch(target, patch), but a null in the patch sets a
 * required Optional[X] member to null instead of deleting it. */
static json_t *
merge(const struct schema_node *n, const json_t *target, json_t *patch)
{
    if (!json_is_object(patch))
        return strip(n, patch);
    json_t *out = json_is_object(target) ? json_deep_copy(target) : json_object();
    const char *key;
    json_t *pm;
    if (out == NULL)
        return NULL;
    json_object_foreach(patch, key, pm)
    {
        bool keeps = false;
        const struct schema_node *sub = member_of(n, out, key, &keeps);
        json_t *nm;
        if (json_is_null(pm) && !keeps) {
            json_object_del(out, key);
            continue;
        }
        nm = json_is_null(pm) ? json_null() : merge(sub, json_object_get(out, key), pm);
        if (nm == NULL || json_object_set_new(out, key, nm) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* The node a top-level member is checked against, or NULL. */
static const struct schema_node *
root_member(const tp_schema *schema, const char *key, bool *keeps)
{
    *keeps = false;
    return member_of(schema->root, NULL, key, keeps);
}

bool
tp__schema_keeps_null(const tp_schema *schema, const char *key)
{
    bool keeps = false;
    if (schema != NULL && schema->req_null)
        (void)root_member(schema, key, &keeps);
    return keeps;
}

json_t *
tp__schema_strip_nulls(const tp_schema *schema, const char *key, json_t *value)
{
    bool keeps;
    if (schema == NULL || !schema->req_null)
        return tp__json_strip_nulls(value);
    return strip(key == NULL ? schema->root : root_member(schema, key, &keeps), value);
}

json_t *
tp__schema_merge(const tp_schema *schema, const char *key, const json_t *was, json_t *patch)
{
    bool keeps;
    if (schema == NULL || !schema->req_null) {
        json_t *applied = tp_merge_patch_apply(was, patch);
        json_t *v = applied != NULL ? tp__json_strip_nulls(applied) : NULL;
        json_decref(applied);
        return v;
    }
    return merge(root_member(schema, key, &keeps), was, patch);
}
