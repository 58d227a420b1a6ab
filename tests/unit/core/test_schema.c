/*
 * Schemas: the data-driven cases of tests/cases/schema and schema-load
 * (README.md there), then what they cannot show: member-wise validation
 * against whole-value validation, the pattern dialect, messages, the
 * allocator.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "core/schema.h"
#include "core/schema_int.h"
#include "support.h"
#include "transports.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static char *
case_file(const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc(len);
    snprintf(p, len, "%s/%s", dir, name);
    return p;
}

/* The case directories of a topic: those with a schema.json (the topic
 * also holds README.md and generate.py). */
static size_t
case_dirs(const char *topic, char ***dirs)
{
    size_t n = tpt_case_dirs(topic, dirs), k = 0;
    for (size_t i = 0; i < n; i++) {
        char *path = case_file((*dirs)[i], "schema.json");
        FILE *f = fopen(path, "r");
        free(path);
        if (f != NULL) {
            fclose(f);
            (*dirs)[k++] = (*dirs)[i];
        } else {
            free((*dirs)[i]);
        }
    }
    return k;
}

/* Loads dir/name if it exists, else NULL. */
static json_t *
load_optional(const char *dir, const char *name)
{
    char *path = case_file(dir, name);
    json_t *v = NULL;
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        fclose(f);
        v = tpt_load_json(path);
    }
    free(path);
    return v;
}

static tp_schema *
load_case_schema(const char *dir)
{
    char *path = case_file(dir, "schema.json");
    char *text = tpt_read_file(path, NULL);
    tp_error err = {0, ""};
    cr_assert_not_null(text, "%s: cannot read", path);
    tp_schema *s = tp_schema_new(text, &err);
    cr_assert_not_null(s, "%s: %s", path, err.message);
    cr_assert_eq(err.code, TP_OK);
    free(text);
    free(path);
    return s;
}

static tp_schema *
schema_from(const char *text)
{
    tp_error err = {0, ""};
    tp_schema *s = tp_schema_new(text, &err);
    cr_assert_not_null(s, "%s: %s", text, err.message);
    return s;
}

/* A schema with one string property "s" holding `pattern`. */
static tp_schema *
pattern_schema(const char *pattern, tp_error *err)
{
    json_t *doc = json_pack("{s:s, s:{s:{s:s, s:s}}}", "type", "object", "properties", "s", "type",
                            "string", "pattern", pattern);
    char *text = json_dumps(doc, 0);
    tp_schema *s = tp_schema_new(text, err);
    free(text);
    json_decref(doc);
    return s;
}

static int
matches(tp_schema *s, const char *str)
{
    json_t *v = json_pack("{s:s}", "s", str);
    int rc = tp__schema_validate(s, v, NULL);
    json_decref(v);
    return rc == TP_OK;
}

/* ------------------------------------------------------------------------ */
/* Data-driven cases                                                         */
/* ------------------------------------------------------------------------ */

Test(schema, cases_exist)
{
    char **dirs;
    size_t n = case_dirs("schema", &dirs);
    size_t with_invalid = 0, with_defaults = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *inv = load_optional(dirs[i], "invalid.json");
        json_t *def = load_optional(dirs[i], "defaults.json");
        with_invalid += inv != NULL;
        with_defaults += def != NULL;
        json_decref(inv);
        json_decref(def);
    }
    tpt_free_dirs(dirs, n);
    cr_assert_geq(n, 15, "only %zu schema cases", n);
    cr_assert_geq(with_invalid, 15);
    cr_assert_geq(with_defaults, 10);
}

Test(schema, cases_valid)
{
    char **dirs;
    size_t n = case_dirs("schema", &dirs), total = 0;
    for (size_t i = 0; i < n; i++) {
        tp_schema *s = load_case_schema(dirs[i]);
        json_t *valid = load_optional(dirs[i], "valid.json");
        size_t k;
        json_t *v;
        cr_assert_not_null(valid, "%s: no valid.json", dirs[i]);
        json_array_foreach(valid, k, v)
        {
            tp_error err = {0, ""};
            char *text = json_dumps(v, JSON_ENCODE_ANY);
            cr_assert_eq(tp__schema_validate(s, v, &err), TP_OK, "%s: valid[%zu]: %s", dirs[i], k,
                         err.message);
            cr_assert_eq(tp_schema_validate(s, text, &err), TP_OK, "%s: valid[%zu] as text",
                         dirs[i], k);
            free(text);
            total++;
        }
        json_decref(valid);
        tp_schema_free(s);
    }
    tpt_free_dirs(dirs, n);
    cr_assert_geq(total, 40);
}

Test(schema, cases_invalid)
{
    char **dirs;
    size_t n = case_dirs("schema", &dirs), total = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *invalid = load_optional(dirs[i], "invalid.json");
        if (invalid == NULL)
            continue;
        tp_schema *s = load_case_schema(dirs[i]);
        size_t k;
        json_t *c;
        json_array_foreach(invalid, k, c)
        {
            tp_error err = {0, ""};
            json_t *v = json_object_get(c, "value");
            const char *want = json_string_value(json_object_get(c, "error"));
            cr_assert(v != NULL && want != NULL, "%s: invalid[%zu] needs value and error", dirs[i],
                      k);
            cr_assert_eq(tp__schema_validate(s, v, &err), TP_EINVALID, "%s: invalid[%zu] passed",
                         dirs[i], k);
            cr_assert_eq(err.code, TP_EINVALID);
            cr_assert_str_eq(err.message, want, "%s: invalid[%zu]:\n got  %s\n want %s", dirs[i], k,
                             err.message, want);
            /* The public call gives the same answer from text. */
            char *text = json_dumps(v, JSON_ENCODE_ANY);
            tp_error err2 = {0, ""};
            cr_assert_eq(tp_schema_validate(s, text, &err2), TP_EINVALID);
            cr_assert_str_eq(err2.message, want);
            free(text);
            total++;
        }
        json_decref(invalid);
        tp_schema_free(s);
    }
    tpt_free_dirs(dirs, n);
    cr_assert_geq(total, 100);
}

Test(schema, cases_defaults)
{
    char **dirs;
    size_t n = case_dirs("schema", &dirs), total = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *defaults = load_optional(dirs[i], "defaults.json");
        if (defaults == NULL)
            continue;
        tp_schema *s = load_case_schema(dirs[i]);
        size_t k;
        json_t *c;
        json_array_foreach(defaults, k, c)
        {
            json_t *v = json_deep_copy(json_object_get(c, "value"));
            json_t *want = json_object_get(c, "filled");
            cr_assert(v != NULL && want != NULL, "%s: defaults[%zu]", dirs[i], k);
            cr_assert_eq(tp__schema_fill_defaults(s, v), TP_OK);
            char *got = json_dumps(v, JSON_SORT_KEYS), *exp = json_dumps(want, JSON_SORT_KEYS);
            cr_assert(json_equal(v, want), "%s: defaults[%zu]:\n got  %s\n want %s", dirs[i], k,
                      got, exp);
            free(got);
            free(exp);
            /* Filling twice changes nothing more. */
            cr_assert_eq(tp__schema_fill_defaults(s, v), TP_OK);
            cr_assert(json_equal(v, want));
            json_decref(v);
            total++;
        }
        json_decref(defaults);
        tp_schema_free(s);
    }
    tpt_free_dirs(dirs, n);
    cr_assert_geq(total, 15);
}

Test(schema, cases_load_errors)
{
    char **dirs;
    size_t n = case_dirs("schema-load", &dirs);
    for (size_t i = 0; i < n; i++) {
        char *path = case_file(dirs[i], "schema.json");
        char *text = tpt_read_file(path, NULL);
        json_t *e = load_optional(dirs[i], "error.json");
        const char *want = json_string_value(json_object_get(e, "error"));
        tp_error err = {0, ""};
        cr_assert(text != NULL && want != NULL, "%s: needs schema.json and error.json", dirs[i]);
        tp_schema *s = tp_schema_new(text, &err);
        cr_assert_null(s, "%s: loaded", dirs[i]);
        cr_assert_eq(err.code, TP_ESCHEMA, "%s: code %d (%s)", dirs[i], err.code, err.message);
        cr_assert_str_eq(err.message, want, "%s:\n got  %s\n want %s", dirs[i], err.message, want);
        json_decref(e);
        free(text);
        free(path);
    }
    tpt_free_dirs(dirs, n);
    cr_assert_geq(n, 30);
}

/* ------------------------------------------------------------------------ */
/* Member-wise validation agrees with whole-value validation                 */
/* ------------------------------------------------------------------------ */

/* Adds every member value of an object to a pool of candidates. */
static void
collect_members(json_t *pool, json_t *obj)
{
    const char *key;
    json_t *m;
    if (!json_is_object(obj))
        return;
    json_object_foreach(obj, key, m)
    {
        json_t *list = json_object_get(pool, key);
        if (list == NULL) {
            list = json_array();
            json_object_set_new(pool, key, list);
        }
        json_array_append(list, m);
    }
}

Test(schema, member_agrees_with_whole)
{
    char **dirs;
    size_t n = case_dirs("schema", &dirs), compared = 0, invalid = 0;
    for (size_t d = 0; d < n; d++) {
        tp_schema *s = load_case_schema(dirs[d]);
        json_t *valid = load_optional(dirs[d], "valid.json");
        json_t *bad = load_optional(dirs[d], "invalid.json");
        json_t *pool = json_object();
        size_t i;
        json_t *v;
        /* Candidates for each key: its values in every instance, valid or not,
         * plus a few of every type. */
        json_array_foreach(valid, i, v) collect_members(pool, v);
        json_array_foreach(bad, i, v) collect_members(pool, json_object_get(v, "value"));
        json_t *extra = json_pack("[s, i, f, b, n, [], {}]", "zz", 3, 1.5, 1);
        const char *key;
        json_t *cands;
        json_object_foreach(pool, key, cands)
        {
            json_array_extend(cands, extra);
        }
        json_object_set_new(pool, "undeclared_key", json_deep_copy(extra));

        json_array_foreach(valid, i, v)
        {
            json_object_foreach(pool, key, cands)
            {
                /* k == size: the member removed. */
                for (size_t k = 0; k <= json_array_size(cands); k++) {
                    json_t *m = k < json_array_size(cands) ? json_array_get(cands, k) : NULL;
                    json_t *changed = json_deep_copy(v);
                    if (m != NULL)
                        json_object_set(changed, key, m);
                    else
                        json_object_del(changed, key);
                    tp_error whole = {0, ""}, member = {0, ""};
                    int rw = tp__schema_validate(s, changed, &whole);
                    int rm = tp__schema_validate_member(s, key, m, &member);
                    char *t = json_dumps(changed, JSON_COMPACT);
                    cr_assert_eq(rw, rm, "%s: %s, member %s: whole %d (%s), member %d (%s)",
                                 dirs[d], t, key, rw, whole.message, rm, member.message);
                    /* Only this member is bad, so both name it the same way. */
                    if (rw != TP_OK) {
                        cr_assert_str_eq(whole.message, member.message, "%s: %s", dirs[d], t);
                        invalid++;
                    }
                    free(t);
                    json_decref(changed);
                    compared++;
                }
            }
        }
        json_decref(extra);
        json_decref(pool);
        json_decref(valid);
        json_decref(bad);
        tp_schema_free(s);
    }
    tpt_free_dirs(dirs, n);
    cr_assert_geq(compared, 1000, "compared %zu", compared);
    cr_assert_geq(invalid, 300, "only %zu invalid changes", invalid);
}

Test(schema, member_checks_required_and_undeclared)
{
    tp_schema *s = schema_from("{\"type\":\"object\",\"additionalProperties\":false,"
                               "\"properties\":{\"a\":{\"type\":\"string\"},"
                               "\"o\":{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"null\"}]}},"
                               "\"required\":[\"a\",\"o\"]}");
    tp_error err = {0, ""};
    json_t *str = json_string("x"), *num = json_integer(1);
    cr_assert_eq(tp__schema_validate_member(s, "a", str, &err), TP_OK);
    cr_assert_eq(tp__schema_validate_member(s, "a", NULL, &err), TP_EINVALID);
    cr_assert_str_eq(err.message, "a: required field is missing");
    cr_assert_eq(tp__schema_validate_member(s, "a", json_null(), &err), TP_EINVALID);
    cr_assert_eq(tp__schema_validate_member(s, "a", num, &err), TP_EINVALID);
    cr_assert_str_eq(err.message, "a: expected string, got number");
    /* Required Optional[int]: null is a value, absent is missing (as in
     * pydantic). */
    cr_assert_eq(tp__schema_validate_member(s, "o", json_null(), &err), TP_OK);
    cr_assert_eq(err.code, TP_OK);
    cr_assert_eq(tp__schema_validate_member(s, "o", NULL, &err), TP_EINVALID);
    cr_assert_str_eq(err.message, "o: required field is missing");
    cr_assert_eq(tp__schema_validate_member(s, "zz", num, &err), TP_EINVALID);
    cr_assert_str_eq(err.message, "zz: unexpected field");
    cr_assert_eq(tp__schema_validate_member(s, "zz", NULL, &err), TP_OK);
    cr_assert_eq(tp__schema_validate_member(s, NULL, num, &err), TP_EARG);
    json_decref(str);
    json_decref(num);
    tp_schema_free(s);
}

/* ------------------------------------------------------------------------ */
/* Many properties: the sorted index                                          */
/* ------------------------------------------------------------------------ */

Test(schema, many_properties_use_the_index)
{
    json_t *props = json_object(), *value = json_object();
    char name[16];
    for (int i = 0; i < 60; i++) {
        snprintf(name, sizeof name, "p%02d", (i * 37) % 60);
        json_object_set_new(props, name, json_pack("{s:s}", "type", "integer"));
        json_object_set_new(value, name, json_integer(i));
    }
    json_t *doc = json_pack("{s:s, s:o, s:b}", "type", "object", "properties", props,
                            "additionalProperties", 0);
    char *text = json_dumps(doc, 0);
    tp_schema *s = schema_from(text);
    tp_error err = {0, ""};
    cr_assert_eq(tp__schema_validate(s, value, &err), TP_OK, "%s", err.message);
    for (int i = 0; i < 60; i++) {
        snprintf(name, sizeof name, "p%02d", i);
        json_t *str = json_string("x");
        cr_assert_eq(tp__schema_validate_member(s, name, str, &err), TP_EINVALID, "%s", name);
        char want[64];
        snprintf(want, sizeof want, "%s: expected integer, got string", name);
        cr_assert_str_eq(err.message, want);
        json_decref(str);
    }
    json_object_set_new(value, "p60", json_integer(1));
    cr_assert_eq(tp__schema_validate(s, value, &err), TP_EINVALID);
    cr_assert_str_eq(err.message, "p60: unexpected field");
    free(text);
    json_decref(doc);
    json_decref(value);
    tp_schema_free(s);
}

/* ------------------------------------------------------------------------ */
/* The pattern dialect                                                       */
/* ------------------------------------------------------------------------ */

Test(schema, regex_behaviour)
{
    static const struct {
        const char *pattern, *str;
        int match;
    } cases[] = {
        {"\\d{3}", "ab123", 1}, /* unanchored, as in JSON Schema */
        {"^\\d{3}$", "ab123", 0},
        {"^\\d+$", "\xd9\xa3", 1},            /* \d is Unicode, as in Python and Rust */
        {"^\\w+$", "\xc3\xa9t\xc3\xa9_1", 1}, /* \w is Unicode */
        {"^\\w+$", "a-b", 0},
        {"^\\s$", "\t", 1},
        {"^.$", "\xc3\xa9", 1}, /* '.' is one character, not one byte */
        {"^.$", "\n", 0},
        {"^..$", "\xf0\x9f\x98\x80x", 1},
        {"^[^a]$", "\xc3\xa9", 1},
        {"^[\xc3\xa0-\xc3\xbf]+$", "\xc3\xa9\xc3\xa0", 1},
        {"^[\xc3\xa0-\xc3\xbf]+$", "e", 0},
        {"^[\\[\\]]+$", "[]][", 1},
        {"^[\\\\/]$", "\\", 1},
        {"^[a\\-z]+$", "-az", 1},
        {"^[a\\-z]+$", "b", 0},
        {"^(?:ab|cd)+$", "abcdab", 1},
        {"^(?P<x>a)(?P=x)$", "aa", 1},
        {"^a.*?b$", "axxb", 1},
        {"^\\$\\.\\*$", "$.*", 1},
        {"^\\x41\\u00e9\\u{1F600}$", "A\xc3\xa9\xf0\x9f\x98\x80", 1},
        /* "$" is the end only, as in Rust (pydantic's default engine). */
        {"^a$", "a\n", 0},
        {"a\\Z", "a", 1},
        /* What the POSIX translation refused. */
        {"(?i)^abc$", "AbC", 1},
        {"(?i)^\xc3\xa9$", "\xc3\x89", 1}, /* Unicode case folding */
        {"^\\p{L}+$", "\xc3\xa9t\xc3\xa9", 1},
        {"^\\p{L}+$", "a1", 0},
        {"\\bcat\\b", "a cat!", 1},
        {"\\bcat\\b", "concatenate", 0},
        {"^(?<!x)a", "a", 1},
        {"q(?=u)", "quit", 1},
        {"q(?!u)", "quit", 0},
        /* pydantic's Decimal patterns, and a password rule. */
        {"^(?!^[-+.]*$)[+-]?0*\\d*\\.?\\d*$", "-1.5", 1},
        {"^(?!^[-+.]*$)[+-]?0*\\d*\\.?\\d*$", "+.", 0},
        {"^(?!^[-+.]*$)[+-]?0*\\d*\\.?\\d*$", "", 0},
        {"^(?!^[-+.]*$)[+-]?0*(?:\\d{0,3}|(?=[\\d.]{1,6}0*$)\\d{0,3}\\.\\d{0,2}0*$)", "123.45", 1},
        /* Its first branch is not anchored: the pattern alone takes
         * "1.234" (schema_format.c counts the digits as pydantic does). */
        {"^(?!^[-+.]*$)[+-]?0*(?:\\d{0,3}|(?=[\\d.]{1,6}0*$)\\d{0,3}\\.\\d{0,2}0*$)", "1.234", 1},
        {"^(?=.*\\d)(?=.*[a-z]).{6,}$", "abc123", 1},
        {"^(?=.*\\d)(?=.*[a-z]).{6,}$", "abcdef", 0},
        {"^(?=.*\\d)(?=.*[a-z]).{6,}$", "123456", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tp_error err = {0, ""};
        tp_schema *s = pattern_schema(cases[i].pattern, &err);
        cr_assert_not_null(s, "%s: %s", cases[i].pattern, err.message);
        cr_assert_eq(matches(s, cases[i].str), cases[i].match, "%s on \"%s\"", cases[i].pattern,
                     cases[i].str);
        tp_schema_free(s);
    }
}

Test(schema, string_with_nul_is_matched_whole)
{
    tp_error err = {0, ""};
    tp_schema *s = pattern_schema("^a$", &err);
    cr_assert_not_null(s, "%s", err.message);
    json_t *v = json_pack("{s:s#}", "s", "a\0b", (size_t)3);
    cr_assert_eq(tp__schema_validate(s, v, &err), TP_EINVALID, "the NUL hid the rest");
    json_decref(v);
    tp_schema_free(s);
}

Test(schema, regex_compile_error_is_a_load_error)
{
    tp_error err = {0, ""};
    cr_assert_null(pattern_schema("(ab", &err));
    cr_assert_eq(err.code, TP_ESCHEMA);
    cr_assert(strncmp(err.message, "properties.s.pattern: invalid pattern: ", 39) == 0, "%s",
              err.message);
    cr_assert_not_null(strstr(err.message, "(at offset 3)"), "%s", err.message);
    cr_assert_null(pattern_schema("^(?=a", &err));
    cr_assert_eq(err.code, TP_ESCHEMA);
    cr_assert_null(pattern_schema("\\x{41}", &err));
    cr_assert_str_eq(err.message,
                     "properties.s.pattern: write \\u{...} for \"\\x{...}\" (at offset 0)");
}

/* The time of this thread since t0 (CLOCK_THREAD_CPUTIME_ID): a machine
 * busy with other work must not fail the bounds below. */
static double
elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* The bound of issue 12: 50 ms of checking per value, whatever the
 * pattern; sanitizers make each step slower between two clock reads. */
#if defined(__SANITIZE_ADDRESS__)
#define CHECK_BOUND_MS 150.0
#else
#define CHECK_BOUND_MS 50.0
#endif

/* Issue 11, item 7: 50 stacked stars took 9.6 s to compile. Compiling is
 * now bounded by length and nesting, and fast. */
Test(schema, pathological_patterns_compile_fast_or_are_refused)
{
    char stars[256], nested[512], deep[1024];
    size_t a = 0, b = 0, d = 0;
    for (int i = 0; i < 50; i++) {
        stars[a++] = 'a';
        stars[a++] = '*';
        nested[b++] = '(';
    }
    nested[b++] = 'a';
    for (int i = 0; i < 50; i++) {
        nested[b++] = ')';
        nested[b++] = '*';
    }
    for (int i = 0; i < 70; i++)
        deep[d++] = '(';
    for (int i = 0; i < 70; i++)
        deep[d++] = ')';
    stars[a] = nested[b] = deep[d] = '\0';
    const char *loads[] = {stars, nested, "(a*)*(a*)*(a*)*(a*)*(a*)*(a*)*(a*)*(a*)*(a*)*(a*)*b"};
    for (size_t i = 0; i < sizeof loads / sizeof loads[0]; i++) {
        struct timespec t0;
        tp_error err = {0, ""};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
        tp_schema *s = pattern_schema(loads[i], &err);
        double ms = elapsed_ms(&t0);
        cr_assert_not_null(s, "%s: %s", loads[i], err.message);
        cr_assert_lt(ms, 200.0, "%s took %.1f ms to compile", loads[i], ms);
        tp_schema_free(s);
    }
    tp_error err = {0, ""};
    cr_assert_null(pattern_schema(deep, &err), "70 nested groups");
    cr_assert_not_null(strstr(err.message, "parentheses are too deeply nested"), "%s", err.message);
    char *big = malloc(TP__PATTERN_MAX + 2);
    memset(big, 'a', TP__PATTERN_MAX + 1);
    big[TP__PATTERN_MAX + 1] = '\0';
    cr_assert_null(pattern_schema(big, &err));
    cr_assert_str_eq(err.message, "properties.s.pattern: is longer than 4096 bytes");
    free(big);
}

/*
 * The worst patterns on the longest strings: every check ends within the
 * budget (TP__PATTERN_BUDGET_STEPS steps for one validation) and refuses the value
 * with a message saying so. glibc's regexec took 9.5 s for the first one at
 * 40 000 characters.
 */
Test(schema, pattern_checks_are_bounded_in_time)
{
    static const char *const worst[] = {
        "a[^\\n]*b",  "a[^\\n]*[bc]", "(a+)+[bc]",         "(a|aa)*[bc]",    "(?:a*)*[bc]",
        "(?=a*[bc])", "(?=a*a*[bc])", "(?:(?=a*$)a)*[bc]", "a.{0,1000}[bc]", "^(\\w+\\s?)*[!]$",
    };
    size_t n = 1000000;
    char *str = malloc(n + 1);
    memset(str, 'a', n);
    str[n] = '\0';
    for (size_t i = 0; i < sizeof worst / sizeof worst[0]; i++) {
        tp_error err = {0, ""};
        tp_schema *s = pattern_schema(worst[i], &err);
        cr_assert_not_null(s, "%s: %s", worst[i], err.message);
        json_t *v = json_pack("{s:s}", "s", str);
        struct timespec t0;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
        int rc = tp__schema_validate(s, v, &err);
        double ms = elapsed_ms(&t0);
        cr_assert_lt(ms, CHECK_BOUND_MS, "%s on 1 MB took %.1f ms", worst[i], ms);
        cr_assert_eq(rc, TP_EINVALID, "%s", worst[i]);
        json_decref(v);
        tp_schema_free(s);
    }
    /* One budget for the whole value: 200 strings of 5 000 characters,
     * each near the budget alone, take it once, not 200 times. */
    tp_error err = {0, ""};
    tp_schema *s = schema_from("{\"type\":\"object\",\"properties\":{\"l\":{\"type\":\"array\","
                               "\"items\":{\"type\":\"string\",\"pattern\":\"(?=a*a*[bc])\"}}}}");
    json_t *list = json_array();
    str[5000] = '\0';
    for (int i = 0; i < 200; i++)
        json_array_append_new(list, json_string(str));
    json_t *v = json_pack("{s:o}", "l", list);
    struct timespec t0;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    int rc = tp__schema_validate(s, v, &err);
    double ms = elapsed_ms(&t0);
    cr_assert_eq(rc, TP_EINVALID);
    cr_assert_lt(ms, CHECK_BOUND_MS, "200 strings took %.1f ms", ms);
    cr_assert(strstr(err.message, "took too long to match against the pattern") != NULL, "%s",
              err.message);
    cr_assert(strncmp(err.message, "l[", 2) == 0, "%s", err.message);
    /* And the budget is the validation's: the next one has its own. */
    json_t *ok = json_pack("{s:[s]}", "l", "ab");
    cr_assert_eq(tp__schema_validate(s, ok, &err), TP_OK, "%s", err.message);
    json_decref(ok);
    json_decref(v);
    tp_schema_free(s);
    free(str);
}

Test(schema, ordinary_patterns_on_long_strings_pass)
{
    /* Linear work on a long string is not cut short. */
    size_t n = 1000000;
    char *str = malloc(n + 2);
    memset(str, 'a', n);
    str[n] = 'b';
    str[n + 1] = '\0';
    const char *pats[] = {"^[a-z]+$", "a[^\\n]*b", "^\\w+$", "b$"};
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++) {
        tp_error err = {0, ""};
        tp_schema *s = pattern_schema(pats[i], &err);
        cr_assert_not_null(s);
        cr_assert(matches(s, str), "%s", pats[i]);
        tp_schema_free(s);
    }
    free(str);
}

/* ------------------------------------------------------------------------ */
/* Lengths, messages, edges                                                  */
/* ------------------------------------------------------------------------ */

Test(schema, lengths_count_code_points)
{
    tp_schema *s = schema_from("{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\","
                               "\"minLength\":2,\"maxLength\":2}}}");
    const char *ok[] = {"ab", "\xc3\xa9\xc3\xa9", "\xf0\x9f\x98\x80\xf0\x9f\x98\x80",
                        "e\xcc\x81" /* e + combining accent: two code points */};
    const char *bad[] = {"a", "abc", "\xc3\xa9", "\xf0\x9f\x98\x80",
                         "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        json_t *v = json_pack("{s:s}", "s", ok[i]);
        cr_assert_eq(tp__schema_validate(s, v, NULL), TP_OK, "%s", ok[i]);
        json_decref(v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *v = json_pack("{s:s}", "s", bad[i]);
        cr_assert_eq(tp__schema_validate(s, v, NULL), TP_EINVALID, "%s", bad[i]);
        json_decref(v);
    }
    tp_schema_free(s);
}

/* Checks that s is valid UTF-8. */
static int
utf8_valid(const char *s)
{
    json_t *v = json_string(s);
    int ok = v != NULL;
    json_decref(v);
    return ok;
}

Test(schema, long_messages_are_cut_safely)
{
    /* A deep path with long keys and a long non-ASCII value. */
    json_t *leaf = json_pack("{s:s}", "type", "integer");
    json_t *doc = leaf, *value = json_string("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    for (int i = 0; i < 12; i++) {
        char key[64];
        snprintf(key, sizeof key, "k%d_\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9_a_rather_long_key", i);
        doc = json_pack("{s:s, s:{s:o}}", "type", "object", "properties", key, doc);
        value = json_pack("{s:o}", key, value);
    }
    char *text = json_dumps(doc, 0);
    tp_schema *s = schema_from(text);
    tp_error err = {0, ""};
    cr_assert_eq(tp__schema_validate(s, value, &err), TP_EINVALID);
    cr_assert_lt(strlen(err.message), sizeof err.message);
    cr_assert(utf8_valid(err.message), "not UTF-8: %s", err.message);
    cr_assert(strncmp(err.message, "...", 3) == 0, "%s", err.message);
    /* The tail of the path, the innermost key, is what is shown. */
    cr_assert_not_null(strstr(err.message, "k0_\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9_a_rather_long_key: "
                                           "expected integer, got string"),
                       "%s", err.message);
    free(text);
    json_decref(doc);
    json_decref(value);
    tp_schema_free(s);
}

Test(schema, long_enum_lists_are_cut)
{
    json_t *vals = json_array();
    for (int i = 0; i < 100; i++) {
        char v[32];
        snprintf(v, sizeof v, "value-\xc3\xa9-%d", i);
        json_array_append_new(vals, json_string(v));
    }
    json_t *doc =
        json_pack("{s:s, s:{s:{s:o}}}", "type", "object", "properties", "e", "enum", vals);
    char *text = json_dumps(doc, 0);
    tp_schema *s = schema_from(text);
    json_t *v = json_pack("{s:s}", "e", "nope");
    tp_error err = {0, ""};
    cr_assert_eq(tp__schema_validate(s, v, &err), TP_EINVALID);
    cr_assert(strncmp(err.message, "e: \"nope\" is not one of \"value-\xc3\xa9-0\", ", 30) == 0,
              "%s", err.message);
    cr_assert_not_null(strstr(err.message, ", ..."), "%s", err.message);
    cr_assert(utf8_valid(err.message));
    free(text);
    json_decref(doc);
    json_decref(v);
    tp_schema_free(s);
}

Test(schema, numbers_in_messages)
{
    tp_schema *s = schema_from("{\"type\":\"object\",\"properties\":{"
                               "\"r\":{\"type\":\"number\",\"maximum\":0.1},"
                               "\"i\":{\"type\":\"integer\",\"minimum\":2.0}}}");
    tp_error err = {0, ""};
    cr_assert_eq(tp_schema_validate(s, "{\"r\": 0.30000000000000004}", &err), TP_EINVALID);
    cr_assert_str_eq(err.message, "r: 0.30000000000000004 is greater than the maximum 0.1");
    cr_assert_eq(tp_schema_validate(s, "{\"r\": 1e300}", &err), TP_EINVALID);
    cr_assert_str_eq(err.message, "r: 1e+300 is greater than the maximum 0.1");
    cr_assert_eq(tp_schema_validate(s, "{\"i\": 1}", &err), TP_EINVALID);
    cr_assert_str_eq(err.message, "i: 1 is less than the minimum 2.0");
    cr_assert_eq(tp_schema_validate(s, "{\"i\": 1.0}", &err), TP_EINVALID);
    cr_assert_str_eq(err.message, "i: 1.0 is less than the minimum 2.0");
    cr_assert_eq(tp_schema_validate(s, "{\"i\": 2.0, \"r\": -1}", &err), TP_OK);
    tp_schema_free(s);
}

Test(schema, public_calls_and_arguments)
{
    tp_error err = {0, ""};
    tp_schema *s = schema_from("{\"title\":\"Doc\",\"type\":\"object\"}");
    cr_assert_str_eq(tp_schema_title(s), "Doc");
    cr_assert_eq(tp_schema_validate(s, "{}", &err), TP_OK);
    cr_assert_eq(tp_schema_validate(s, "{\"a\":", &err), TP_EBADREQUEST);
    cr_assert(strncmp(err.message, "(root): not JSON: ", 18) == 0, "%s", err.message);
    cr_assert_eq(tp_schema_validate(s, NULL, &err), TP_EARG);
    cr_assert_eq(tp_schema_validate(NULL, "{}", &err), TP_EARG);
    cr_assert_eq(tp_schema_validate(s, "[1]", NULL), TP_EINVALID);
    cr_assert_eq(tp__schema_validate(s, NULL, &err), TP_EARG);
    cr_assert_eq(tp__schema_fill_defaults(s, NULL), TP_OK);
    tp_schema_free(s);

    s = schema_from("{\"type\":\"object\"}");
    cr_assert_str_eq(tp_schema_title(s), "");
    tp_schema_free(s);
    cr_assert_str_eq(tp_schema_title(NULL), "");
    tp_schema_free(NULL);

    cr_assert_null(tp_schema_new(NULL, &err));
    cr_assert_eq(err.code, TP_EARG);
    cr_assert_null(tp_schema_new("{\"title\": ", &err));
    cr_assert_eq(err.code, TP_ESCHEMA);
    cr_assert(strncmp(err.message, "(root): not a JSON document: ", 29) == 0, "%s", err.message);
    cr_assert_null(tp_schema_new("{\"type\":\"object\",\"type\":\"object\"}", &err));
    cr_assert_eq(err.code, TP_ESCHEMA);
    cr_assert_not_null(strstr(err.message, "duplicate"), "%s", err.message);
    cr_assert_null(tp_schema_new("{\"type\":\"object\",\"x\":1}", NULL));
}

Test(schema, root_title_through_ref)
{
    char **dirs;
    size_t n = case_dirs("schema", &dirs);
    for (size_t i = 0; i < n; i++) {
        if (strstr(dirs[i], "/recursive") == NULL)
            continue;
        tp_schema *s = load_case_schema(dirs[i]);
        cr_assert_str_eq(tp_schema_title(s), "TreeNode");
        tp_schema_free(s);
    }
    tpt_free_dirs(dirs, n);
}

Test(schema, refcount)
{
    tp_schema *s = schema_from("{\"type\":\"object\",\"title\":\"T\"}");
    cr_assert_eq(tp__schema_ref(s), s);
    tp_schema_free(s);
    /* Still alive: one reference left. */
    cr_assert_str_eq(tp_schema_title(s), "T");
    cr_assert_eq(tp_schema_validate(s, "{}", NULL), TP_OK);
    tp_schema_free(s);
}

Test(schema, null_members_are_absent)
{
    tp_schema *s = schema_from("{\"type\":\"object\",\"properties\":{"
                               "\"a\":{\"type\":\"string\",\"default\":\"d\"},"
                               "\"b\":{\"type\":\"integer\",\"default\":null},"
                               "\"l\":{\"type\":\"array\",\"items\":{\"type\":\"null\"}}},"
                               "\"required\":[\"a\"]}");
    tp_error err = {0, ""};
    cr_assert_eq(tp_schema_validate(s, "{\"a\":null}", &err), TP_EINVALID);
    cr_assert_str_eq(err.message, "a: required field is missing");
    cr_assert_eq(tp_schema_validate(s, "{\"a\":\"x\",\"b\":null,\"l\":[null,null]}", &err), TP_OK);
    /* A null default is no default; a null member gets the default. */
    json_t *v = json_pack("{s:n}", "a");
    cr_assert_eq(tp__schema_fill_defaults(s, v), TP_OK);
    cr_assert_str_eq(json_string_value(json_object_get(v, "a")), "d");
    cr_assert_null(json_object_get(v, "b"));
    json_decref(v);
    tp_schema_free(s);
}

Test(schema, defaults_are_copies)
{
    tp_schema *s = schema_from("{\"type\":\"object\",\"properties\":{"
                               "\"o\":{\"type\":\"object\",\"default\":{\"k\":[1]}}}}");
    json_t *a = json_object(), *b = json_object();
    cr_assert_eq(tp__schema_fill_defaults(s, a), TP_OK);
    json_array_append_new(json_object_get(json_object_get(a, "o"), "k"), json_integer(2));
    cr_assert_eq(tp__schema_fill_defaults(s, b), TP_OK);
    cr_assert_eq(json_array_size(json_object_get(json_object_get(b, "o"), "k")), 1);
    json_t *notobj = json_string("x");
    cr_assert_eq(tp__schema_fill_defaults(s, notobj), TP_OK);
    cr_assert_str_eq(json_string_value(notobj), "x");
    json_decref(notobj);
    json_decref(a);
    json_decref(b);
    tp_schema_free(s);
}

/* ------------------------------------------------------------------------ */
/* The allocator                                                             */
/* ------------------------------------------------------------------------ */

static char *
nested_schema_text(void)
{
    char **dirs;
    size_t n = case_dirs("schema", &dirs);
    char *text = NULL;
    for (size_t i = 0; i < n && text == NULL; i++) {
        if (strstr(dirs[i], "/nested") != NULL) {
            char *path = case_file(dirs[i], "schema.json");
            text = tpt_read_file(path, NULL);
            free(path);
        }
    }
    tpt_free_dirs(dirs, n);
    cr_assert_not_null(text);
    return text;
}

static void
chaos_load(const char *text, bool ok_empty)
{
    tpt_alloc_install();
    for (long n = 1;; n++) {
        tp_error err = {0, ""};
        tpt_fail_after(n);
        tp_schema *s = tp_schema_new(text, &err);
        tpt_fail_disarm();
        if (s != NULL) {
            /* A schema loaded after failures works like any other. */
            cr_assert_eq(tp_schema_validate(s, "{}", NULL) == TP_OK, ok_empty);
            tp_schema_free(s);
            cr_assert_gt(n, 5, "succeeded with allocation %ld failing", n);
            break;
        }
        cr_assert_eq(err.code, TP_ENOMEM, "allocation %ld: %d %s", n, err.code, err.message);
        cr_assert_lt(n, 100000);
    }
    tp_set_allocator(NULL);
}

Test(schema, chaos_load_nested)
{
    char *text = nested_schema_text();
    chaos_load(text, false);
    free(text);
}

Test(schema, chaos_load_every_case)
{
    char **dirs;
    size_t n = case_dirs("schema", &dirs);
    for (size_t i = 0; i < n; i++) {
        char *path = case_file(dirs[i], "schema.json");
        char *text = tpt_read_file(path, NULL);
        tp_schema *plain = load_case_schema(dirs[i]);
        bool ok_empty = tp_schema_validate(plain, "{}", NULL) == TP_OK;
        tp_schema_free(plain);
        chaos_load(text, ok_empty);
        free(text);
        free(path);
    }
    tpt_free_dirs(dirs, n);
}

Test(schema, chaos_fill_defaults)
{
    char *text = nested_schema_text();
    tp_schema *s = schema_from(text);
    json_t *want =
        json_pack("{s:{s:s, s:{s:s, s:s}}, s:[{s:s, s:i, s:i}]}", "customer", "name", "A",
                  "address", "street", "s", "city", "c", "lines", "sku", "x", "qty", 1, "price", 2);
    tpt_alloc_install();
    for (long n = 1;; n++) {
        json_t *v = json_deep_copy(want);
        tpt_fail_after(n);
        int rc = tp__schema_fill_defaults(s, v);
        tpt_fail_disarm();
        json_decref(v);
        if (rc == TP_OK)
            break;
        cr_assert_eq(rc, TP_ENOMEM);
    }
    tp_set_allocator(NULL);
    json_decref(want);
    tp_schema_free(s);
    free(text);
}

Test(schema, validation_does_not_allocate)
{
    char **dirs;
    size_t n = case_dirs("schema", &dirs), checked = 0;
    tpt_alloc_install();
    for (size_t i = 0; i < n; i++) {
        tp_schema *s = load_case_schema(dirs[i]);
        json_t *valid = load_optional(dirs[i], "valid.json");
        size_t k;
        json_t *v;
        tpt_fail_after(1); /* every allocation fails from here */
        json_array_foreach(valid, k, v)
        {
            tp_error err = {0, ""};
            cr_assert_eq(tp__schema_validate(s, v, &err), TP_OK, "%s: %s", dirs[i], err.message);
            const char *key;
            json_t *m;
            json_object_foreach(v, key, m)
            {
                cr_assert_eq(tp__schema_validate_member(s, key, m, &err), TP_OK);
            }
            checked++;
        }
        cr_assert_eq(tpt_alloc_count(), 0, "%s: validation allocated", dirs[i]);
        tpt_fail_disarm();
        json_decref(valid);
        tp_schema_free(s);
    }
    tp_set_allocator(NULL);
    tpt_free_dirs(dirs, n);
    cr_assert_geq(checked, 40);
}

/* ------------------------------------------------------------------------ */
/* Formats pydantic writes (schema_format.c)                                 */
/* ------------------------------------------------------------------------ */

static int
format_ok(const char *format, const char *value, int max_length)
{
    json_t *doc = json_pack("{s:s, s:{s:{s:s, s:s}}}", "type", "object", "properties", "s", "type",
                            "string", "format", format);
    if (max_length > 0)
        json_object_set_new(json_object_get(json_object_get(doc, "properties"), "s"), "maxLength",
                            json_integer(max_length));
    char *text = json_dumps(doc, 0);
    tp_error err = {0, ""};
    tp_schema *s = tp_schema_new(text, &err);
    cr_assert_not_null(s, "%s", err.message);
    int ok = matches(s, value);
    tp_schema_free(s);
    free(text);
    json_decref(doc);
    return ok;
}

Test(schema, pydantic_formats)
{
    static const struct {
        const char *format, *value;
        int max_length, ok;
    } cases[] = {
        /* EmailStr (email-validator's rules, a subset) */
        {"email", "a.b+c@example.com", 0, 1},
        {"email", "x@sub.example.co.uk", 0, 1},
        {"email", "a..b@example.com", 0, 0},
        {"email", ".a@example.com", 0, 0},
        {"email", "a@example", 0, 0},
        {"email", "a@localhost", 0, 0},
        {"email", "a@b.test", 0, 0},
        {"email", "a@-b.com", 0, 0},
        {"email", "a@b.123", 0, 0},
        {"email", "a b@c.com", 0, 0},
        {"email", "Name <a@b.com>", 0, 0},
        {"email", "\xc3\xa9@b.com", 0, 0},
        /* IPv6Address */
        {"ipv6", "::", 0, 1},
        {"ipv6", "1:2:3:4:5:6:7:8", 0, 1},
        {"ipv6", "1::8", 0, 1},
        {"ipv6", "::ffff:1.2.3.4", 0, 1},
        {"ipv6", "1:2:3:4:5:6:1.2.3.4", 0, 1},
        {"ipv6", "fe80::1%eth0", 0, 1},
        {"ipv6", "1:2:3:4:5:6:7:8:9", 0, 0},
        {"ipv6", "1::2::3", 0, 0},
        {"ipv6", ":1:2:3:4:5:6:7", 0, 0},
        {"ipv6", "1:2:3:4:5:6:7::", 0, 1},
        {"ipv6", "1:2:3:4:5:6:7:8::", 0, 0},
        {"ipv6", "12345::", 0, 0},
        {"ipv6", "fe80::1%", 0, 0},
        {"ipv6", "1.2.3.4", 0, 0},
        /* IPv4Address, IPvAnyAddress */
        {"ipv4", "255.255.255.255", 0, 1},
        {"ipv4", "256.0.0.1", 0, 0},
        {"ipv4", "1.2.3.04", 0, 0},
        {"ipv4", "1.2.3", 0, 0},
        {"ipvanyaddress", "::1", 0, 1},
        {"ipvanyaddress", "10.0.0.1", 0, 1},
        {"ipvanyaddress", "10.0.0.1/8", 0, 0},
        /* AnyUrl, HttpUrl (maxLength 2083) */
        {"uri", "https://example.com/a?b=c#d", 0, 1},
        {"uri", "mailto:someone@example.com", 0, 1},
        {"uri", "postgres://u:p@db:5432/x", 0, 1},
        {"uri", "file:///etc/hosts", 0, 1},
        {"uri", "http://", 0, 0},
        {"uri", "http:x", 0, 0},
        {"uri", "//x.com", 0, 0},
        {"uri", "http://a b.com", 0, 0},
        {"uri", "http://a.com/%zz", 0, 0},
        {"uri", "http://a.999", 0, 0},
        {"uri", "http://1.2.3.4:65535/", 0, 1},
        {"uri", "http://1.2.3.4:65536/", 0, 0},
        {"uri", "http://[::1]/", 0, 1},
        {"uri", "http://xn--nxasmq6b.com/", 0, 0},
        {"uri", "ftp://files.example.com", 2083, 0},
        {"uri", "https://example.com", 2083, 1},
        /* timedelta */
        {"duration", "P1D", 0, 1},
        {"duration", "-PT1.5S", 0, 1},
        {"duration", "P1Y2M3W4DT5H6M7S", 0, 1},
        {"duration", "P0.5D", 0, 1},
        {"duration", "P", 0, 0},
        {"duration", "PT", 0, 0},
        {"duration", "P1DT", 0, 0},
        {"duration", "P1H", 0, 0},
        {"duration", "PT1D", 0, 0},
        {"duration", "P1M1Y", 0, 0},
        {"duration", "P999999999D", 0, 1},
        {"duration", "P1000000000D", 0, 0},
        {"duration", "P2739726Y", 0, 1},
        {"duration", "P2739727Y", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(format_ok(cases[i].format, cases[i].value, cases[i].max_length), cases[i].ok,
                     "%s \"%s\"", cases[i].format, cases[i].value);
}

/* The budget covers a whole write: a patch of many members, each a string
 * that passes after many steps of matching, is refused once their sum
 * reaches the budget, not acked after many budgets. */
Test(schema, one_budget_for_a_whole_write)
{
    tp_error err = {0, ""};
    tp_schema *s = schema_from("{\"type\":\"object\",\"additionalProperties\":"
                               "{\"type\":\"string\",\"pattern\":\"(?=a*a*[bc])\"}}");
    /* 150 a's, then "xb": every offset before the x backtracks a*a*, the
     * one after it matches. Measure one member, then send enough of them
     * to take the budget three times over. */
    char str[153];
    memset(str, 'a', 150);
    memcpy(str + 150, "xb", 3);
    json_t *one = json_pack("{s:s}", "k", str);
    tp__schema_budget_begin(s);
    cr_assert_eq(tp__schema_validate(s, one, &err), TP_OK, "%s", err.message);
    uint64_t single = tp__schema_budget_end(s);
    json_decref(one);
    cr_assert_gt(single, 0);
    cr_assert_lt(single, TP__PATTERN_BUDGET_STEPS / 10, "one member took %llu steps",
                 (unsigned long long)single);
    int members = (int)(3 * TP__PATTERN_BUDGET_STEPS / single);
    members = members > 5000 ? 5000 : members;
    struct timespec t0;

    tp_hub *hub = tp_hub_new(NULL, &err);
    tp_session *se = tp_hub_tenant(hub, "t");
    const char *id = tp_session_host(se, s, "{}", &err);
    cr_assert_not_null(id, "%s", err.message);
    tp_conn *c = tp_conn_open(hub, "t", 0, &err);
    size_t len;
    while (tp_conn_next_frame(c, &len) != NULL)
        continue;
    json_t *patch = json_object();
    for (int i = 0; i < members; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        json_object_set_new(patch, key, json_string(str));
    }
    json_t *w = json_pack("{s:s, s:s, s:s, s:i, s:o}", "type", "write", "scope", "private", "id",
                          id, "ref", 1, "patch", patch);
    char *text = json_dumps(w, JSON_COMPACT);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    tp_conn_feed(c, text, strlen(text));
    double ms = elapsed_ms(&t0);
    free(text);
    json_decref(w);
    const char *frame = tp_conn_next_frame(c, &len);
    cr_assert_not_null(frame);
    cr_assert(strstr(frame, "\"code\":\"invalid\"") != NULL, "%d members of %llu steps: %.*s",
              members, (unsigned long long)single, (int)len, frame);
    cr_assert(strstr(frame, "took too long") != NULL, "%.*s", (int)len, frame);
    cr_assert_lt(ms, CHECK_BOUND_MS, "the write took %.1f ms", ms);
    tp_conn_close(c);
    tp_hub_free(hub);
    tp_schema_free(s);
}

/* Whether a frame of len bytes contains `what`. */
static bool
frame_has(const char *frame, size_t len, const char *what)
{
    size_t wl = strlen(what);
    for (size_t i = 0; i + wl <= len; i++)
        if (memcmp(frame + i, what, wl) == 0)
            return true;
    return false;
}

/* Reads the answers a connection has, and counts those containing `what`. */
static int
count_answers(tp_conn *c, const char *what)
{
    int n = 0;
    size_t len;
    const char *frame;
    while ((frame = tp_conn_next_frame(c, &len)) != NULL)
        n += frame_has(frame, len, what);
    return n;
}

/* The hub's clock in the next test: it moves only when the test says. */
static int64_t
frozen_clock(void *user)
{
    return *(int64_t *)user;
}

/* A tenant's writes get a share of pattern checking (schema.h,
 * TP__PATTERN_SHARE_STEPS a second): writes that each take the whole
 * budget are refused with rate_limited once the share is spent, and stop
 * costing; another tenant's writes go on; a second later of the hub's
 * clock, the tenant may write again. Steps, not time: the counts are
 * exact. */
Test(schema, a_tenant_has_a_share_of_pattern_time)
{
    tp_error err = {0, ""};
    tp_schema *s = schema_from("{\"type\":\"object\",\"properties\":{\"s\":"
                               "{\"type\":\"string\",\"pattern\":\"(?=a*a*[bc])\"}}}");
    int64_t now = 1700000000000;
    tp_hub_config cfg = {0};
    cfg.clock = frozen_clock;
    cfg.clock_user = &now;
    tp_hub *hub = tp_hub_new(&cfg, &err);
    cr_assert_not_null(hub, "%s", err.message);
    const char *tid = tp_session_host(tp_hub_tenant(hub, "t"), s, "{}", &err);
    const char *uid = tp_session_host(tp_hub_tenant(hub, "u"), s, "{}", &err);
    cr_assert(tid != NULL && uid != NULL, "%s", err.message);
    tp_conn *t = tp_conn_open(hub, "t", 0, &err), *u = tp_conn_open(hub, "u", 0, &err);
    count_answers(t, "");
    count_answers(u, "");
    char *str = malloc(3001);
    memset(str, 'a', 3000);
    str[3000] = '\0';
    json_t *w = json_pack("{s:s, s:s, s:s, s:i, s:{s:s}}", "type", "write", "scope", "private",
                          "id", tid, "ref", 1, "patch", "s", str);
    free(str);
    int limited = 0, budget = 0;
    for (int i = 0; i < 20; i++) {
        json_object_set_new(w, "ref", json_integer(i + 1));
        char *text = json_dumps(w, JSON_COMPACT);
        tp_conn_feed(t, text, strlen(text));
        free(text);
        size_t len;
        const char *frame;
        while ((frame = tp_conn_next_frame(t, &len)) != NULL) {
            if (frame_has(frame, len, "share of pattern checking"))
                limited++;
            else if (frame_has(frame, len, "took too long"))
                budget++;
        }
    }
    /* Each write takes the whole budget and the step that passes it: the
     * share holds TP__PATTERN_SHARE_STEPS / TP__PATTERN_BUDGET_STEPS of
     * them, the last leaves the debt just over the share. */
    int fit = (int)(TP__PATTERN_SHARE_STEPS / TP__PATTERN_BUDGET_STEPS);
    cr_assert_eq(budget, fit, "%d writes took the budget, %d expected", budget, fit);
    cr_assert_eq(limited, 20 - budget);
    /* Another tenant is not held back. */
    json_t *ok = json_pack("{s:s, s:s, s:s, s:i, s:{s:s}}", "type", "write", "scope", "private",
                           "id", uid, "ref", 1, "patch", "s", "ab");
    char *text = json_dumps(ok, JSON_COMPACT);
    tp_conn_feed(u, text, strlen(text));
    free(text);
    cr_assert_eq(count_answers(u, "\"type\":\"ack\""), 1);
    /* The debt drains with the hub's clock: a second later, t writes again. */
    now += 1000;
    json_object_set_new(ok, "id", json_string(tid));
    json_object_set_new(ok, "ref", json_integer(100));
    text = json_dumps(ok, JSON_COMPACT);
    tp_conn_feed(t, text, strlen(text));
    free(text);
    json_decref(ok);
    json_decref(w);
    cr_assert_eq(count_answers(t, "\"type\":\"ack\""), 1);
    tp_conn_close(t);
    tp_conn_close(u);
    tp_hub_free(hub);
    tp_schema_free(s);
}
