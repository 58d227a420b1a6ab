/*
 * Lua merge strategies (daemon/luamerge.c), called as the hub calls them:
 * values both ways (objects and arrays apart, integers and floats apart,
 * strings as bytes, null), every kind of refusal and its code, the
 * sandbox's missing pieces, no state across calls, the budgets and the
 * state after an abort, and the compile-time refusals.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/luamerge.h"
#include "support.h"
#include "transports.h"

/* The log lines a strategy writes: the last one is kept. */
static char last_line[1024];
static int lines;

static void
capture(int level, const char *line, void *user)
{
    (void)level;
    (void)user;
    snprintf(last_line, sizeof last_line, "%s", line);
    lines++;
}

static tp__lua_merge *
compiled(const char *code, uint64_t steps, size_t memory, unsigned ms, tp_error *err)
{
    tp__lua_merge_config cfg = {0};
    cfg.name = "t";
    cfg.code = code;
    cfg.len = strlen(code);
    cfg.chunkname = "t.lua";
    cfg.max_instructions = steps;
    cfg.max_memory = memory;
    cfg.max_ms = ms;
    cfg.log = capture;
    cfg.log_level = TP_LOG_DEBUG;
    last_line[0] = '\0';
    lines = 0;
    return tp__lua_merge_new(&cfg, err);
}

static tp__lua_merge *
must(const char *code)
{
    tp_error err = {0, ""};
    tp__lua_merge *lm = compiled(code, 0, 0, 0, &err);
    cr_assert_not_null(lm, "refused: %s", err.message);
    return lm;
}

/* call runs merge on JSON texts; returns the result as compact text, or
 * NULL with err filled. */
static char *
call(tp__lua_merge *lm, const char *current, const char *patch, const char *tenant, tp_error *err)
{
    json_t *c = json_loads(current, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    json_t *p = json_loads(patch, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    cr_assert(c != NULL && p != NULL);
    tp_origin o = {tenant, tenant ? "c1" : "host"};
    const tp_merge *m = tp__lua_merge_strategy(lm);
    err->code = 0;
    err->message[0] = '\0';
    json_t *v = m->merge(m->user, c, p, &o, err);
    json_decref(c);
    json_decref(p);
    if (v == NULL)
        return NULL;
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(v);
    return text;
}

static void
expect(tp__lua_merge *lm, const char *current, const char *patch, const char *want)
{
    tp_error err;
    char *got = call(lm, current, patch, "alice", &err);
    cr_assert_not_null(got, "refused (%d): %s", err.code, err.message);
    cr_assert(tpt_json_text_eq(got, want), "got %s, want %s", got, want);
    free(got);
}

static void
refused(tp__lua_merge *lm, const char *patch, int code, const char *words)
{
    tp_error err;
    char *got = call(lm, "{}", patch, "alice", &err);
    cr_assert_null(got, "accepted: %s", got ? got : "");
    cr_assert_eq(err.code, code, "code %d, want %d: %s", err.code, code, err.message);
    cr_assert(strstr(err.message, words) != NULL || strstr(last_line, words) != NULL,
              "\"%s\" in neither \"%s\" nor the log \"%s\"", words, err.message, last_line);
}

Test(luamerge, values_round_trip_with_their_kinds)
{
    tp__lua_merge *lm = must("function merge(current, patch, origin) return patch.v end");
    expect(lm, "{}", "{\"v\": {\"a\": [], \"o\": {}, \"i\": 3, \"f\": 3.0, \"n\": null}}",
           "{\"a\": [], \"o\": {}, \"i\": 3, \"f\": 3.0, \"n\": null}");
    expect(lm, "{}", "{\"v\": {\"deep\": [[1, [2, {\"x\": [true, false]}]]]}}",
           "{\"deep\": [[1, [2, {\"x\": [true, false]}]]]}");
    tp_error err;
    /* Strings are bytes: a NUL inside one goes both ways. */
    char *got = call(lm, "{}", "{\"v\": {\"s\": \"caf\\u00e9 \\u0000 nul\"}}", "alice", &err);
    cr_assert_str_eq(got, "{\"s\":\"caf\xc3\xa9 \\u0000 nul\"}");
    free(got);
    expect(lm, "{}", "{\"v\": {\"max\": 9223372036854775807, \"min\": -9223372036854775808}}",
           "{\"max\": 9223372036854775807, \"min\": -9223372036854775808}");
    /* The float stays a float: jansson keeps 3.0 apart from 3. */
    got = call(lm, "{}", "{\"v\": {\"f\": 3.0}}", "alice", &err);
    cr_assert_str_eq(got, "{\"f\":3.0}");
    free(got);
    tp__lua_merge_free(lm);
}

Test(luamerge, what_the_script_sees)
{
    tp__lua_merge *lm = must(
        "function merge(current, patch, origin)\n"
        "  local o = type(origin) == 'table' and (origin.tenant .. '/' .. origin.conn) or origin\n"
        "  return object{i = math.type(patch.i), f = math.type(patch.f),\n"
        "    a = getmetatable(patch.a), o = getmetatable(patch.o), n = patch.n == null,\n"
        "    len = #patch.s, origin = o, c = current.x}\n"
        "end\n");
    expect(
        lm, "{\"x\": 1}",
        "{\"i\": 1, \"f\": 1.5, \"a\": [], \"o\": {}, \"n\": null, \"s\": \"\\u00e9\"}",
        "{\"i\": \"integer\", \"f\": \"float\", \"a\": \"array\", \"o\": \"object\", \"n\": true,"
        " \"len\": 2, \"origin\": \"alice/c1\", \"c\": 1}");
    tp_error err;
    char *got =
        call(lm, "{}", "{\"i\": 1, \"f\": 1.5, \"a\": [], \"o\": {}, \"s\": \"\"}", NULL, &err);
    cr_assert_not_null(got, "%s", err.message);
    cr_assert(strstr(got, "\"origin\":\"host\"") != NULL, "%s", got);
    free(got);
    tp__lua_merge_free(lm);
}

Test(luamerge, tables_the_script_makes)
{
    tp__lua_merge *lm = must("function merge(c, p, o)\n"
                             "  if p.k == 1 then return {1, 2, 3} end\n"
                             "  if p.k == 2 then return {} end\n"
                             "  if p.k == 3 then return array() end\n"
                             "  if p.k == 4 then return object{x = array{}} end\n"
                             "  if p.k == 5 then return object(array{1}) end\n"
                             "end\n");
    expect(lm, "{}", "{\"k\": 1}", "[1, 2, 3]");
    expect(lm, "{}", "{\"k\": 2}", "{}");
    expect(lm, "{}", "{\"k\": 3}", "[]");
    expect(lm, "{}", "{\"k\": 4}", "{\"x\": []}");
    tp_error err;
    cr_assert_null(call(lm, "{}", "{\"k\": 5}", "a", &err));
    cr_assert_eq(err.code, TP_EINTERNAL);
    cr_assert(strstr(last_line, "result: an object with integer keys") != NULL, "%s", last_line);
    tp__lua_merge_free(lm);
}

Test(luamerge, results_json_cannot_hold_are_internal)
{
    static const struct {
        const char *expr, *words;
    } cases[] = {
        {"object{v = 0/0}", "result.v: NaN or infinity"},
        {"object{v = -math.huge}", "result.v: NaN or infinity"},
        {"{x = 1, 2}", "result: a table with integer keys and string keys"},
        {"object{v = {[1] = 1, [3] = 3}}", "result.v: an array with holes"},
        {"object{v = array{x = 1}}", "result.v: an array with string keys"},
        {"object{[1.5] = 1}", "result: a key of type float"},
        {"object{[true] = 1}", "result: a key of type boolean"},
        {"object{[0] = 1}", "result: a key of type integer below 1"},
        {"object{['a\\0b'] = 1}", "a key holds a NUL byte"},
        {"object{['\\255'] = 1}", "a key is not valid UTF-8"},
        {"object{v = '\\255'}", "result.v: a string that is not valid UTF-8"},
        {"object{f = type}", "result.f: a function"},
        {"(function() local t = object() t.a = array{t} return t end)()",
         "result.a[0]: a table that contains itself"},
        {"(function() local t = object() local c = t for i = 1, 70 do c.d = object() c = c.d "
         "end return t end)()",
         "nested deeper than 64"},
        {"42", "returned a number"},
        {"true", "returned a boolean"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char code[512];
        snprintf(code, sizeof code, "function merge(c, p, o) return %s end", cases[i].expr);
        tp__lua_merge *lm = must(code);
        refused(lm, "{}", TP_EINTERNAL, cases[i].words);
        cr_assert(strstr(last_line, cases[i].words) != NULL, "log: %s", last_line);
        tp__lua_merge_free(lm);
    }
}

Test(luamerge, refusals_and_errors)
{
    tp__lua_merge *lm = must("function merge(c, p, o)\n"
                             "  if p.k == 1 then return nil, 'no thanks' end\n"
                             "  if p.k == 2 then return nil end\n"
                             "  if p.k == 3 then return nil, 7 end\n"
                             "  if p.k == 4 then error('on purpose') end\n"
                             "  return p.nothing.here\n"
                             "end\n");
    refused(lm, "{\"k\": 1}", TP_EREJECTED, "no thanks");
    refused(lm, "{\"k\": 2}", TP_EREJECTED, "the merge strategy refused the write");
    refused(lm, "{\"k\": 3}", TP_EREJECTED, "the merge strategy refused the write");
    refused(lm, "{\"k\": 4}", TP_EINTERNAL, "t.lua:5: on purpose");
    cr_assert(strstr(last_line, "merge strategy \"t\" failed: t.lua:5: on purpose") != NULL, "%s",
              last_line);
    refused(lm, "{\"k\": 5}", TP_EINTERNAL, "t.lua:6: attempt to index a nil value");
    tp__lua_merge_free(lm);
}

Test(luamerge, the_sandbox_lacks_what_it_must)
{
    static const char *const absent[] = {
        "io",
        "os",
        "require",
        "package",
        "load",
        "loadstring",
        "dofile",
        "loadfile",
        "debug",
        "collectgarbage",
        "setmetatable",
        "rawset",
        "next",
        "print",
        "coroutine",
        "string.dump",
        "string.find",
        "string.match",
        "string.gmatch",
        "string.gsub",
        "math.random",
        "math.randomseed",
        "table.move",
        "module",
        "newproxy",
    };
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        char code[256];
        snprintf(code, sizeof code,
                 "function merge(c, p, o) return object{t = type(%s), s = type(('').%s)} end",
                 absent[i], strchr(absent[i], '.') ? strchr(absent[i], '.') + 1 : "x");
        tp__lua_merge *lm = must(code);
        expect(lm, "{}", "{}", "{\"t\": \"nil\", \"s\": \"nil\"}");
        tp__lua_merge_free(lm);
    }
    /* What is there works. */
    tp__lua_merge *lm =
        must("function merge(c, p, o)\n"
             "  local t = {3, 1, 2} table.sort(t)\n"
             "  return object{s = string.format('%d-%s', 7, ('ab'):upper()),\n"
             "    t = table.concat(t, ','), m = math.max(1, 5), u = utf8.char(233),\n"
             "    ok = select(2, pcall(error, 'x')), x = tostring(1.5)}\n"
             "end\n");
    expect(lm, "{}", "{}",
           "{\"s\": \"7-AB\", \"t\": \"1,2,3\", \"m\": 5, \"u\": \"\\u00e9\", \"ok\": \"x\","
           " \"x\": \"1.5\"}");
    tp__lua_merge_free(lm);
}

Test(luamerge, libraries_are_read_only_and_state_does_not_survive)
{
    tp__lua_merge *lm =
        must("n = (n or 0) + 1\n"
             "local up = 0\n"
             "function merge(c, p, o)\n"
             "  up = up + 1\n"
             "  local w = {pcall(function() string.x = 1 end)}\n"
             "  local m = {pcall(function() getmetatable('').__index.x = 1 end)}\n"
             "  local r = {pcall(function() getmetatable(p).x = 1 end)}\n"
             "  _G.g = (_G.g or 0) + 1\n"
             "  return object{n = n, up = up, g = g, w = w[1], e = w[2], m = m[1], r = r[1],\n"
             "    x = string.x == nil, mt = getmetatable(string), env = getmetatable(_G)}\n"
             "end\n");
    for (int i = 0; i < 3; i++)
        expect(lm, "{}", "{}",
               "{\"n\": 1, \"up\": 1, \"g\": 1, \"w\": false,"
               " \"e\": \"t.lua:5: the sandbox's libraries are read-only\", \"m\": false,"
               " \"r\": false, \"x\": true, \"mt\": false, \"env\": false}");
    tp__lua_merge_free(lm);
}

Test(luamerge, pairs_in_key_order_and_no_addresses)
{
    tp__lua_merge *lm =
        must("function merge(c, p, o)\n"
             "  local ks = {}\n"
             "  for k in pairs(p) do ks[#ks + 1] = tostring(k) end\n"
             "  for k in pairs({[2] = 1, [1.5] = 1, b = 1, a = 1, [false] = 1}) do\n"
             "    ks[#ks + 1] = tostring(k)\n"
             "  end\n"
             "  return object{k = table.concat(ks, ','),\n"
             "    s = tostring({}) .. tostring(print) .. tostring(null) ..\n"
             "        string.format('%s%s', {}, merge)}\n"
             "end\n");
    expect(lm, "{}", "{\"zz\": 1, \"b\": 1, \"a\": 1, \"ab\": 1, \"B\": 1}",
           "{\"k\": \"B,a,ab,b,zz,1.5,2,a,b,false\", \"s\": \"tablenilnulltablefunction\"}");
    tp__lua_merge_free(lm);
}

Test(luamerge, budgets_refuse_and_the_state_goes_on)
{
    /* A generous time budget: which of the other two stops each call is
     * the point here, even in a slow (sanitizer) build. */
    tp_error cerr = {0, ""};
    tp__lua_merge *lm =
        compiled("function merge(c, p, o)\n"
                 "  if p.k == 1 then while true do end end\n"
                 "  if p.k == 2 then local s = string.rep('x', 1 << 30) end\n"
                 "  if p.k == 3 then\n"
                 "    while true do pcall(function() while true do end end) end\n"
                 "  end\n"
                 "  if p.k == 4 then\n"
                 "    local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 10000) .. i end\n"
                 "  end\n"
                 "  if p.k == 5 then\n"
                 "    xpcall(error, function() while true do end end)\n"
                 "  end\n"
                 "  return object{ok = true}\n"
                 "end\n",
                 0, 0, 30000, &cerr);
    cr_assert_not_null(lm, "%s", cerr.message);
    size_t base = tp__lua_merge_memory(lm);
    refused(lm, "{\"k\": 1}", TP_EREJECTED, "instruction budget exceeded (1000000)");
    expect(lm, "{}", "{}", "{\"ok\": true}");
    refused(lm, "{\"k\": 2}", TP_EREJECTED, "memory budget exceeded (8388608 bytes)");
    expect(lm, "{}", "{}", "{\"ok\": true}");
    refused(lm, "{\"k\": 3}", TP_EREJECTED, "instruction budget exceeded");
    refused(lm, "{\"k\": 4}", TP_EREJECTED, "memory budget exceeded");
    /* The aborted call's garbage is collected at once. */
    cr_assert_lt(tp__lua_merge_memory(lm), base + 256 * 1024, "%zu bytes held after a bomb",
                 tp__lua_merge_memory(lm));
    refused(lm, "{\"k\": 5}", TP_EREJECTED, "instruction budget exceeded");
    expect(lm, "{}", "{}", "{\"ok\": true}");
    cr_assert(strstr(last_line, "the write is refused") != NULL, "%s", last_line);
    tp__lua_merge_free(lm);
}

Test(luamerge, budgets_can_be_set)
{
    tp_error err = {0, ""};
    tp__lua_merge *lm = compiled("function merge(c, p, o)\n"
                                 "  for i = 1, p.n do end\n"
                                 "  local s = string.rep('x', p.m)\n"
                                 "  return object{}\n"
                                 "end\n",
                                 20000, 512 * 1024, 0, &err);
    cr_assert_not_null(lm, "%s", err.message);
    expect(lm, "{}", "{\"n\": 1000, \"m\": 1000}", "{}");
    refused(lm, "{\"n\": 100000, \"m\": 1}", TP_EREJECTED, "instruction budget exceeded (20000)");
    refused(lm, "{\"n\": 1, \"m\": 600000}", TP_EREJECTED, "memory budget exceeded (524288 bytes)");
    /* An input too big for the state's budget is refused the same way. */
    size_t size = 700 * 1024;
    char *big = malloc(size);
    cr_assert_not_null(big);
    const char *head = "{\"n\": 1, \"m\": 1, \"s\": \"";
    memset(big, 'a', size);
    memcpy(big, head, strlen(head));
    memcpy(big + size - 3, "\"}", 3);
    refused(lm, big, TP_EREJECTED, "memory budget exceeded");
    free(big);
    expect(lm, "{}", "{\"n\": 1, \"m\": 1}", "{}");
    tp__lua_merge_free(lm);
}

Test(luamerge, deep_input_is_refused_not_crashed)
{
    tp__lua_merge *lm = must("function merge(c, p, o) return object{} end");
    char deep[2 * 200 + 16];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "{\"v\":");
    for (int i = 0; i < 100; i++)
        deep[n++] = '[';
    for (int i = 0; i < 100; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    refused(lm, deep, TP_EINTERNAL, "a value nested deeper than 64");
    tp__lua_merge_free(lm);
}

Test(luamerge, compile_time_refusals)
{
    static const struct {
        const char *code, *words;
    } cases[] = {
        {"function merge(c, p, o)\n  return c +\nend\n", "t.lua:3: unexpected symbol near 'end'"},
        {"function marge() end", "the script defines no function merge(current, patch, origin)"},
        {"merge = 5", "the script defines no function merge"},
        {"local x\nx.y = 1\nfunction merge() end", "t.lua:2: attempt to index a nil value"},
        {"while true do end function merge() end", "instruction budget exceeded"},
        {"\x1bLuaT\x00\x19\x93\r\n\x1a\n", "t.lua: a binary chunk (bytecode) is refused"},
        {"local s = string.rep('x', 1 << 30) function merge() end", "memory budget exceeded"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tp_error err = {0, ""};
        tp__lua_merge *lm = compiled(cases[i].code, 0, 0, 0, &err);
        cr_assert_null(lm, "accepted: %s", cases[i].code);
        cr_assert_eq(err.code, TP_EINVALID);
        cr_assert(strstr(err.message, cases[i].words) != NULL, "\"%s\" not in \"%s\"",
                  cases[i].words, err.message);
    }
    tp_error err = {0, ""};
    tp__lua_merge_config cfg = {0};
    cfg.name = "big";
    cfg.code = "";
    cfg.len = TP__LUA_SCRIPT_MAX + 1;
    cr_assert_null(tp__lua_merge_new(&cfg, &err));
    cr_assert(strstr(err.message, "over") != NULL, "%s", err.message);
}

Test(luamerge, garbage_alone_never_aborts_a_call)
{
    /* 64 MiB allocated in one call, never more than about 5 MiB alive:
     * the heap meets the budget before the collector is done, a refused
     * growth gets Lua's emergency collection, and only a second refusal
     * in a row is over the budget. */
    tp_error err = {0, ""};
    tp__lua_merge *lm = compiled("function merge(c, p, o)\n"
                                 "  local keep = string.rep('k', 3 << 20)\n"
                                 "  local n = 0\n"
                                 "  for i = 1, 32 do n = n + #(string.rep('x', 1 << 20) .. i) end\n"
                                 "  return object{n = n}\n"
                                 "end\n",
                                 0, 0, 30000, &err);
    cr_assert_not_null(lm, "%s", err.message);
    for (int i = 0; i < 3; i++)
        expect(lm, "{}", "{}", "{\"n\": 33554487}");
    tp__lua_merge_free(lm);
}
