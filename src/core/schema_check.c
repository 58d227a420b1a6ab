/*
 * Validation against a compiled schema, and the messages it reports.
 *
 * The valid path allocates nothing and formats nothing: the path of the
 * current value is a list of segments on the stack, rendered only when a
 * check fails, and anyOf/oneOf try their branches with no tp_error at all.
 * The order of the checks (docs/internals/schema.md) is fixed so that the
 * first error reported is the same in every implementation that reads
 * tests/cases/schema.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/schema_int.h"

/* A message longer than this shows the path's tail after "...". */
#define PATH_SHOWN 120
/* Strings quoted in messages are cut after this many bytes. */
#define VALUE_SHOWN 40

/* ------------------------------------------------------------------------ */
/* Bounded text                                                              */
/* ------------------------------------------------------------------------ */

/*
 * A fixed buffer that never overflows. `skip` drops the first bytes written
 * (to show a long path's tail); `total` counts every byte offered, so a
 * buffer with cap 0 measures text.
 */
struct sbuf {
    char *p;
    size_t cap, len, total, skip;
    bool mid_char; /* skipping ended inside a character: drop its tail */
    bool cut;
};

static void
sb_put(struct sbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        b->total++;
        if (b->skip > 0) {
            b->skip--;
            b->mid_char = true;
            continue;
        }
        if (b->mid_char && (c & 0xc0) == 0x80)
            continue;
        b->mid_char = false;
        if (b->len + 1 >= b->cap) {
            b->cut = true;
            continue;
        }
        b->p[b->len++] = (char)c;
        b->p[b->len] = '\0';
    }
}

static void
sb_str(struct sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Drops a character cut in the middle at the end of a full buffer. */
static void
utf8_trim(char *p, size_t *len)
{
    size_t n = *len, start = n;
    while (start > 0 && ((unsigned char)p[start - 1] & 0xc0) == 0x80)
        start--;
    if (start == 0)
        return;
    unsigned char lead = (unsigned char)p[start - 1];
    size_t want = lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
    if (n - (start - 1) < want) {
        *len = start - 1;
        p[*len] = '\0';
    }
}

/* ------------------------------------------------------------------------ */
/* Rendering paths and values                                                */
/* ------------------------------------------------------------------------ */

static void
render_pointer(struct sbuf *b, const char *ptr, size_t start)
{
    /* "#/$defs/Item" reads "$defs.Item"; ~1 and ~0 are '/' and '~'. */
    const char *p = ptr[0] == '#' ? ptr + 1 : ptr;
    for (; *p != '\0'; p++) {
        if (*p == '/') {
            if (b->total > start)
                sb_put(b, ".", 1);
        } else if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) {
            sb_put(b, p[1] == '0' ? "~" : "/", 1);
            p++;
        } else {
            sb_put(b, p, 1);
        }
    }
}

/* Renders segments; `start` is b->total where the path began (for dots). */
static void
render_segs(struct sbuf *b, const struct schema_seg *s, size_t start)
{
    char num[32];
    if (s == NULL)
        return;
    render_segs(b, s->up, start);
    if (s->ptr != NULL) {
        render_pointer(b, s->ptr, start);
    } else if (s->key != NULL) {
        if (b->total > start)
            sb_put(b, ".", 1);
        sb_str(b, s->key);
    } else {
        snprintf(num, sizeof num, "[%zu]", s->index);
        sb_str(b, num);
    }
}

static void
render_path(struct sbuf *b, const struct schema_seg *at)
{
    struct sbuf count = {NULL, 0, 0, 0, 0, false, false};
    render_segs(&count, at, 0);
    if (count.total == 0) {
        sb_str(b, "(root)");
        return;
    }
    if (count.total > PATH_SHOWN) {
        sb_str(b, "...");
        b->skip = count.total - (PATH_SHOWN - 3);
    }
    render_segs(b, at, b->total);
}

void
tp__schema_render_path(char *buf, size_t cap, const struct schema_seg *at)
{
    struct sbuf b = {buf, cap, 0, 0, 0, false, false};
    buf[0] = '\0';
    render_path(&b, at);
    utf8_trim(buf, &b.len);
}

int
tp__schema_fail(tp_error *err, int code, const struct schema_seg *at, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    char msg[sizeof err->message];
    struct sbuf b = {msg, sizeof msg, 0, 0, 0, false, false};
    msg[0] = '\0';
    render_path(&b, at);
    sb_str(&b, ": ");
    if (b.len + 1 < sizeof msg) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(msg + b.len, sizeof msg - b.len, fmt, ap);
        va_end(ap);
        if (n > 0) {
            size_t room = sizeof msg - b.len - 1;
            b.len += (size_t)n < room ? (size_t)n : room;
            if ((size_t)n > room)
                utf8_trim(msg, &b.len);
        }
    }
    tp__error_set(err, code, "%s", msg);
    return -1;
}

/* Formats a real the shortest way that reads back the same. */
static void
fmt_real(char *buf, size_t cap, double d)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    /* A locale may have written a decimal comma. */
    for (char *p = buf; *p != '\0'; p++)
        if (*p == ',')
            *p = '.';
    if (strpbrk(buf, ".eni") == NULL && strlen(buf) + 3 <= cap)
        memcpy(buf + strlen(buf), ".0", 3);
}

/* Quotes a string as JSON would, cut after max bytes with "...". */
static void
fmt_string(struct sbuf *b, const char *s, size_t len, size_t max)
{
    size_t i;
    sb_put(b, "\"", 1);
    for (i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_str(b, c == '\n' ? "\\n" : c == '\t' ? "\\t" : esc);
        } else {
            sb_put(b, s + i, 1);
        }
    }
    if (i < len) {
        /* Cut at a character boundary. */
        utf8_trim(b->p, &b->len);
        sb_str(b, "...");
    }
    sb_put(b, "\"", 1);
}

/*
 * Formats a value for a message: strings quoted and escaped as JSON, cut
 * after max bytes with "..."; containers as [...] and {...}.
 */
static void
fmt_value(char *buf, size_t cap, const json_t *v, size_t max)
{
    struct sbuf b = {buf, cap, 0, 0, 0, false, false};
    buf[0] = '\0';
    switch (json_typeof(v)) {
    case JSON_STRING: fmt_string(&b, json_string_value(v), json_string_length(v), max); break;
    case JSON_INTEGER: snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
    case JSON_REAL: fmt_real(buf, cap, json_real_value(v)); break;
    case JSON_TRUE: sb_str(&b, "true"); break;
    case JSON_FALSE: sb_str(&b, "false"); break;
    case JSON_NULL: sb_str(&b, "null"); break;
    case JSON_ARRAY: sb_str(&b, json_array_size(v) ? "[...]" : "[]"); break;
    case JSON_OBJECT: sb_str(&b, json_object_size(v) ? "{...}" : "{}"); break;
    }
}

/* Names the types of a mask: "string", "string or null", "a, b or c". */
static void
fmt_types(char *buf, size_t cap, unsigned mask)
{
    const char *names[7];
    size_t n = 0;
    struct sbuf b = {buf, cap, 0, 0, 0, false, false};
    buf[0] = '\0';
    if (mask & TP__ST_OBJ)
        names[n++] = "object";
    if (mask & TP__ST_ARR)
        names[n++] = "array";
    if (mask & TP__ST_STR)
        names[n++] = "string";
    if (mask & TP__ST_REAL)
        names[n++] = "number";
    else if (mask & TP__ST_INT)
        names[n++] = "integer";
    if (mask & TP__ST_BOOL)
        names[n++] = "boolean";
    if (mask & TP__ST_NULL)
        names[n++] = "null";
    if (n == 0)
        names[n++] = "nothing";
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            sb_str(&b, i + 1 == n ? " or " : ", ");
        sb_str(&b, names[i]);
    }
}

/* The name of a value's JSON type: every number is a "number". */
const char *
tp__schema_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER:
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

/*
 * Lists values ("open", "closed"), ending with ", ..." when they do not
 * fit. Either vals (an array) or tags is given.
 */
static void
fmt_list(char *buf, size_t cap, const json_t *vals, const struct schema_tag *tags, size_t n)
{
    struct sbuf b = {buf, cap, 0, 0, 0, false, false};
    char one[64];
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (vals != NULL) {
            fmt_value(one, sizeof one, json_array_get(vals, i), 24);
        } else {
            struct sbuf t = {one, sizeof one, 0, 0, 0, false, false};
            one[0] = '\0';
            fmt_string(&t, tags[i].tag, strlen(tags[i].tag), 24);
        }
        /* Keep room for ", ..." after this item. */
        if (b.len + strlen(one) + 2 + 5 >= cap) {
            sb_str(&b, i > 0 ? ", ..." : "...");
            return;
        }
        if (i > 0)
            sb_str(&b, ", ");
        sb_str(&b, one);
    }
}

/* ------------------------------------------------------------------------ */
/* Comparisons                                                               */
/* ------------------------------------------------------------------------ */

/* The library links no libm: the few float helpers it needs are here. */
static double
abs_d(double d)
{
    return d < 0 ? -d : d;
}

static bool
finite_d(double d)
{
    return d == d && abs_d(d) <= 1.7976931348623157e308;
}

/* Every double of magnitude 2^53 or more is an integer. */
static bool
integral_d(double d)
{
    return finite_d(d) && (abs_d(d) >= 9007199254740992.0 || d == (double)(int64_t)d);
}

static double
round_d(double d)
{
    if (abs_d(d) >= 4503599627370496.0)
        return d;
    return (double)(int64_t)(d < 0 ? d - 0.5 : d + 0.5);
}

unsigned
tp__schema_type_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return TP__ST_OBJ;
    case JSON_ARRAY: return TP__ST_ARR;
    case JSON_STRING: return TP__ST_STR;
    case JSON_INTEGER: return TP__ST_INT;
    case JSON_REAL: {
        return integral_d(json_real_value(v)) ? TP__ST_INT : TP__ST_REAL;
    }
    case JSON_TRUE:
    case JSON_FALSE: return TP__ST_BOOL;
    default: return TP__ST_NULL;
    }
}

/* Compares two numbers: exactly when both are JSON integers. */
static int
num_cmp(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    }
    double x = json_number_value(a), y = json_number_value(b);
    return x < y ? -1 : x > y;
}

/* JSON Schema equality: numbers by value (1 equals 1.0), the rest structurally. */
static bool
values_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return num_cmp(a, b) == 0;
    if (json_typeof(a) != json_typeof(b))
        return false;
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY: {
        size_t n = json_array_size(a);
        if (n != json_array_size(b))
            return false;
        for (size_t i = 0; i < n; i++)
            if (!values_equal(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *key;
        json_t *va;
        json_object_foreach((json_t *)a, key, va)
        {
            const json_t *vb = json_object_get(b, key);
            if (vb == NULL || !values_equal(va, vb))
                return false;
        }
        return true;
    }
    default: return true; /* true, false, null: the same type is the same value */
    }
}

/* Counts code points, stopping once past `stop`. */
static size_t
code_points(const char *s, size_t len, size_t stop)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80 && ++n > stop)
            break;
    }
    return n;
}

static bool
is_multiple(const json_t *v, const json_t *m)
{
    if (json_is_integer(v) && json_is_integer(m))
        return json_integer_value(v) % json_integer_value(m) == 0;
    double q = json_number_value(v) / json_number_value(m);
    if (!finite_d(q))
        return false;
    /* Decimal multiples such as 0.01 are not exact in binary: allow the
     * rounding error of one division. */
    return abs_d(q - round_d(q)) <= 1e-9 * (abs_d(q) > 1.0 ? abs_d(q) : 1.0);
}

const struct schema_prop *
tp__schema_find_prop(const struct schema_node *n, const char *key)
{
    if (n->sorted != NULL) {
        size_t lo = 0, hi = n->n_props;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = strcmp(key, n->sorted[mid]->name);
            if (c == 0)
                return n->sorted[mid];
            if (c < 0)
                hi = mid;
            else
                lo = mid + 1;
        }
        return NULL;
    }
    for (size_t i = 0; i < n->n_props; i++)
        if (strcmp(key, n->props[i].name) == 0)
            return &n->props[i];
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                    */
/* ------------------------------------------------------------------------ */

#define FAIL(...) tp__schema_fail(err, TP_EINVALID, __VA_ARGS__)

static int
fail_type(tp_error *err, const struct schema_seg *at, unsigned mask, const json_t *v)
{
    char want[96];
    if (err == NULL)
        return -1;
    fmt_types(want, sizeof want, mask);
    return FAIL(at, "expected %s, got %s", want, tp__schema_type_name(v));
}

/* Shows a string for a message: `"x"`, or `field name "x"` for a key. */
static void
show_str(char *buf, size_t cap, const char *label, const char *s, size_t len)
{
    struct sbuf b = {buf, cap, 0, 0, 0, false, false};
    buf[0] = '\0';
    sb_str(&b, label);
    fmt_string(&b, s, len, VALUE_SHOWN);
}

/*
 * A Decimal written as a string, against the bounds of its number branch,
 * exactly (a string's digits are not rounded to a double).
 */
static int
check_decimal(const struct schema_node *str, const char *s, size_t len, const char *label,
              const struct schema_seg *at, tp_error *err)
{
    const struct schema_node *num = str->dec_num;
    const char *why = NULL;
    const json_t *bound = NULL;
    long digits = 0, places = 0;
    int c;
    if (str->dec_digits >= 0 || str->dec_places >= 0) {
        /* pydantic's max_digits and decimal_places, as pydantic counts. */
        bool ok = tp__schema_decimal_digits(s, len, &digits, &places);
        const char *what = NULL;
        long limit = 0;
        if (!ok)
            what = "is not a valid decimal";
        else if (str->dec_digits >= 0 && digits > str->dec_digits)
            what = "has more than %ld digits", limit = str->dec_digits;
        else if (str->dec_places >= 0 && places > str->dec_places)
            what = "has more than %ld decimal places", limit = str->dec_places;
        else if (str->dec_digits >= 0 && str->dec_places >= 0 &&
                 digits - places > str->dec_digits - str->dec_places)
            what = "has more than %ld digits before the point",
            limit = str->dec_digits - str->dec_places;
        if (what != NULL) {
            char a[VALUE_SHOWN * 2 + 16], reason[64];
            if (err == NULL)
                return -1;
            show_str(a, sizeof a, label, s, len);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
            snprintf(reason, sizeof reason, what, limit);
#pragma GCC diagnostic pop
            return FAIL(at, "%s %s", a, reason);
        }
    }
    if (num->minimum != NULL && (c = tp__schema_decimal_cmp(s, len, num->minimum)) < 0)
        why = "%s is less than the minimum %s", bound = num->minimum;
    else if (num->xminimum != NULL && (c = tp__schema_decimal_cmp(s, len, num->xminimum)) <= 0)
        why = "%s is less than or equal to the exclusive minimum %s", bound = num->xminimum;
    else if (num->maximum != NULL && (c = tp__schema_decimal_cmp(s, len, num->maximum)) > 0)
        why = "%s is greater than the maximum %s", bound = num->maximum;
    else if (num->xmaximum != NULL && (c = tp__schema_decimal_cmp(s, len, num->xmaximum)) >= 0)
        why = "%s is greater than or equal to the exclusive maximum %s", bound = num->xmaximum;
    else if (num->multiple != NULL && !tp__schema_decimal_multiple(s, len, num->multiple))
        why = "%s is not a multiple of %s", bound = num->multiple;
    if (why == NULL)
        return 0;
    if (err == NULL)
        return -1;
    char a[VALUE_SHOWN * 2 + 16], b[40];
    show_str(a, sizeof a, label, s, len);
    fmt_value(b, sizeof b, bound, VALUE_SHOWN);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    return FAIL(at, why, a, b);
#pragma GCC diagnostic pop
}

/* The string keywords, for a value (label "") or a member name. */
static int
check_str(const struct schema_node *n, const char *s, size_t len, const char *label,
          const struct schema_seg *at, tp_error *err)
{
    char shown[VALUE_SHOWN * 2 + 16];
    if (n->min_len > 0 || n->max_len != SIZE_MAX) {
        size_t stop = n->max_len != SIZE_MAX ? n->max_len : n->min_len;
        size_t cps = code_points(s, len, stop);
        if (cps < n->min_len || cps > n->max_len) {
            if (err == NULL)
                return -1;
            show_str(shown, sizeof shown, label, s, len);
            if (cps < n->min_len)
                return FAIL(at, "%s is shorter than the minimum length %zu", shown, n->min_len);
            return FAIL(at, "%s is longer than the maximum length %zu", shown, n->max_len);
        }
    }
    if (n->re != NULL) {
        int r = tp__schema_pattern_match(n->re, s, len);
        if (r != TP__RE_YES) {
            if (err == NULL)
                return -1;
            char pshown[VALUE_SHOWN * 2];
            show_str(shown, sizeof shown, label, s, len);
            show_str(pshown, sizeof pshown, "", n->pattern, strlen(n->pattern));
            if (r == TP__RE_LIMIT)
                return FAIL(at,
                            "%s took too long to match against the pattern %s (the step limit of "
                            "pattern checks was reached)",
                            shown, pshown);
            return FAIL(at, "%s does not match the pattern %s", shown, pshown);
        }
    }
    if (n->dec_num != NULL && check_decimal(n, s, len, label, at, err) != 0)
        return -1;
    if (n->format != TP__SF_NONE && !tp__schema_format_ok(n->format, s, len)) {
        if (err == NULL)
            return -1;
        show_str(shown, sizeof shown, label, s, len);
        return FAIL(at, "%s is not a valid %s", shown, tp__schema_format_name(n->format));
    }
    return 0;
}

static int
check_string(const struct schema_node *n, const json_t *v, const struct schema_seg *at,
             tp_error *err)
{
    return check_str(n, json_string_value(v), json_string_length(v), "", at, err);
}

static bool
key_is(const json_t *v, const char *key, size_t len)
{
    return json_is_string(v) && json_string_length(v) == len &&
           memcmp(json_string_value(v), key, len) == 0;
}

/*
 * propertyNames: a member name checked as a string against n, without
 * making a JSON string of it. Only what applies to strings can apply.
 */
static int
check_key(const struct schema_node *n, const char *key, const struct schema_seg *at, tp_error *err)
{
    size_t len = strlen(key), k;
    char shown[VALUE_SHOWN * 2 + 16], list[160];
    const json_t *e;
    bool found = false;
    if (n->never || !(n->types & TP__ST_STR)) {
        if (err == NULL)
            return -1;
        show_str(shown, sizeof shown, "", key, len);
        return FAIL(at, "field name %s is not allowed", shown);
    }
    if (n->konst != NULL && !key_is(n->konst, key, len)) {
        if (err == NULL)
            return -1;
        show_str(shown, sizeof shown, "", key, len);
        fmt_value(list, sizeof list, n->konst, VALUE_SHOWN);
        return FAIL(at, "expected field name %s, got %s", list, shown);
    }
    if (n->enums != NULL) {
        json_array_foreach(n->enums, k, e) found = found || key_is(e, key, len);
        if (!found) {
            if (err == NULL)
                return -1;
            show_str(shown, sizeof shown, "field name ", key, len);
            fmt_list(list, sizeof list, n->enums, NULL, json_array_size(n->enums));
            return FAIL(at, "%s is not one of %s", shown, list);
        }
    }
    if (n->ref != NULL && check_key(n->ref, key, at, err) != 0)
        return -1;
    for (size_t i = 0; i < n->n_all_of; i++)
        if (check_key(n->all_of[i], key, at, err) != 0)
            return -1;
    if (n->n_any_of > 0) {
        size_t i;
        for (i = 0; i < n->n_any_of; i++)
            if (check_key(n->any_of[i], key, at, NULL) == 0)
                break;
        if (i == n->n_any_of) {
            /* As explain(): the first branch that takes strings says why. */
            for (i = 0; err != NULL && i < n->n_any_of; i++)
                if ((n->any_of[i]->eff & TP__ST_STR) && check_key(n->any_of[i], key, at, err) != 0)
                    return -1;
            show_str(shown, sizeof shown, "", key, len);
            return FAIL(at, "field name %s is not allowed", shown);
        }
    }
    if (n->n_one_of > 0) {
        size_t count = 0;
        for (size_t i = 0; i < n->n_one_of; i++)
            count += check_key(n->one_of[i], key, at, NULL) == 0;
        if (count != 1) {
            if (err == NULL)
                return -1;
            show_str(shown, sizeof shown, "field name ", key, len);
            return FAIL(at, "%s matches %s alternative of oneOf, expected exactly one", shown,
                        count == 0 ? "no" : "more than one");
        }
    }
    return check_str(n, key, len, "field name ", at, err);
}

static int
check_number(const struct schema_node *n, const json_t *v, const struct schema_seg *at,
             tp_error *err)
{
    const char *why = NULL;
    const json_t *bound = NULL;
    if (n->minimum != NULL && num_cmp(v, n->minimum) < 0)
        why = "%s is less than the minimum %s", bound = n->minimum;
    else if (n->xminimum != NULL && num_cmp(v, n->xminimum) <= 0)
        why = "%s is less than or equal to the exclusive minimum %s", bound = n->xminimum;
    else if (n->maximum != NULL && num_cmp(v, n->maximum) > 0)
        why = "%s is greater than the maximum %s", bound = n->maximum;
    else if (n->xmaximum != NULL && num_cmp(v, n->xmaximum) >= 0)
        why = "%s is greater than or equal to the exclusive maximum %s", bound = n->xmaximum;
    else if (n->multiple != NULL && !is_multiple(v, n->multiple))
        why = "%s is not a multiple of %s", bound = n->multiple;
    if (why == NULL) {
        if (n->dec_str == NULL)
            return 0;
        /* A Decimal written as a number: its digits must pass the pattern
         * of the string form (max_digits, decimal_places). */
        char text[400];
        if (!tp__schema_number_text(v, text, sizeof text)) {
            if (err == NULL)
                return -1;
            char a[40];
            fmt_value(a, sizeof a, v, VALUE_SHOWN);
            return FAIL(at, "%s is not a valid decimal", a);
        }
        return check_str(n->dec_str, text, strlen(text), "", at, err);
    }
    if (err == NULL)
        return -1;
    char a[40], b[40];
    fmt_value(a, sizeof a, v, VALUE_SHOWN);
    fmt_value(b, sizeof b, bound, VALUE_SHOWN);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    return FAIL(at, why, a, b);
#pragma GCC diagnostic pop
}

static const char *
plural(size_t n)
{
    return n == 1 ? "" : "s";
}

static int
check_array(const struct schema_node *n, const json_t *v, const struct schema_seg *at,
            tp_error *err)
{
    size_t size = json_array_size(v);
    size_t max = n->max_items;
    if (n->items_false && n->n_prefix < max)
        max = n->n_prefix;
    if (size < n->min_items)
        return FAIL(at, "expected at least %zu item%s, got %zu", n->min_items, plural(n->min_items),
                    size);
    if (size > max)
        return FAIL(at, "expected at most %zu item%s, got %zu", max, plural(max), size);
    for (size_t i = 0; i < size; i++) {
        const struct schema_node *item = i < n->n_prefix ? n->prefix[i] : n->items;
        struct schema_seg seg = {at, NULL, NULL, i};
        if (item != NULL && tp__schema_check(item, json_array_get(v, i), &seg, err) != 0)
            return -1;
    }
    if (n->unique) {
        /* Quadratic, without allocating: sets in models are small. */
        for (size_t j = 1; j < size; j++)
            for (size_t i = 0; i < j; i++)
                if (values_equal(json_array_get(v, i), json_array_get(v, j)))
                    return FAIL(at, "items %zu and %zu are equal, expected unique items", i, j);
    }
    return 0;
}

static bool
absent(const json_t *m)
{
    return m == NULL || json_is_null(m);
}

/*
 * patternProperties: checks member m against every pattern its key
 * matches. Returns the number matched, or -1 on an error. A key whose
 * pattern check takes too long is refused, as a value would be.
 */
static int
check_pattern_props(const struct schema_node *n, const char *key, const json_t *m,
                    const struct schema_seg *at, tp_error *err)
{
    int matched = 0;
    size_t len = strlen(key);
    for (size_t i = 0; i < n->n_pprops; i++) {
        int r = tp__schema_pattern_match(n->pprops[i].re, key, len);
        if (r == TP__RE_LIMIT) {
            char shown[VALUE_SHOWN * 2 + 16], pshown[VALUE_SHOWN * 2];
            if (err == NULL)
                return -1;
            show_str(shown, sizeof shown, "field name ", key, len);
            show_str(pshown, sizeof pshown, "", n->pprops[i].pattern, strlen(n->pprops[i].pattern));
            return FAIL(at,
                        "%s took too long to match against the pattern %s (the step limit of "
                        "pattern checks was reached)",
                        shown, pshown);
        }
        if (r != TP__RE_YES)
            continue;
        matched++;
        if (tp__schema_check(n->pprops[i].node, m, at, err) != 0)
            return -1;
    }
    if (matched == 0 && n->pprops_only) {
        char shown[VALUE_SHOWN * 2 + 16], pshown[VALUE_SHOWN * 2];
        if (err == NULL)
            return -1;
        show_str(shown, sizeof shown, "field name ", key, len);
        show_str(pshown, sizeof pshown, "", n->pprops[0].pattern, strlen(n->pprops[0].pattern));
        return FAIL(at, "%s does not match the pattern %s", shown, pshown);
    }
    return matched;
}

static int
check_object(const struct schema_node *n, const json_t *v, const struct schema_seg *at,
             tp_error *err)
{
    /* Declared properties first, in the schema's order, so the first error
     * does not depend on the order of the value's members. */
    for (size_t i = 0; i < n->n_props; i++) {
        const struct schema_prop *p = &n->props[i];
        const json_t *m = json_object_get(v, p->name);
        struct schema_seg seg = {at, p->name, NULL, 0};
        /* A null member is an absent one, but for a required Optional[X],
         * whose null is a value. */
        if (m == NULL || (json_is_null(m) && !p->keeps_null)) {
            if (p->required && !p->absent_ok)
                return FAIL(&seg, "required field is missing");
            continue;
        }
        if (tp__schema_check(p->node, m, &seg, err) != 0)
            return -1;
    }
    for (size_t i = 0; i < n->n_req_extra; i++) {
        struct schema_seg seg = {at, n->req_extra[i], NULL, 0};
        if (!n->extra_absent_ok && absent(json_object_get(v, n->req_extra[i])))
            return FAIL(&seg, "required field is missing");
    }
    if (!n->addl_false && n->addl == NULL && n->names == NULL && n->n_pprops == 0 &&
        n->min_props == 0 && n->max_props == SIZE_MAX)
        return 0;
    size_t count = 0;
    const char *key;
    json_t *m;
    json_object_foreach((json_t *)v, key, m)
    {
        struct schema_seg seg = {at, key, NULL, 0};
        if (json_is_null(m))
            continue;
        count++;
        if (n->names != NULL && check_key(n->names, key, &seg, err) != 0)
            return -1;
        if (n->n_props > 0 && tp__schema_find_prop(n, key) != NULL)
            continue;
        int matched = check_pattern_props(n, key, m, &seg, err);
        if (matched < 0)
            return -1;
        if (matched > 0)
            continue;
        if (n->addl_false)
            return FAIL(&seg, "unexpected field");
        if (n->addl != NULL && tp__schema_check(n->addl, m, &seg, err) != 0)
            return -1;
    }
    if (count < n->min_props)
        return FAIL(at, "expected at least %zu field%s, got %zu", n->min_props,
                    plural(n->min_props), count);
    if (count > n->max_props)
        return FAIL(at, "expected at most %zu field%s, got %zu", n->max_props, plural(n->max_props),
                    count);
    return 0;
}

/*
 * Explains why no branch of an anyOf or oneOf passed. With a discriminator
 * and a tag that names a branch, that branch's error; otherwise the first
 * branch that accepts the value's type, whose error is the most specific
 * one; otherwise the union of the branches' types.
 */
static int
explain(const struct schema_node *n, struct schema_node *const *branches, size_t nb,
        const json_t *v, const struct schema_seg *at, tp_error *err)
{
    unsigned t = tp__schema_type_of(v), all = 0;
    if (err == NULL)
        return -1;
    if (n->discr != NULL && n->n_tags > 0 && json_is_object(v)) {
        const json_t *tag = json_object_get(v, n->discr);
        struct schema_seg seg = {at, n->discr, NULL, 0};
        if (absent(tag))
            return FAIL(&seg, "required field is missing");
        if (json_is_string(tag)) {
            char shown[VALUE_SHOWN * 2], list[160];
            for (size_t i = 0; i < n->n_tags; i++)
                if (strcmp(n->tags[i].tag, json_string_value(tag)) == 0)
                    return tp__schema_check(n->tags[i].node, v, at, err) != 0
                               ? -1
                               : FAIL(at, "matches no alternative");
            fmt_value(shown, sizeof shown, tag, VALUE_SHOWN);
            fmt_list(list, sizeof list, NULL, n->tags, n->n_tags);
            return FAIL(&seg, "%s is not one of %s", shown, list);
        }
    }
    for (size_t i = 0; i < nb; i++) {
        all |= branches[i]->eff;
        if (branches[i]->eff & t && tp__schema_check(branches[i], v, at, err) != 0)
            return -1;
    }
    return fail_type(err, at, all, v);
}

static int
check_any(const struct schema_node *n, const json_t *v, const struct schema_seg *at, tp_error *err)
{
    for (size_t i = 0; i < n->n_any_of; i++)
        if (tp__schema_check(n->any_of[i], v, at, NULL) == 0)
            return 0;
    return explain(n, n->any_of, n->n_any_of, v, at, err);
}

static int
check_one(const struct schema_node *n, const json_t *v, const struct schema_seg *at, tp_error *err)
{
    size_t count = 0, first = 0;
    for (size_t i = 0; i < n->n_one_of; i++) {
        if (tp__schema_check(n->one_of[i], v, at, NULL) != 0)
            continue;
        if (count++ == 0) {
            first = i;
            continue;
        }
        return FAIL(at, "matches alternatives %zu and %zu of oneOf, expected exactly one", first,
                    i);
    }
    if (count == 1)
        return 0;
    return explain(n, n->one_of, n->n_one_of, v, at, err);
}

static int
check_enum(const struct schema_node *n, const json_t *v, const struct schema_seg *at, tp_error *err)
{
    size_t size = json_array_size(n->enums);
    char shown[VALUE_SHOWN * 2], list[160];
    for (size_t i = 0; i < size; i++)
        if (values_equal(json_array_get(n->enums, i), v))
            return 0;
    if (err == NULL)
        return -1;
    fmt_value(shown, sizeof shown, v, VALUE_SHOWN);
    if (size == 1) {
        fmt_value(list, sizeof list, json_array_get(n->enums, 0), VALUE_SHOWN);
        return FAIL(at, "expected %s, got %s", list, shown);
    }
    fmt_list(list, sizeof list, n->enums, NULL, size);
    return FAIL(at, "%s is not one of %s", shown, list);
}

int
tp__schema_check(const struct schema_node *n, const json_t *v, const struct schema_seg *at,
                 tp_error *err)
{
    unsigned t = tp__schema_type_of(v);
    if (n->never)
        return FAIL(at, "no value is allowed here");
    if (!(n->types & t))
        return fail_type(err, at, n->types, v);
    if (n->konst != NULL && !values_equal(n->konst, v)) {
        char a[VALUE_SHOWN * 2], b[VALUE_SHOWN * 2];
        if (err == NULL)
            return -1;
        fmt_value(a, sizeof a, n->konst, VALUE_SHOWN);
        fmt_value(b, sizeof b, v, VALUE_SHOWN);
        return FAIL(at, "expected %s, got %s", a, b);
    }
    if (n->enums != NULL && check_enum(n, v, at, err) != 0)
        return -1;
    if (n->ref != NULL && tp__schema_check(n->ref, v, at, err) != 0)
        return -1;
    for (size_t i = 0; i < n->n_all_of; i++)
        if (tp__schema_check(n->all_of[i], v, at, err) != 0)
            return -1;
    if (n->n_any_of > 0 && check_any(n, v, at, err) != 0)
        return -1;
    if (n->n_one_of > 0 && check_one(n, v, at, err) != 0)
        return -1;
    switch (t) {
    case TP__ST_STR: return check_string(n, v, at, err);
    case TP__ST_INT:
    case TP__ST_REAL: return check_number(n, v, at, err);
    case TP__ST_ARR: return check_array(n, v, at, err);
    case TP__ST_OBJ: return check_object(n, v, at, err);
    default: return 0;
    }
}

int
tp__schema_check_member(const struct schema_node *n, const char *key, const json_t *v,
                        tp_error *err)
{
    struct schema_seg seg = {NULL, key, NULL, 0};
    const struct schema_prop *p = tp__schema_find_prop(n, key);
    if (v == NULL || (json_is_null(v) && !(p != NULL && p->keeps_null))) {
        if (p != NULL)
            return p->required && !p->absent_ok ? FAIL(&seg, "required field is missing") : 0;
        if (!n->extra_absent_ok)
            for (size_t i = 0; i < n->n_req_extra; i++)
                if (strcmp(n->req_extra[i], key) == 0)
                    return FAIL(&seg, "required field is missing");
        return 0;
    }
    if (n->names != NULL && check_key(n->names, key, &seg, err) != 0)
        return -1;
    if (p != NULL)
        return tp__schema_check(p->node, v, &seg, err);
    int matched = check_pattern_props(n, key, v, &seg, err);
    if (matched != 0)
        return matched < 0 ? -1 : 0;
    if (n->addl_false)
        return FAIL(&seg, "unexpected field");
    if (n->addl != NULL)
        return tp__schema_check(n->addl, v, &seg, err);
    return 0;
}
