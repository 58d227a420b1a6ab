/*
 * merge_bench: what a merge strategy in Lua costs beside the built-in
 * lww-map (issue 19), in the same run, for a small patch ({"title": ...})
 * to a model of five fields.
 *
 *   (a) one merge call: the strategy's merge function called directly, as
 *       the hub calls it (lww-map without stamps replaces the patched
 *       fields; the Lua script does the same; the counter of examples/lua
 *       adds an increment);
 *   (b) one host write through the hub: tp_hub_set_shared then tp_hub_sync
 *       (the merge, the schema check, the change published), lww-map
 *       against the same fields-replacing Lua script.
 *
 * Each figure is the median of several runs of many calls, timed with
 * clock_gettime(CLOCK_MONOTONIC). Usage: merge_bench [--quick] [--runs N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/luamerge.h"
#include "transports.h"

/* Replaces each patched top-level field; null deletes it (lww-map's
 * merge called without stamps does the same). */
static const char replace_lua[] = "function merge(current, patch, origin)\n"
                                  "  local r = object()\n"
                                  "  for k, v in pairs(current) do r[k] = v end\n"
                                  "  for k, v in pairs(patch) do\n"
                                  "    if v == null then r[k] = nil else r[k] = v end\n"
                                  "  end\n"
                                  "  return r\n"
                                  "end\n";

static const char counter_lua[] = "function merge(current, patch, origin)\n"
                                  "  local n = patch.increment\n"
                                  "  if math.type(n) ~= 'integer' then return nil, 'no' end\n"
                                  "  local r = object()\n"
                                  "  for k, v in pairs(current) do r[k] = v end\n"
                                  "  r.count = (current.count or 0) + n\n"
                                  "  return r\n"
                                  "end\n";

static const char schema_text[] = "{\"title\":\"Doc\",\"type\":\"object\",\"properties\":{"
                                  "\"title\":{\"type\":\"string\"},\"body\":{\"type\":\"string\"},"
                                  "\"count\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\","
                                  "\"items\":{\"type\":\"string\"}},"
                                  "\"done\":{\"type\":\"boolean\"}},\"required\":[\"title\"]}";

static const char value_text[] = "{\"title\":\"Roadmap\",\"body\":\"Q1: ship the thing\","
                                 "\"count\":3,\"tags\":[\"a\",\"b\"],\"done\":false}";

static int runs = 7;
static long calls = 200000;

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* µs per direct merge call, the median of the runs. */
static double
time_merge(const tp_merge *m, const json_t *current, const json_t *patch)
{
    double per[64];
    tp_origin o = {"alice", "c1"};
    for (int r = 0; r < runs; r++) {
        double t0 = now_s();
        for (long i = 0; i < calls; i++) {
            tp_error err;
            json_t *v = m->merge(m->user, current, patch, &o, &err);
            if (v == NULL) {
                fprintf(stderr, "merge_bench: %s refused: %s\n", m->name, err.message);
                exit(1);
            }
            json_decref(v);
        }
        per[r] = (now_s() - t0) / (double)calls * 1e6;
    }
    return median(per, runs);
}

/* µs per host write and sync through a hub, the median of the runs. */
static double
time_hub(const tp_merge *m)
{
    double per[64];
    tp_error err;
    tp_hub *hub = tp_hub_new(NULL, &err);
    tp_schema *schema = tp_schema_new(schema_text, &err);
    if (hub == NULL || schema == NULL ||
        tp_hub_share_as(hub, "doc", schema, value_text, m, &err) == NULL) {
        fprintf(stderr, "merge_bench: %s\n", err.message);
        exit(1);
    }
    char value[256];
    long n = calls / 4;
    for (int r = 0; r < runs; r++) {
        double t0 = now_s();
        for (long i = 0; i < n; i++) {
            snprintf(value, sizeof value,
                     "{\"title\":\"Roadmap %ld\",\"body\":\"Q1: ship the thing\",\"count\":3,"
                     "\"tags\":[\"a\",\"b\"],\"done\":false}",
                     i);
            if (tp_hub_set_shared(hub, "doc", value, &err) != TP_OK || tp_hub_sync(hub) < 0) {
                fprintf(stderr, "merge_bench: %s: %s\n", m->name, err.message);
                exit(1);
            }
        }
        per[r] = (now_s() - t0) / (double)n * 1e6;
    }
    tp_schema_free(schema);
    tp_hub_free(hub);
    return median(per, runs);
}

static tp__lua_merge *
lua(const char *name, const char *code)
{
    tp__lua_merge_config cfg = {0};
    cfg.name = name;
    cfg.code = code;
    cfg.len = strlen(code);
    cfg.chunkname = name;
    tp_error err;
    tp__lua_merge *lm = tp__lua_merge_new(&cfg, &err);
    if (lm == NULL) {
        fprintf(stderr, "merge_bench: %s\n", err.message);
        exit(1);
    }
    return lm;
}

int
main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            calls = 20000;
            runs = 3;
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = (int)strtol(argv[++i], NULL, 10);
            if (runs < 1 || runs > 64)
                runs = 7;
        } else {
            fprintf(stderr, "usage: merge_bench [--quick] [--runs N]\n");
            return 2;
        }
    }
    tp__lua_merge *replace = lua("replace.lua", replace_lua);
    tp__lua_merge *counter = lua("counter.lua", counter_lua);
    json_t *current = json_loads(value_text, 0, NULL);
    json_t *patch = json_loads("{\"title\":\"Roadmap 2\"}", 0, NULL);
    json_t *inc = json_loads("{\"increment\":1}", 0, NULL);

    printf("merge_bench: a small patch to a model of 5 fields, median of %d runs\n", runs);
    printf("(a) one merge call                      us/call\n");
    printf("    lww-map (built in)                  %7.3f\n",
           time_merge(&tp_lww_map_crdt, current, patch));
    printf("    Lua, the same field replacement     %7.3f\n",
           time_merge(tp__lua_merge_strategy(replace), current, patch));
    printf("    Lua, the counter of examples/lua    %7.3f\n",
           time_merge(tp__lua_merge_strategy(counter), current, inc));
    printf("(b) a host write and sync through a hub us/write\n");
    printf("    lww-map (built in)                  %7.3f\n", time_hub(&tp_lww_map_crdt));
    printf("    Lua, the same field replacement     %7.3f\n",
           time_hub(tp__lua_merge_strategy(replace)));
    printf("Lua state memory after the runs: %zu bytes (replace), %zu bytes (counter)\n",
           tp__lua_merge_memory(replace), tp__lua_merge_memory(counter));

    json_decref(current);
    json_decref(patch);
    json_decref(inc);
    tp__lua_merge_free(replace);
    tp__lua_merge_free(counter);
    return 0;
}
