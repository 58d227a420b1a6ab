/*
 * Merge strategies written in Lua 5.4 (config "merges", docs/daemon.md,
 * "Custom merges in Lua"). A script defines merge(current, patch, origin)
 * and returns the new value, or nil and a message to refuse the write.
 *
 * Each strategy owns one lua_State, used only on the loop thread (merges
 * run there), with a memory budget enforced by its allocator. Every call
 * runs the compiled script again in a fresh global table whose reads fall
 * through to read-only libraries, so nothing a call does (globals, the
 * upvalues of merge, library tables) reaches the next call. The sandbox
 * offers no io, os, require, load, dofile, debug, collectgarbage,
 * setmetatable, string.dump, coroutines, string patterns (they run in C,
 * outside the instruction budget), table.move nor math.random; every call
 * has an instruction budget (a count hook) and a time budget behind it.
 *
 * How a call ends, and what the writer gets:
 *   value returned          the new value (then the schema checks it)
 *   nil, "message"          rejected, with the message
 *   a budget exceeded       rejected ("... instruction budget exceeded")
 *   error, bad return value internal; the script's file and line go to
 *                           the log at error level
 */
#ifndef TP_DAEMON_LUAMERGE_H
#define TP_DAEMON_LUAMERGE_H

#include <stddef.h>
#include <stdint.h>

#include "transports.h"

#define TP__LUA_INSTRUCTIONS 1000000        /* default max_instructions per call */
#define TP__LUA_MEMORY (8u * 1024u * 1024u) /* default max_memory_bytes per strategy */
#define TP__LUA_MS 100                      /* default max_ms, the time budget per call */
#define TP__LUA_DEPTH 64                    /* nesting of a value converted either way */
#define TP__LUA_SCRIPT_MAX (1024 * 1024)    /* bytes of one script */

typedef struct tp__lua_merge tp__lua_merge;

/* What a strategy is made from. */
typedef struct tp__lua_merge_config {
    const char *name;          /* the strategy's name (config "merges" key) */
    const char *code;          /* the script's text (never bytecode) */
    size_t len;                /* its length */
    const char *chunkname;     /* how messages name it: "merges/max.lua" or "merges.max-wins.lua" */
    uint64_t max_instructions; /* per call; 0: TP__LUA_INSTRUCTIONS */
    size_t max_memory; /* bytes the state may keep alive (twice, as garbage); 0: TP__LUA_MEMORY */
    unsigned max_ms;   /* per call, wall clock; 0: TP__LUA_MS */
    tp_log_fn log;     /* where a script's errors are logged, or NULL */
    void *log_user;
    int log_level; /* lines above this level (TP_LOG_*) are not logged */
} tp__lua_merge_config;

/*
 * tp__lua_merge_new compiles the script, runs it once in the sandbox and
 * checks that it defines a function merge. Returns the strategy, or NULL
 * with err: a syntax error carries "<chunkname>:<line>:".
 * Ownership: copies what cfg points at.
 */
tp__lua_merge *tp__lua_merge_new(const tp__lua_merge_config *cfg, tp_error *err);

/* tp__lua_merge_free frees the strategy and its state. NULL is allowed. */
void tp__lua_merge_free(tp__lua_merge *lm);

/*
 * tp__lua_merge_strategy is the strategy as the hub takes it (name, merge
 * function, user data): lives as long as lm.
 */
const tp_merge *tp__lua_merge_strategy(const tp__lua_merge *lm);

/* tp__lua_merge_memory is what the state holds now, in bytes (tests, bench). */
size_t tp__lua_merge_memory(const tp__lua_merge *lm);

#endif /* TP_DAEMON_LUAMERGE_H */
