/*
 * Lua merge strategies: the sandbox, the budgets and the conversion of JSON
 * values to Lua and back (luamerge.h says what a script sees and how a
 * call ends).
 *
 * Values: a JSON object is a table whose metatable is OBJECT_MT, an array
 * one with ARRAY_MT, so that {} and [] stay apart both ways; a table the
 * script makes is an array when marked with array() or when its keys are
 * exactly 1..n (n >= 1), else an object. Integers are Lua integers and
 * reals Lua floats (math.type tells them apart), strings are bytes, JSON
 * null is the light userdata `null`.
 */
#include "daemon/luamerge.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "util/error.h"

/* The count hook runs every HOOK_EVERY instructions: a budget is kept to
 * within that many, and the hook costs little. */
#define HOOK_EVERY 100

enum { ABORT_NONE = 0, ABORT_STEPS = 1, ABORT_MEMORY = 2, ABORT_TIME = 3 };

struct tp__lua_merge {
    tp_merge merge; /* merge.user is this struct */
    char *name;
    lua_State *L;
    size_t used, limit; /* bytes the state holds, and may hold */
    int64_t steps_left; /* instructions left in this call */
    uint64_t max_steps;
    unsigned max_ms;     /* the time budget of a call */
    int64_t deadline_ns; /* this call's, on CLOCK_MONOTONIC */
    int in_call;         /* budgets apply only while a script runs */
    int aborted;         /* ABORT_*: set by the hook or the allocator */
    int refused;         /* the allocator's last growth was refused */
    size_t refused_size; /* a refused growth not judged yet (memory_exhausted) */
    int over;            /* past the budget since the last judgment */
    int chunk;           /* registry reference: the compiled script */
    int env_mt;          /* registry reference: each call's global table's metatable */
    tp_log_fn log;
    void *log_user;
    int log_level;
};

/* Unique addresses: registry keys, and JSON null's value. */
static const char array_mt_key = 0;
static const char object_mt_key = 0;
static const char null_value = 0;

static tp__lua_merge *
of(lua_State *L)
{
    return *(tp__lua_merge **)lua_getextraspace(L);
}

static void
logf_(tp__lua_merge *lm, int level, const char *fmt, ...)
{
    if (lm->log == NULL || level > lm->log_level)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    lm->log(level, line, lm->log_user);
}

/* ---- Budgets ---- */

/*
 * The memory budget. During a call it is soft up to twice the budget: a
 * growth past it is allowed but flagged, and the hook (within 100
 * instructions) or pcall collects the garbage and aborts the call only if
 * what is alive is still over. So garbage, of this call or earlier ones,
 * never fails a call, even in the paths where Lua does not collect before
 * giving up (string buffers). Past twice the budget a growth is refused;
 * Lua then collects and tries once more, and a second refusal in a row
 * aborts the call.
 */
static void *
budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    tp__lua_merge *lm = ud;
    size_t old = ptr != NULL ? osize : 0; /* with ptr NULL, osize is a type tag */
    if (nsize == 0) {
        free(ptr);
        lm->used -= old;
        return NULL;
    }
    size_t grow = nsize > old ? nsize - old : 0;
    size_t cap = lm->in_call ? 2 * lm->limit : lm->limit;
    if (grow > cap - lm->used) {
        if (lm->in_call && lm->refused)
            lm->aborted = ABORT_MEMORY;
        lm->refused = 1;
        if (lm->in_call)
            lm->refused_size = grow;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (p == NULL)
        return NULL;
    lm->refused = 0;
    lm->used = lm->used - old + nsize;
    if (lm->used > lm->limit && lm->in_call)
        lm->over = 1;
    return p;
}

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * memory_exhausted judges a growth past the budget, or a refused one that
 * Lua did not retry after a collection (a string buffer's, which raises a
 * plain error): with all the garbage collected, is what is alive within
 * the budget, and would the refused growth fit? If not, the call is over
 * its memory budget for good. Called where collecting is allowed: the
 * hook, pcall, the end of a call.
 */
static int
memory_exhausted(lua_State *L, tp__lua_merge *lm)
{
    if (lm->refused_size == 0 && !lm->over)
        return lm->aborted == ABORT_MEMORY;
    lua_gc(L, LUA_GCCOLLECT);
    if (lm->used > lm->limit || lm->refused_size > lm->limit - lm->used)
        lm->aborted = ABORT_MEMORY;
    lm->refused_size = 0;
    lm->over = 0;
    return lm->aborted == ABORT_MEMORY;
}

/*
 * The instruction budget makes a call's cost independent of the machine;
 * the time budget backs it for the work one instruction can hide in C (a
 * comparison of two long strings, a sort), which the count does not see.
 * The clock decides only whether a call is aborted: a script cannot read it.
 */
static void
count_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    tp__lua_merge *lm = of(L);
    if (!lm->in_call)
        return;
    if (lm->aborted == ABORT_NONE && (lm->refused_size > 0 || lm->over) && memory_exhausted(L, lm))
        lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    if (lm->aborted == ABORT_NONE) {
        lm->steps_left -= HOOK_EVERY;
        if (lm->steps_left >= 0 && now_ns() < lm->deadline_ns)
            return;
        lm->aborted = lm->steps_left < 0 ? ABORT_STEPS : ABORT_TIME;
        /* From here on every instruction raises again, so that no handler
         * the script installs can go on running. */
        lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    }
    luaL_error(L, "budget exceeded");
}

/* ---- The sandbox's own functions ---- */

/* pcall and xpcall that let a budget's abort through: a script catching
 * it would else loop forever one budget-sized slice at a time. */
static int
sb_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    int status = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    if (of(L)->aborted || (status != LUA_OK && memory_exhausted(L, of(L))))
        return luaL_error(L, "budget exceeded");
    lua_pushboolean(L, status == LUA_OK);
    lua_insert(L, 1);
    return lua_gettop(L);
}

/*
 * The message handler of xpcall, around the script's (upvalue 1). Lua runs
 * a handler before unwinding, and when the error comes from the count hook
 * it runs with hooks off: the script's handler must not run then, or a
 * loop in it would never be stopped.
 */
static int
sb_handler(lua_State *L)
{
    if (of(L)->aborted)
        return 1; /* the error value, as it is */
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int
sb_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, sb_handler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2); /* f, msgh, true, f, args... */
    int status = lua_pcall(L, n - 2, LUA_MULTRET, 2);
    if (of(L)->aborted || (status != LUA_OK && memory_exhausted(L, of(L))))
        return luaL_error(L, "budget exceeded");
    if (status != LUA_OK) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - 2;
}

/* tostring without addresses (they differ from run to run). */
static int
sb_tostring(lua_State *L)
{
    luaL_checkany(L, 1);
    switch (lua_type(L, 1)) {
    case LUA_TNIL:
    case LUA_TBOOLEAN:
    case LUA_TNUMBER:
    case LUA_TSTRING: luaL_tolstring(L, 1, NULL); break;
    case LUA_TLIGHTUSERDATA:
        lua_pushstring(L, lua_touserdata(L, 1) == &null_value ? "null" : "userdata");
        break;
    default: lua_pushstring(L, luaL_typename(L, 1)); break;
    }
    return 1;
}

/* string.format without %p, and with tables and functions as their type
 * names: both would print addresses. Upvalue 1: the library's format. */
static int
sb_format(lua_State *L)
{
    size_t len;
    const char *f = luaL_checklstring(L, 1, &len);
    for (size_t i = 0; i < len; i++) {
        if (f[i] != '%')
            continue;
        if (i + 1 < len && f[i + 1] == '%') {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < len && strchr("-+ #0123456789.", f[j]) != NULL)
            j++;
        if (j < len && f[j] == 'p')
            return luaL_error(L, "string.format: %%p is not available");
        i = j;
    }
    int n = lua_gettop(L);
    for (int i = 2; i <= n; i++) {
        int t = lua_type(L, i);
        if (t != LUA_TNUMBER && t != LUA_TSTRING && t != LUA_TBOOLEAN && t != LUA_TNIL) {
            lua_pushcfunction(L, sb_tostring);
            lua_pushvalue(L, i);
            lua_call(L, 1, 1);
            lua_replace(L, i);
        }
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, 1);
    return 1;
}

/* string.rep of nothing n times: the library loops n times even when
 * there is nothing to copy, outside the instruction count. Upvalue 1:
 * the library's rep. */
static int
sb_rep(lua_State *L)
{
    size_t l, lsep = 0;
    luaL_checklstring(L, 1, &l);
    luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    if (l + lsep == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* A key of a table being iterated by pairs, for sorting. */
typedef struct sort_key {
    int rank; /* numbers, then strings (bytewise), then booleans, then the rest */
    int is_int;
    lua_Integer i;
    double d;
    const char *s;
    size_t len;
    lua_Integer pos; /* where it is in the unsorted list */
} sort_key;

static int
key_cmp(const void *pa, const void *pb)
{
    const sort_key *a = pa, *b = pb;
    if (a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    if (a->rank == 0) {
        if (a->is_int && b->is_int)
            return a->i < b->i ? -1 : a->i > b->i;
        if (a->d != b->d)
            return a->d < b->d ? -1 : 1;
        if (a->is_int != b->is_int)
            return a->is_int ? -1 : 1;
        return a->i < b->i ? -1 : a->i > b->i;
    }
    if (a->rank == 1) {
        int c = memcmp(a->s, b->s, a->len < b->len ? a->len : b->len);
        if (c != 0)
            return c;
        return a->len < b->len ? -1 : a->len > b->len;
    }
    if (a->rank == 2 && a->i != b->i)
        return a->i < b->i ? -1 : 1;
    /* Tables and functions as keys: in the order next gave them. */
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* Upvalues: the sorted keys, the position. State: the table. */
static int
pairs_step(lua_State *L)
{
    for (;;) {
        lua_Integer i = lua_tointeger(L, lua_upvalueindex(2)) + 1;
        lua_pushinteger(L, i);
        lua_replace(L, lua_upvalueindex(2));
        if (lua_rawgeti(L, lua_upvalueindex(1), i) == LUA_TNIL)
            return 1;
        lua_pushvalue(L, -1);
        if (lua_rawget(L, 1) != LUA_TNIL)
            return 2;
        lua_pop(L, 2); /* removed while iterating: skip it */
    }
}

/*
 * pairs in key order, so that what a script builds from a table's members
 * never depends on the hash seed of this run. The sort is in C over the
 * keys, which the list at index 2 keeps alive (nothing allocates during
 * qsort, so no collection can move or free them).
 */
static int
sb_pairs(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_newtable(L); /* 2: the keys, unsorted */
    lua_Integer n = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, 2, ++n);
    }
    sort_key *keys = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *keys, 0); /* 3 */
    for (lua_Integer k = 1; k <= n; k++) {
        sort_key *sk = &keys[k - 1];
        memset(sk, 0, sizeof *sk);
        sk->pos = k;
        switch (lua_rawgeti(L, 2, k)) {
        case LUA_TNUMBER:
            sk->is_int = lua_isinteger(L, -1);
            sk->i = sk->is_int ? lua_tointeger(L, -1) : 0;
            sk->d = lua_tonumber(L, -1);
            break;
        case LUA_TSTRING:
            sk->rank = 1;
            sk->s = lua_tolstring(L, -1, &sk->len);
            break;
        case LUA_TBOOLEAN:
            sk->rank = 2;
            sk->i = lua_toboolean(L, -1);
            break;
        default: sk->rank = 3; break;
        }
        lua_pop(L, 1);
    }
    qsort(keys, (size_t)n, sizeof *keys, key_cmp);
    lua_createtable(L, (int)n, 0); /* 4: the keys, sorted */
    for (lua_Integer k = 1; k <= n; k++) {
        lua_rawgeti(L, 2, keys[k - 1].pos);
        lua_rawseti(L, 4, k);
    }
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, pairs_step, 2);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

static int
mark(lua_State *L, const void *key)
{
    if (lua_isnoneornil(L, 1))
        lua_newtable(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, key);
    lua_setmetatable(L, 1);
    return 1;
}

static int
sb_array(lua_State *L)
{
    return mark(L, &array_mt_key);
}

static int
sb_object(lua_State *L)
{
    return mark(L, &object_mt_key);
}

static int
is_marked(lua_State *L, int i, const void *key)
{
    if (lua_type(L, i) != LUA_TTABLE || !lua_getmetatable(L, i))
        return 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, key);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
}

static int
sb_isarray(lua_State *L)
{
    lua_pushboolean(L, is_marked(L, 1, &array_mt_key));
    return 1;
}

static int
sb_isobject(lua_State *L)
{
    lua_pushboolean(L, is_marked(L, 1, &object_mt_key));
    return 1;
}

static int
read_only(lua_State *L)
{
    return luaL_error(L, "the sandbox's libraries are read-only");
}

/* ---- Building the state ---- */

/* copy_fields copies the named fields of the table at src into the table
 * on top of the stack. */
static void
copy_fields(lua_State *L, int src, const char *const *names)
{
    for (size_t i = 0; names[i] != NULL; i++) {
        lua_getfield(L, src, names[i]);
        lua_setfield(L, -2, names[i]);
    }
}

/* read_only_proxy replaces the table on top of the stack by an empty table
 * that reads through to it and refuses writes: library tables are shared
 * by every call, and a write to one would carry state to the next call. */
static void
read_only_proxy(lua_State *L)
{
    lua_newtable(L);                /* lib, proxy */
    lua_createtable(L, 0, 3);       /* lib, proxy, mt */
    lua_rotate(L, -3, -1);          /* proxy, mt, lib */
    lua_setfield(L, -2, "__index"); /* proxy, mt */
    lua_pushcfunction(L, read_only);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

/* Runs in protected mode: the libraries opened, then trimmed to the
 * sandbox's globals (G), which each call's global table reads through. */
static int
build_sandbox(lua_State *L)
{
    static const char *const base_names[] = {
        "assert", "error",  "getmetatable", "ipairs", "rawequal", "rawget",
        "rawlen", "select", "tonumber",     "type",   "_VERSION", NULL,
    };
    static const char *const string_names[] = {
        "byte", "char", "len",      "lower",  "upper", "reverse",
        "sub",  "pack", "packsize", "unpack", NULL,
    };
    /* Not table.move: it loops over any range it is given, outside the count. */
    static const char *const table_names[] = {"concat", "insert", "pack", "remove",
                                              "sort",   "unpack", NULL};
    static const char *const math_names[] = {
        "abs", "ceil",       "cos",  "deg",        "exp",  "floor", "fmod", "huge", "log",
        "max", "maxinteger", "min",  "mininteger", "modf", "pi",    "rad",  "sin",  "sqrt",
        "tan", "tointeger",  "type", "ult",        "asin", "acos",  "atan", NULL,
    };
    static const char *const utf8_names[] = {"char", "charpattern", "codepoint", "codes",
                                             "len",  "offset",      NULL};
    /* Only these libraries are opened: never io, os, package or debug. */
    luaL_requiref(L, LUA_GNAME, luaopen_base, 0);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 0);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 0);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 0);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 0);
    int base = 1, str = 2, tab = 3, math = 4, utf8 = 5;

    lua_createtable(L, 0, 24); /* G */
    int G = lua_gettop(L);
    copy_fields(L, base, base_names);
    lua_pushcfunction(L, sb_pcall);
    lua_setfield(L, G, "pcall");
    lua_pushcfunction(L, sb_xpcall);
    lua_setfield(L, G, "xpcall");
    lua_pushcfunction(L, sb_tostring);
    lua_setfield(L, G, "tostring");
    lua_pushcfunction(L, sb_pairs);
    lua_setfield(L, G, "pairs");
    lua_pushcfunction(L, sb_array);
    lua_setfield(L, G, "array");
    lua_pushcfunction(L, sb_object);
    lua_setfield(L, G, "object");
    lua_pushcfunction(L, sb_isarray);
    lua_setfield(L, G, "isarray");
    lua_pushcfunction(L, sb_isobject);
    lua_setfield(L, G, "isobject");
    lua_pushlightuserdata(L, (void *)&null_value);
    lua_setfield(L, G, "null");

    lua_newtable(L); /* the string library the sandbox sees */
    int s = lua_gettop(L);
    copy_fields(L, str, string_names);
    lua_getfield(L, str, "format");
    lua_pushcclosure(L, sb_format, 1);
    lua_setfield(L, s, "format");
    lua_getfield(L, str, "rep");
    lua_pushcclosure(L, sb_rep, 1);
    lua_setfield(L, s, "rep");
    /* Methods on strings ("x"):rep(3) go through the string metatable:
     * it must lead to the trimmed library, and be out of reach. */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushvalue(L, s);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "string");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
    read_only_proxy(L);
    lua_setfield(L, G, "string");

    lua_newtable(L);
    copy_fields(L, tab, table_names);
    read_only_proxy(L);
    lua_setfield(L, G, "table");
    lua_newtable(L);
    copy_fields(L, math, math_names);
    read_only_proxy(L);
    lua_setfield(L, G, "math");
    lua_newtable(L);
    copy_fields(L, utf8, utf8_names);
    read_only_proxy(L);
    lua_setfield(L, G, "utf8");

    /* The markers of arrays and objects: protected, so a script can ask
     * getmetatable(v) ("array", "object") but change neither. */
    static const void *const keys[] = {&array_mt_key, &object_mt_key};
    static const char *const kinds[] = {"array", "object"};
    for (int i = 0; i < 2; i++) {
        lua_createtable(L, 0, 1);
        lua_pushstring(L, kinds[i]);
        lua_setfield(L, -2, "__metatable");
        lua_rawsetp(L, LUA_REGISTRYINDEX, keys[i]);
    }

    /* Each call's global table: its own writes, reads through to G. */
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, G);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    tp__lua_merge *lm = of(L);
    lm->env_mt = luaL_ref(L, LUA_REGISTRYINDEX);

    /* The global table the libraries registered themselves in (_G of the
     * registry) is emptied: nothing reaches it, and nothing should hold
     * the unsafe functions. */
    lua_pushglobaltable(L);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, -4);
    }
    lua_pop(L, 1);
    return 0;
}

/* ---- JSON to Lua ---- */

static void
to_lua(lua_State *L, const json_t *v, int depth)
{
    if (depth > TP__LUA_DEPTH)
        luaL_error(L, "a value nested deeper than %d", TP__LUA_DEPTH);
    luaL_checkstack(L, 4, "a value nested too deep");
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)json_object_size(v));
        lua_rawgetp(L, LUA_REGISTRYINDEX, &object_mt_key);
        lua_setmetatable(L, -2);
        const char *key;
        json_t *m;
        json_object_foreach((json_t *)v, key, m)
        {
            lua_pushstring(L, key);
            to_lua(L, m, depth + 1);
            lua_rawset(L, -3);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        lua_createtable(L, (int)n, 0);
        lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
        lua_setmetatable(L, -2);
        for (size_t i = 0; i < n; i++) {
            to_lua(L, json_array_get(v, i), depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(v)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    case JSON_NULL:
    default: lua_pushlightuserdata(L, (void *)&null_value); break;
    }
}

/* ---- Lua to JSON ---- */

/*
 * Where a conversion is: the member (key, borrowed from the table being
 * read) or element (index) at each level. The path is spelled only for a
 * refusal ("result.items[3]"): most conversions never need it.
 */
typedef struct step {
    const char *key; /* NULL: an array element */
    lua_Integer index;
} step;

typedef struct back {
    lua_State *L;
    step steps[TP__LUA_DEPTH + 2];
    int n_steps;
    const void *seen[TP__LUA_DEPTH + 1]; /* the tables being converted: a cycle */
    int depth;
    char why[600];
} back;

static json_t *
refuse(back *b, const char *fmt, ...)
{
    char path[256] = "result";
    size_t len = strlen(path);
    for (int i = 0; i < b->n_steps && len < sizeof path - 1; i++) {
        int n =
            b->steps[i].key != NULL
                ? snprintf(path + len, sizeof path - len, ".%.60s", b->steps[i].key)
                : snprintf(path + len, sizeof path - len, "[%lld]", (long long)b->steps[i].index);
        len += n > 0 && (size_t)n < sizeof path - len ? (size_t)n : sizeof path - 1 - len;
    }
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    snprintf(b->why, sizeof b->why, "%s: %s", path, reason);
    return NULL;
}

static json_t *from_lua(back *b, int i);

static json_t *
array_from(back *b, int t, lua_Integer n)
{
    lua_State *L = b->L;
    json_t *a = json_array();
    if (a == NULL)
        return refuse(b, "out of memory");
    for (lua_Integer k = 1; k <= n; k++) {
        lua_rawgeti(L, t, k);
        b->steps[b->n_steps++] = (step){NULL, k - 1};
        json_t *v = from_lua(b, lua_gettop(L));
        lua_pop(L, 1);
        b->n_steps--;
        if (v == NULL || json_array_append_new(a, v) != 0) {
            json_decref(a);
            return v == NULL ? NULL : refuse(b, "out of memory");
        }
    }
    return a;
}

static json_t *
object_from(back *b, int t)
{
    lua_State *L = b->L;
    json_t *o = json_object();
    if (o == NULL)
        return refuse(b, "out of memory");
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            const char *type = luaL_typename(L, -2);
            lua_pop(L, 2);
            json_decref(o);
            return refuse(b, "a key of type %s (object keys are strings)", type);
        }
        size_t klen;
        const char *key = lua_tolstring(L, -2, &klen);
        if (memchr(key, '\0', klen) != NULL) {
            lua_pop(L, 2);
            json_decref(o);
            return refuse(b, "a key holds a NUL byte");
        }
        b->steps[b->n_steps++] = (step){key, 0};
        json_t *v = from_lua(b, lua_gettop(L));
        lua_pop(L, 1);
        b->n_steps--;
        if (v == NULL) {
            lua_pop(L, 1);
            json_decref(o);
            return NULL;
        }
        /* jansson checks the key is UTF-8. */
        if (json_object_set_new(o, key, v) != 0) {
            lua_pop(L, 1);
            json_decref(o);
            return refuse(b, "a key is not valid UTF-8");
        }
    }
    return o;
}

static json_t *
table_from(back *b, int t)
{
    lua_State *L = b->L;
    const void *self = lua_topointer(L, t);
    for (int d = 0; d < b->depth; d++)
        if (b->seen[d] == self)
            return refuse(b, "a table that contains itself (a cycle)");
    if (b->depth >= TP__LUA_DEPTH)
        return refuse(b, "nested deeper than %d", TP__LUA_DEPTH);
    if (!lua_checkstack(L, 4))
        return refuse(b, "out of memory");
    int is_array = is_marked(L, t, &array_mt_key);
    int is_object = is_marked(L, t, &object_mt_key);
    /* What the keys say: 1..n only (an array), strings only (an object). */
    lua_Integer n = 0, max = 0;
    size_t strings = 0, others = 0;
    const char *other = NULL;
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            strings++;
        } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
            n++;
            if (lua_tointeger(L, -1) > max)
                max = lua_tointeger(L, -1);
        } else {
            others++;
            other = luaL_typename(L, -1);
            if (lua_type(L, -1) == LUA_TNUMBER)
                other = lua_isinteger(L, -1) ? "integer below 1" : "float";
        }
    }
    if (others > 0)
        return refuse(b, "a key of type %s (object keys are strings, array keys 1..n)", other);
    if (is_array || (!is_object && strings == 0 && n > 0)) {
        if (strings > 0)
            return refuse(b, "an array with string keys");
        if (max != n)
            return refuse(b, "an array with holes (keys up to %lld, %lld of them)", (long long)max,
                          (long long)n);
    } else if (n > 0) {
        return refuse(b, is_object ? "an object with integer keys (object keys are strings)"
                                   : "a table with integer keys and string keys (a mixed table)");
    }
    b->seen[b->depth++] = self;
    json_t *v =
        is_array || (!is_object && strings == 0 && n > 0) ? array_from(b, t, n) : object_from(b, t);
    b->depth--;
    return v;
}

static json_t *
from_lua(back *b, int i)
{
    lua_State *L = b->L;
    switch (lua_type(L, i)) {
    case LUA_TBOOLEAN: return json_boolean(lua_toboolean(L, i));
    case LUA_TNUMBER:
        if (lua_isinteger(L, i))
            return json_integer((json_int_t)lua_tointeger(L, i));
        if (!isfinite(lua_tonumber(L, i)))
            return refuse(b, "NaN or infinity (JSON has neither)");
        return json_real(lua_tonumber(L, i));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, i, &len);
        json_t *v = json_stringn(s, len);
        return v != NULL ? v : refuse(b, "a string that is not valid UTF-8");
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, i) == &null_value)
            return json_null();
        return refuse(b, "a userdata (not a JSON value)");
    case LUA_TTABLE: return table_from(b, i);
    default: return refuse(b, "a %s (not a JSON value)", luaL_typename(L, i));
    }
}

/* ---- A call ---- */

typedef struct call_args {
    const json_t *current, *patch;
    const tp_origin *origin;
    int check_only; /* at load: run the script, check merge, call nothing */
} call_args;

/* Runs in protected mode: a fresh global table, the script run in it, then
 * merge(current, patch, origin). Leaves merge's first two results. */
static int
protected_call(lua_State *L)
{
    tp__lua_merge *lm = of(L);
    call_args *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_createtable(L, 0, 4); /* 1: this call's globals */
    lua_rawgeti(L, LUA_REGISTRYINDEX, lm->env_mt);
    lua_setmetatable(L, 1);
    lua_pushvalue(L, 1);
    lua_setfield(L, 1, "_G");
    /* The script runs again for every call: locals and upvalues of merge
     * are made afresh, so none carries anything from the last call. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, lm->chunk);
    lua_pushvalue(L, 1);
    lua_setupvalue(L, -2, 1); /* _ENV */
    lua_call(L, 0, 0);
    if (lua_getfield(L, 1, "merge") != LUA_TFUNCTION)
        return luaL_error(L, "the script defines no function merge(current, patch, origin)");
    if (a->check_only)
        return 0;
    to_lua(L, a->current, 0);
    to_lua(L, a->patch, 0);
    if (a->origin->tenant == NULL) {
        lua_pushliteral(L, "host");
    } else {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, a->origin->tenant);
        lua_setfield(L, -2, "tenant");
        lua_pushstring(L, a->origin->conn ? a->origin->conn : "");
        lua_setfield(L, -2, "conn");
    }
    /* The values alone may be over the budget (they count in it). */
    if (memory_exhausted(L, lm))
        return luaL_error(L, "budget exceeded");
    lua_call(L, 3, 2);
    return 2;
}

/* run calls protected_call with the budgets on. Returns its status. */
static int
run(tp__lua_merge *lm, call_args *a)
{
    lua_State *L = lm->L;
    lua_settop(L, 0);
    lm->aborted = ABORT_NONE;
    lm->refused = 0;
    lm->refused_size = 0;
    lm->over = 0;
    lm->steps_left = (int64_t)lm->max_steps;
    lm->deadline_ns = now_ns() + (int64_t)lm->max_ms * 1000000;
    lm->in_call = 1;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
    lua_pushcfunction(L, protected_call);
    lua_pushlightuserdata(L, a);
    int status = lua_pcall(L, 1, 2, 0);
    lm->in_call = 0;
    return status;
}

/* What went wrong in a script, with its file and line, for the log. */
static const char *
error_text(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    return msg != NULL ? msg : "(an error value that is not a string)";
}

/* The end of a failed call: budgets refuse the write (rejected), a
 * script's error is a bug in it (internal); both are logged. */
static void
failed(tp__lua_merge *lm, int status, int for_load, tp_error *out)
{
    lua_State *L = lm->L;
    tp_error e = {0, ""}, *err = &e;
    /* Out of memory without a second refusal: Lua could not collect first,
     * or a buffer's growth was refused and raised a plain error. */
    if (lm->aborted == ABORT_NONE && (status == LUA_ERRMEM || lm->refused_size > 0))
        lm->aborted = ABORT_MEMORY;
    lm->refused_size = 0;
    lm->over = 0;
    if (lm->aborted == ABORT_STEPS) {
        tp__error_set(err, TP_EREJECTED,
                      "merge strategy \"%s\": instruction budget exceeded (%llu)", lm->name,
                      (unsigned long long)lm->max_steps);
    } else if (lm->aborted == ABORT_TIME) {
        tp__error_set(err, TP_EREJECTED, "merge strategy \"%s\": time budget exceeded (%u ms)",
                      lm->name, lm->max_ms);
    } else if (lm->aborted == ABORT_MEMORY) {
        tp__error_set(err, TP_EREJECTED,
                      "merge strategy \"%s\": memory budget exceeded (%zu bytes)", lm->name,
                      lm->limit);
    } else if (for_load) {
        tp__error_set(err, TP_EINTERNAL, "%s", error_text(L));
    } else {
        logf_(lm, TP_LOG_ERROR, "merge strategy \"%s\" failed: %s", lm->name, error_text(L));
        tp__error_set(err, TP_EINTERNAL,
                      "merge strategy \"%s\" failed (the server's log says where)", lm->name);
    }
    if (lm->aborted != ABORT_NONE && !for_load)
        logf_(lm, TP_LOG_WARN, "%s: the write is refused", err->message);
    lua_settop(L, 0);
    /* What the aborted call held is garbage now: give it back at once. */
    if (lm->aborted != ABORT_NONE)
        lua_gc(L, LUA_GCCOLLECT);
    lm->aborted = ABORT_NONE;
    if (out != NULL)
        *out = e;
}

static json_t *
lua_merge(void *user, const json_t *current, const json_t *patch, const tp_origin *origin,
          tp_error *err)
{
    tp__lua_merge *lm = user;
    lua_State *L = lm->L;
    call_args a = {current, patch, origin, 0};
    int status = run(lm, &a);
    /* A call that ended well is still judged: it may hold too much. */
    if (status != LUA_OK || lm->aborted != ABORT_NONE || memory_exhausted(L, lm)) {
        failed(lm, status, 0, err);
        return NULL;
    }
    if (lua_isnil(L, 1)) {
        /* nil, "message": the script refuses the write. */
        const char *msg = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
        tp__error_set(err, TP_EREJECTED, "%s",
                      msg != NULL && msg[0] != '\0' ? msg : "the merge strategy refused the write");
        lua_settop(L, 0);
        return NULL;
    }
    if (!lua_istable(L, 1)) {
        logf_(lm, TP_LOG_ERROR,
              "merge strategy \"%s\": merge returned a %s, not a table (the new value) or nil "
              "and a message",
              lm->name, luaL_typename(L, 1));
        tp__error_set(err, TP_EINTERNAL,
                      "merge strategy \"%s\" returned a %s (the server's log says more)", lm->name,
                      luaL_typename(L, 1));
        lua_settop(L, 0);
        return NULL;
    }
    back b;
    memset(&b, 0, sizeof b);
    b.L = L;
    json_t *v = from_lua(&b, 1);
    lua_settop(L, 0);
    if (v == NULL) {
        logf_(lm, TP_LOG_ERROR,
              "merge strategy \"%s\": merge returned a value JSON cannot hold: %s", lm->name,
              b.why);
        tp__error_set(err, TP_EINTERNAL, "merge strategy \"%s\" returned %s", lm->name, b.why);
    }
    return v;
}

/* Runs in protected mode: the sandbox built, the script compiled (text
 * only: a binary chunk is refused) and kept. */
static int
load_script(lua_State *L)
{
    const tp__lua_merge_config *cfg = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_pushcfunction(L, build_sandbox);
    lua_call(L, 0, 0);
    char chunkname[300];
    snprintf(chunkname, sizeof chunkname, "=%s", cfg->chunkname ? cfg->chunkname : cfg->name);
    /* Bytecode is refused: it can be crafted to break the VM. Lua's own
     * refusal does not say which script; this one does. */
    if (cfg->len > 0 && cfg->code[0] == LUA_SIGNATURE[0])
        return luaL_error(L, "%s: a binary chunk (bytecode) is refused: a script is Lua text",
                          chunkname + 1);
    if (luaL_loadbufferx(L, cfg->code, cfg->len, chunkname, "t") != LUA_OK)
        return lua_error(L);
    of(L)->chunk = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

tp__lua_merge *
tp__lua_merge_new(const tp__lua_merge_config *cfg, tp_error *err)
{
    if (cfg == NULL || cfg->name == NULL || cfg->code == NULL) {
        tp__error_set(err, TP_EARG, "a Lua merge needs a name and a script");
        return NULL;
    }
    if (cfg->len > TP__LUA_SCRIPT_MAX) {
        tp__error_set(err, TP_EINVALID, "the script is over %d bytes", TP__LUA_SCRIPT_MAX);
        return NULL;
    }
    tp__lua_merge *lm = calloc(1, sizeof *lm);
    if (lm == NULL || (lm->name = strdup(cfg->name)) == NULL) {
        free(lm);
        tp__error_set(err, TP_ENOMEM, "out of memory");
        return NULL;
    }
    lm->limit = cfg->max_memory ? cfg->max_memory : TP__LUA_MEMORY;
    lm->max_steps = cfg->max_instructions ? cfg->max_instructions : TP__LUA_INSTRUCTIONS;
    lm->max_ms = cfg->max_ms ? cfg->max_ms : TP__LUA_MS;
    lm->log = cfg->log;
    lm->log_user = cfg->log_user;
    lm->log_level = cfg->log_level;
    lm->chunk = lm->env_mt = LUA_NOREF;
    lm->merge.name = lm->name;
    lm->merge.merge = lua_merge;
    lm->merge.user = lm;
    lm->L = lua_newstate(budget_alloc, lm);
    if (lm->L == NULL) {
        tp__lua_merge_free(lm);
        tp__error_set(err, TP_ENOMEM, "out of memory (a Lua state)");
        return NULL;
    }
    *(tp__lua_merge **)lua_getextraspace(lm->L) = lm;
    /* No panic is possible past here: everything runs under lua_pcall. */
    lua_pushcfunction(lm->L, load_script);
    lua_pushlightuserdata(lm->L, (void *)cfg);
    if (lua_pcall(lm->L, 1, 0, 0) != LUA_OK) {
        tp__error_set(err, TP_EINVALID, "%s", error_text(lm->L));
        tp__lua_merge_free(lm);
        return NULL;
    }
    /* Run once: an error at its top level or a missing merge is a config
     * error, found at start rather than at the first write. */
    call_args a = {NULL, NULL, NULL, 1};
    int status = run(lm, &a);
    if (status != LUA_OK) {
        tp_error e = {0, ""};
        failed(lm, status, 1, &e);
        tp__error_set(err, TP_EINVALID, "%s", e.message);
        tp__lua_merge_free(lm);
        return NULL;
    }
    lua_settop(lm->L, 0);
    lua_gc(lm->L, LUA_GCCOLLECT);
    return lm;
}

void
tp__lua_merge_free(tp__lua_merge *lm)
{
    if (lm == NULL)
        return;
    if (lm->L != NULL)
        lua_close(lm->L);
    free(lm->name);
    free(lm);
}

const tp_merge *
tp__lua_merge_strategy(const tp__lua_merge *lm)
{
    return &lm->merge;
}

size_t
tp__lua_merge_memory(const tp__lua_merge *lm)
{
    return lm->used;
}
