/* A model's change log in Redis: key layout, Lua scripts and replies (see clog.h and
 * docs/internals/cluster-log.md). */
#include "cluster/clog.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/error.h"

/* ---- The scripts --------------------------------------------------------------------- */

/* Shared by the writing scripts. Redis does not roll a script back when a command inside it
 * fails, so every script checks the types of all its keys before its first write: after
 * that, no command can fail. refgt compares two canonical signed decimal int64 strings (refs
 * are int64, which Lua's doubles cannot hold). */
#define LUA_COMMON                                                                                 \
    "local function wrong(k, want)\n"                                                              \
    "  local t = redis.call('TYPE', k)['ok']\n"                                                    \
    "  if t ~= 'none' and t ~= want then\n"                                                        \
    "    return redis.error_reply('WRONGTYPE clog: a key holds a ' .. t .. ', not a ' .. "         \
    "want)\n"                                                                                      \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "local function refgt(a, b)\n"                                                                 \
    "  if a == b then return false end\n"                                                          \
    "  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'\n"                                    \
    "  if na ~= nb then return nb end\n"                                                           \
    "  local gt\n"                                                                                 \
    "  if #a ~= #b then gt = #a > #b else gt = a > b end\n"                                        \
    "  if na then return not gt end\n"                                                             \
    "  return gt\n"                                                                                \
    "end\n"                                                                                        \
    "local function put_outcome(c, q, ref, bytes, keep)\n"                                         \
    "  if redis.call('HSET', c, 'o' .. ref, bytes) == 1 then\n"                                    \
    "    redis.call('RPUSH', q, ref)\n"                                                            \
    "    while redis.call('LLEN', q) > keep do\n"                                                  \
    "      redis.call('HDEL', c, 'o' .. redis.call('LPOP', q))\n"                                  \
    "      redis.call('HINCRBY', c, 'forgotten', 1)\n"                                             \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  local hi = redis.call('HGET', c, 'highest')\n"                                              \
    "  if not hi or refgt(ref, hi) then redis.call('HSET', c, 'highest', ref) end\n"               \
    "end\n"

/* KEYS: model hash, log list[, client hash, client ref list]. ARGV: base rev, entry, record,
 * keep, channel, writer bytes, kind ('a' or 'd'), ref, outcome, outcome keep, the client
 * record's expiry in ms (0: none). */
static const char lua_append[] = LUA_COMMON
    "local e = wrong(KEYS[1], 'hash') or wrong(KEYS[2], 'list')\n"
    "if not e and #KEYS == 4 then e = wrong(KEYS[3], 'hash') or wrong(KEYS[4], 'list') end\n"
    "if e then return e end\n"
    "local cur = redis.call('HGET', KEYS[1], 'rev') or '0'\n"
    "if #KEYS == 4 and redis.call('HEXISTS', KEYS[3], 'o' .. ARGV[8]) == 1 then\n"
    "  return {2, cur, redis.call('HGET', KEYS[3], 'o' .. ARGV[8])}\n"
    "end\n"
    "if cur ~= ARGV[1] then return {0, cur} end\n"
    "local rev = string.format('%d', tonumber(cur) + 1)\n"
    "local el = '1' .. ARGV[7] .. rev .. ':' .. ARGV[6] .. ARGV[2]\n"
    "if ARGV[7] == 'd' then\n"
    "  redis.call('HSET', KEYS[1], 'rev', rev)\n"
    "  redis.call('HDEL', KEYS[1], 'record')\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  redis.call('RPUSH', KEYS[2], el)\n"
    "else\n"
    "  redis.call('HSET', KEYS[1], 'rev', rev, 'record', ARGV[3])\n"
    "  redis.call('RPUSH', KEYS[2], el)\n"
    "  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)\n"
    "end\n"
    "if #KEYS == 4 then put_outcome(KEYS[3], KEYS[4], ARGV[8], ARGV[9], tonumber(ARGV[10])) end\n"
    "if #KEYS == 4 and ARGV[11] ~= '0' then\n"
    "  redis.call('PEXPIRE', KEYS[3], ARGV[11])\n"
    "  redis.call('PEXPIRE', KEYS[4], ARGV[11])\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[5], el)\n"
    "return {1, rev}\n";

/* Several changes of one model in one script, revs base + 1 .. base + n. KEYS: model hash,
 * log list, then a client hash and ref list per entry with an outcome. ARGV: base rev,
 * record (the model after the last), keep, channel, n, outcome keep, then per entry: writer
 * bytes, entry, ref, outcome, the index of its client hash in KEYS (0: no outcome), the
 * client record's expiry in ms (0: none). */
static const char lua_append_many[] = LUA_COMMON
    "local e = wrong(KEYS[1], 'hash') or wrong(KEYS[2], 'list')\n"
    "for k = 3, #KEYS, 2 do\n"
    "  e = e or wrong(KEYS[k], 'hash') or wrong(KEYS[k + 1], 'list')\n"
    "end\n"
    "if e then return e end\n"
    "local cur = redis.call('HGET', KEYS[1], 'rev') or '0'\n"
    "local n = tonumber(ARGV[5])\n"
    "for i = 0, n - 1 do\n"
    "  local a = 7 + 6 * i\n"
    "  local ki = tonumber(ARGV[a + 4])\n"
    "  if ki > 0 and redis.call('HEXISTS', KEYS[ki], 'o' .. ARGV[a + 2]) == 1 then\n"
    "    return {2, cur, i, redis.call('HGET', KEYS[ki], 'o' .. ARGV[a + 2])}\n"
    "  end\n"
    "end\n"
    "if cur ~= ARGV[1] then return {0, cur} end\n"
    "local rev = tonumber(cur)\n"
    "for i = 0, n - 1 do\n"
    "  local a = 7 + 6 * i\n"
    "  rev = rev + 1\n"
    "  local el = '1a' .. string.format('%d', rev) .. ':' .. ARGV[a] .. ARGV[a + 1]\n"
    "  redis.call('RPUSH', KEYS[2], el)\n"
    "  local ki = tonumber(ARGV[a + 4])\n"
    "  if ki > 0 then\n"
    "    put_outcome(KEYS[ki], KEYS[ki + 1], ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[6]))\n"
    "    if ARGV[a + 5] ~= '0' then\n"
    "      redis.call('PEXPIRE', KEYS[ki], ARGV[a + 5])\n"
    "      redis.call('PEXPIRE', KEYS[ki + 1], ARGV[a + 5])\n"
    "    end\n"
    "  end\n"
    "  redis.call('PUBLISH', ARGV[4], el)\n"
    "end\n"
    "local r = string.format('%d', rev)\n"
    "redis.call('HSET', KEYS[1], 'rev', r, 'record', ARGV[2])\n"
    "redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)\n"
    "return {1, r}\n";

/* KEYS: client hash, client ref list. ARGV: ref, outcome, keep. */
static const char lua_outcome[] =
    LUA_COMMON "local e = wrong(KEYS[1], 'hash') or wrong(KEYS[2], 'list')\n"
               "if e then return e end\n"
               "put_outcome(KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3]))\n"
               "return 1\n";

/* KEYS: model hash, log list. ARGV: after rev, max entries. The log holds the revs
 * rev - LLEN + 1 .. rev, one element each, in order (every rev is one RPUSH). */
static const char lua_read[] =
    "local cur = redis.call('HGET', KEYS[1], 'rev')\n"
    "if not cur then return {0} end\n"
    "local n = tonumber(cur) - tonumber(ARGV[1])\n"
    "if n == 0 then return {1, cur, {}} end\n"
    "if n > 0 and n <= tonumber(ARGV[2]) and n <= redis.call('LLEN', KEYS[2]) then\n"
    "  return {1, cur, redis.call('LRANGE', KEYS[2], -n, -1)}\n"
    "end\n"
    "local rec = redis.call('HGET', KEYS[1], 'record')\n"
    "if not rec then return {3, cur} end\n"
    "return {2, cur, rec}\n";

/* KEYS: model hash, log list. ARGV: the writer's bytes as an element carries them. */
static const char lua_writer[] = "local cur = redis.call('HGET', KEYS[1], 'rev') or '0'\n"
                                 "local els = redis.call('LRANGE', KEYS[2], 0, -1)\n"
                                 "local w = ARGV[1]\n"
                                 "for i = #els, 1, -1 do\n"
                                 "  local el = els[i]\n"
                                 "  local p = string.find(el, ':', 3, true)\n"
                                 "  if p and string.sub(el, p + 1, p + #w) == w then\n"
                                 "    return {string.sub(el, 3, p - 1), cur, #els}\n"
                                 "  end\n"
                                 "end\n"
                                 "return {'0', cur, #els}\n";

/* The catalog's counters ("tp:{%catalog}:v", ":bytes") as the put and load scripts read them:
 * absent is 0; anything but a canonical decimal below 10^15 (so exact in Lua's doubles) is an
 * error, raised before any write. */
#define LUA_CATALOG                                                                                \
    "local function counter(k)\n"                                                                  \
    "  local s = redis.call('GET', k)\n"                                                           \
    "  if not s then return '0' end\n"                                                             \
    "  if #s > 15 or not (s == '0' or string.match(s, '^[1-9]%d*$')) then\n"                       \
    "    return nil\n"                                                                             \
    "  end\n"                                                                                      \
    "  return s\n"                                                                                 \
    "end\n"

/* KEYS: items hash, version, bytes. ARGV: expect ('-1': none), op, channel, items bound,
 * bytes bound, then per item: 's' (set) or 'd' (delete), field, body. The totals after the put
 * are worked out first (HLEN, HEXISTS, HSTRLEN: O(1) each, a field seen twice counted once),
 * so that a put past the bounds writes nothing. Only a put that grows a total past its bound
 * is refused: one that shrinks an over-full catalog (bounds lowered since) goes through. */
static const char lua_catalog_put[] = LUA_COMMON LUA_CATALOG
    "local e = wrong(KEYS[1], 'hash') or wrong(KEYS[2], 'string') or wrong(KEYS[3], 'string')\n"
    "if e then return e end\n"
    "local cur, size = counter(KEYS[2]), counter(KEYS[3])\n"
    "if not cur or not size then\n"
    "  return redis.error_reply('ERR clog: catalog: a counter is not a decimal')\n"
    "end\n"
    "if ARGV[1] ~= '-1' and ARGV[1] ~= cur then return {1, cur} end\n"
    "local count0, bytes0, seen = redis.call('HLEN', KEYS[1]), tonumber(size), {}\n"
    "local count, bytes = count0, bytes0\n"
    "for i = 6, #ARGV, 3 do\n"
    "  local f = ARGV[i + 1]\n"
    "  local old = seen[f]\n"
    "  if old == nil then\n"
    "    old = false\n"
    "    if redis.call('HEXISTS', KEYS[1], f) == 1 then old = redis.call('HSTRLEN', KEYS[1], f) "
    "end\n"
    "  end\n"
    "  if old then count = count - 1; bytes = bytes - #f - old end\n"
    "  if ARGV[i] == 's' then\n"
    "    count = count + 1; bytes = bytes + #f + #ARGV[i + 2]; seen[f] = #ARGV[i + 2]\n"
    "  else\n"
    "    seen[f] = false\n"
    "  end\n"
    "end\n"
    "if (count > tonumber(ARGV[4]) and count > count0) or\n"
    "   (bytes > tonumber(ARGV[5]) and bytes > bytes0) then\n"
    "  return {2, cur, count, bytes}\n"
    "end\n"
    "for i = 6, #ARGV, 3 do\n"
    "  if ARGV[i] == 's' then redis.call('HSET', KEYS[1], ARGV[i + 1], ARGV[i + 2])\n"
    "  else redis.call('HDEL', KEYS[1], ARGV[i + 1]) end\n"
    "end\n"
    "local v = string.format('%d', redis.call('INCR', KEYS[2]))\n"
    "redis.call('SET', KEYS[3], string.format('%d', bytes))\n"
    "redis.call('PUBLISH', ARGV[3], v .. '\\n' .. ARGV[2])\n"
    "return {0, v}\n";

/* KEYS: items hash, version. One script, so the version and the items are of one instant. */
static const char lua_catalog_load[] = LUA_COMMON LUA_CATALOG
    "local e = wrong(KEYS[1], 'hash') or wrong(KEYS[2], 'string')\n"
    "if e then return e end\n"
    "local cur = counter(KEYS[2])\n"
    "if not cur then return redis.error_reply('ERR clog: catalog: a counter is not a decimal') "
    "end\n"
    "return {cur, redis.call('HGETALL', KEYS[1])}\n";

/* ---- The log ------------------------------------------------------------------------- */

struct tp__clog {
    tp__redis *r;
    tp__redis_script *append, *outcome, *read, *writer, *cat_put, *cat_load, *append_many;
    uint32_t cat_items, cat_bytes; /* the catalog's bounds (tp__clog_catalog_bound) */
    tp__clog_stats st;
    uint64_t inflight;
    int freed; /* tp__clog_free ran: the last call in flight releases the memory */
};

enum op {
    OP_APPEND,
    OP_READ,
    OP_SNAPSHOT,
    OP_OUTCOME_PUT,
    OP_OUTCOMES_GET,
    OP_WRITER,
    OP_CATALOG_PUT,
    OP_CATALOG_LOAD,
    OP_CATALOG_VERSION,
    OP_APPEND_MANY
};

typedef struct call {
    tp__clog *c;
    enum op op;
    void (*cb)(void);
    void *user;
} call;

tp__clog *
tp__clog_new(tp__redis *r, tp_error *err)
{
    if (!r) {
        tp__error_set(err, TP_EARG, "clog: no Redis link");
        return NULL;
    }
    tp__clog *c = tp__calloc(1, sizeof *c);
    if (!c) {
        tp__error_set(err, TP_ENOMEM, "clog: out of memory");
        return NULL;
    }
    c->r = r;
    c->append = tp__redis_script_new(r, lua_append, sizeof lua_append - 1, err);
    c->outcome =
        c->append ? tp__redis_script_new(r, lua_outcome, sizeof lua_outcome - 1, err) : NULL;
    c->read = c->outcome ? tp__redis_script_new(r, lua_read, sizeof lua_read - 1, err) : NULL;
    c->writer = c->read ? tp__redis_script_new(r, lua_writer, sizeof lua_writer - 1, err) : NULL;
    c->cat_put = c->writer
                     ? tp__redis_script_new(r, lua_catalog_put, sizeof lua_catalog_put - 1, err)
                     : NULL;
    c->cat_load = c->cat_put
                      ? tp__redis_script_new(r, lua_catalog_load, sizeof lua_catalog_load - 1, err)
                      : NULL;
    c->append_many = c->cat_load
                         ? tp__redis_script_new(r, lua_append_many, sizeof lua_append_many - 1, err)
                         : NULL;
    c->cat_items = TP__CLOG_CATALOG_ITEMS_MAX;
    c->cat_bytes = TP__CLOG_CATALOG_BYTES_MAX;
    if (!c->append_many) {
        tp__free(c);
        return NULL;
    }
    return c;
}

void
tp__clog_free(tp__clog *c)
{
    if (!c)
        return;
    c->freed = 1;
    if (c->inflight == 0)
        tp__free(c);
}

void
tp__clog_stats_get(const tp__clog *c, tp__clog_stats *out)
{
    *out = c->st;
    tp__redis_stats rs;
    tp__redis_stats_get(c->r, &rs);
    out->noscript = rs.noscript;
    out->redirects = rs.moved + rs.ask;
}

/* ---- Names --------------------------------------------------------------------------- */

static int
check_name(const char *s, size_t max, const char *field, tp_error *err)
{
    if (!s || !*s)
        return tp__error_set(err, TP_EARG, "clog: %s: empty", field);
    size_t n = strnlen(s, max + 1);
    if (n > max)
        return tp__error_set(err, TP_EARG, "clog: %s: longer than %zu bytes", field, max);
    return TP_OK;
}

/* A key: "tp:{" TAG "}:" kind [":" tail], where TAG is the tenant (private model, client) or
 * "shared:" id (shared model), with '%', '{' and '}' escaped as %25, %7B, %7D so that the
 * hash tag is exactly the tag whatever the bytes, and two names never make one key. */
typedef struct name {
    char b[TP__CLOG_NAME_MAX];
    size_t n;
} name;

static void
put(name *k, const char *s, size_t n)
{
    memcpy(k->b + k->n, s, n);
    k->n += n;
}

static void
put_escaped(name *k, const char *s)
{
    for (; *s; s++) {
        if (*s == '%' || *s == '{' || *s == '}') {
            char e[4];
            snprintf(e, sizeof e, "%%%02X", (unsigned)(unsigned char)*s);
            put(k, e, 3);
        } else {
            put(k, s, 1);
        }
    }
}

/* model_key builds the model's key for kind 'm' (its hash, also its channel) or 'l' (its
 * log). */
static int
model_key(const char *owner, const char *id, char kind, name *k, tp_error *err)
{
    if (!owner)
        return tp__error_set(err, TP_EARG, "clog: owner: NULL (\"\" for a shared model)");
    int rc;
    if (*owner && (rc = check_name(owner, TP__CLOG_KEY_MAX, "owner", err)) < 0)
        return rc;
    if ((rc = check_name(id, TP__CLOG_KEY_MAX, "id", err)) < 0)
        return rc;
    k->n = 0;
    put(k, "tp:{", 4);
    if (*owner) {
        put_escaped(k, owner);
        put(k, "}:", 2);
        put(k, &kind, 1);
        put(k, ":", 1);
        put(k, id, strlen(id));
    } else {
        put(k, "shared:", 7);
        put_escaped(k, id);
        put(k, "}:", 2);
        put(k, &kind, 1);
    }
    return TP_OK;
}

/* client_key: the key of a client's record, kind 'c' (its hash: outcomes, highest, forgotten)
 * or 'q' (its refs in the order recorded, for keep). With id NULL, the client's own, in its
 * tenant's slot: tp:{<tenant>}:<kind>:<client>. With id, its copy in shared model id's slot:
 * tp:{shared:<id>}:<kind>:<len>:<tenant>:<client>, the tenant's length first so that no
 * (tenant, client) pair can spell another's. */
static int
client_key(const char *id, const char *tenant, const char *client, char kind, name *k,
           tp_error *err)
{
    int rc = id ? check_name(id, TP__CLOG_KEY_MAX, "id", err) : TP_OK;
    if (rc < 0 || (rc = check_name(tenant, TP__CLOG_KEY_MAX, "tenant", err)) < 0 ||
        (rc = check_name(client, TP__CLOG_CLIENT_MAX, "client", err)) < 0)
        return rc;
    k->n = 0;
    put(k, "tp:{", 4);
    if (id) {
        put(k, "shared:", 7);
        put_escaped(k, id);
    } else
        put_escaped(k, tenant);
    put(k, "}:", 2);
    put(k, &kind, 1);
    if (id) {
        char len[16];
        int n = snprintf(len, sizeof len, ":%zu:", strlen(tenant));
        put(k, len, (size_t)n);
        put(k, tenant, strlen(tenant));
    }
    put(k, ":", 1);
    put(k, client, strlen(client));
    return TP_OK;
}

/* client_keys: both of a client's keys, 'c' into keys[0] and 'q' into keys[1]. */
static int
client_keys(const char *id, const char *tenant, const char *client, name *keys, tp_error *err)
{
    int rc = client_key(id, tenant, client, 'c', &keys[0], err);
    return rc < 0 ? rc : client_key(id, tenant, client, 'q', &keys[1], err);
}

int
tp__clog_channel(const char *owner, const char *id, char *out, size_t cap, size_t *len,
                 tp_error *err)
{
    name k;
    int rc = model_key(owner, id, 'm', &k, err);
    if (rc < 0)
        return rc;
    if (k.n > cap)
        return tp__error_set(err, TP_ETOOLARGE, "clog: channel: %zu bytes, more than %zu", k.n,
                             cap);
    memcpy(out, k.b, k.n);
    *len = k.n;
    return TP_OK;
}

int
tp__clog_subscribe(tp__clog *c, const char *owner, const char *id, tp_error *err)
{
    name k;
    int rc = model_key(owner, id, 'm', &k, err);
    return rc < 0 ? rc : tp__redis_subscribe(c->r, k.b, k.n, err);
}

int
tp__clog_unsubscribe(tp__clog *c, const char *owner, const char *id, tp_error *err)
{
    name k;
    int rc = model_key(owner, id, 'm', &k, err);
    return rc < 0 ? rc : tp__redis_unsubscribe(c->r, k.b, k.n, err);
}

/* The writer as an element carries it: one byte L (the client id's length, 0: none), the
 * client id, its ref in decimal (when L > 0), then ':'. */
typedef struct wbytes {
    char b[1 + TP__CLOG_CLIENT_MAX + 24];
    size_t n;
} wbytes;

static int
writer_bytes(const tp__clog_writer *w, wbytes *out, tp_error *err)
{
    if (!w || !w->client || !*w->client) {
        out->b[0] = 0;
        out->b[1] = ':';
        out->n = 2;
        return TP_OK;
    }
    int rc = check_name(w->client, TP__CLOG_CLIENT_MAX, "writer.client", err);
    if (rc < 0)
        return rc;
    size_t l = strlen(w->client);
    out->b[0] = (char)l;
    memcpy(out->b + 1, w->client, l);
    int m = snprintf(out->b + 1 + l, sizeof out->b - 1 - l, "%" PRId64 ":", w->ref);
    out->n = 1 + l + (size_t)m;
    return TP_OK;
}

/* ---- Decoding ------------------------------------------------------------------------ */

/* parse_i64 reads a whole decimal (optional '-') from s[0..n). */
static int
parse_i64(const char *s, size_t n, int64_t *out)
{
    char buf[24];
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    for (size_t i = buf[0] == '-' ? 1 : 0; i < n; i++)
        if (buf[i] < '0' || buf[i] > '9')
            return -1;
    if (n == 1 && buf[0] == '-')
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end)
        return -1;
    *out = (int64_t)v;
    return 0;
}

static int
reply_i64(const redisReply *r, int64_t *out)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        *out = r->integer;
        return 0;
    }
    if (r->type == REDIS_REPLY_STRING)
        return parse_i64(r->str, r->len, out);
    return -1;
}

int
tp__clog_decode(const char *d, size_t len, tp__clog_entry *out, tp_error *err)
{
    memset(out, 0, sizeof *out);
    if (len < 5 || d[0] != '1')
        return tp__error_set(err, TP_EINVALID, "clog: entry: not a version 1 log entry");
    if (d[1] != 'a' && d[1] != 'd')
        return tp__error_set(err, TP_EINVALID, "clog: entry: kind: '%c' is neither a nor d",
                             d[1] >= 32 && d[1] < 127 ? d[1] : '?');
    out->kind = d[1];
    const char *colon = memchr(d + 2, ':', len - 2);
    if (!colon || parse_i64(d + 2, (size_t)(colon - d - 2), &out->rev) < 0 || out->rev < 1)
        return tp__error_set(err, TP_EINVALID, "clog: entry: rev: not a positive integer");
    size_t i = (size_t)(colon - d) + 1;
    if (i >= len)
        return tp__error_set(err, TP_EINVALID, "clog: entry: writer: missing");
    size_t l = (unsigned char)d[i++];
    if (l > TP__CLOG_CLIENT_MAX || l > len - i)
        return tp__error_set(err, TP_EINVALID, "clog: entry: writer: client id of %zu bytes", l);
    out->client = d + i;
    out->client_len = l;
    i += l;
    const char *end = i < len ? memchr(d + i, ':', len - i) : NULL;
    if (!end)
        return tp__error_set(err, TP_EINVALID, "clog: entry: writer: no ':' after it");
    size_t rl = (size_t)(end - d) - i;
    if (l == 0 ? rl != 0 : parse_i64(d + i, rl, &out->ref) < 0)
        return tp__error_set(err, TP_EINVALID, "clog: entry: writer: bad ref");
    i += rl + 1;
    out->entry = d + i;
    out->entry_len = len - i;
    return TP_OK;
}

/* ---- Calls --------------------------------------------------------------------------- */

static void on_reply(const redisReply *reply, const tp_error *lerr, void *user);

static int
call_new(tp__clog *c, enum op op, void (*cb)(void), void *user, call **out, tp_error *err)
{
    if (c->freed)
        return tp__error_set(err, TP_ECLOSED, "clog: freed");
    call *k = tp__malloc(sizeof *k);
    if (!k)
        return tp__error_set(err, TP_ENOMEM, "clog: out of memory");
    *k = (call){c, op, cb, user};
    *out = k;
    return TP_OK;
}

/* sent accounts a call handed to the link (rc TP_OK) or frees it. */
static int
sent(call *k, int rc)
{
    if (rc < 0) {
        tp__free(k);
        return rc;
    }
    k->c->inflight++;
    k->c->st.calls++;
    return TP_OK;
}

static int
script(call *k, tp__redis_script *s, int nkeys, name *keys, int nargs, const char *const *args,
       const size_t *arglens, tp_error *err)
{
    const char *kp[4];
    size_t kl[4];
    for (int i = 0; i < nkeys; i++) {
        kp[i] = keys[i].b;
        kl[i] = keys[i].n;
    }
    return sent(k, tp__redis_script_call(k->c->r, s, nkeys, kp, kl, nargs, args, arglens, on_reply,
                                         k, err));
}

static int
check_rev(int64_t rev, const char *field, tp_error *err)
{
    if (rev < 0 || rev >= TP__CLOG_REV_MAX)
        return tp__error_set(err, TP_EARG, "clog: %s: %" PRId64 " is not within 0 to 2^53 - 1",
                             field, rev);
    return TP_OK;
}

static int
append_call(tp__clog *c, const tp__clog_append_req *q, char kind, tp__clog_append_cb cb, void *user,
            tp_error *err)
{
    name keys[4];
    int rc;
    if ((rc = model_key(q->owner, q->id, 'm', &keys[0], err)) < 0 ||
        (rc = model_key(q->owner, q->id, 'l', &keys[1], err)) < 0 ||
        (rc = check_rev(q->base_rev, "base_rev", err)) < 0)
        return rc;
    if (q->entry_len > TP__CLOG_ENTRY_MAX)
        return tp__error_set(err, TP_ETOOLARGE, "clog: entry: %zu bytes, more than %u",
                             q->entry_len, TP__CLOG_ENTRY_MAX);
    if (q->record_len > TP__CLOG_RECORD_MAX)
        return tp__error_set(err, TP_ETOOLARGE, "clog: record: %zu bytes, more than %u",
                             q->record_len, TP__CLOG_RECORD_MAX);
    if ((q->entry_len && !q->entry) || (q->record_len && !q->record))
        return tp__error_set(err, TP_EARG, "clog: %s: NULL with a length",
                             q->entry_len && !q->entry ? "entry" : "record");
    if (kind == 'a' && (q->keep < 1 || q->keep > TP__CLOG_KEEP_MAX))
        return tp__error_set(err, TP_EARG, "clog: keep: %u is not within 1 to %u", q->keep,
                             TP__CLOG_KEEP_MAX);
    wbytes w;
    if ((rc = writer_bytes(&q->writer, &w, err)) < 0)
        return rc;
    int nkeys = 2;
    /* A private writer's client record is under the model's tenant; a shared one's under
     * its own tenant, which only one Redis (not a cluster) lets one script reach. */
    const char *tenant = *q->owner ? q->owner : q->tenant;
    int here = q->outcome != NULL && q->outcome_here && !*q->owner;
    if (q->outcome) {
        if (!*q->owner && !here && (!tenant || !*tenant || !tp__redis_standalone(c->r)))
            return tp__error_set(err, TP_EARG,
                                 "clog: outcome: a shared model's client is in another slot "
                                 "(record it with tp__clog_outcome_put)");
        if (!q->writer.client || !*q->writer.client)
            return tp__error_set(err, TP_EARG, "clog: outcome: no writer.client to record it for");
        if (q->outcome_len > TP__CLOG_OUTCOME_MAX)
            return tp__error_set(err, TP_ETOOLARGE, "clog: outcome: %zu bytes, more than %u",
                                 q->outcome_len, TP__CLOG_OUTCOME_MAX);
        if (q->outcome_keep < 1 || q->outcome_keep > TP__CLOG_OUTCOMES_MAX)
            return tp__error_set(err, TP_EARG, "clog: outcome_keep: %u is not within 1 to %u",
                                 q->outcome_keep, TP__CLOG_OUTCOMES_MAX);
        if (here && (!tenant || !*tenant))
            return tp__error_set(err, TP_EARG, "clog: outcome_here: no tenant");
        if ((rc = client_keys(here ? q->id : NULL, tenant, q->writer.client, &keys[2], err)) < 0)
            return rc;
        nkeys = 4;
    }
    char base[24], keep[16], ref[24], okeep[16], ttl[24];
    snprintf(ttl, sizeof ttl, "%u", here ? TP__CLOG_HERE_TTL_MS : 0);
    snprintf(base, sizeof base, "%" PRId64, q->base_rev);
    snprintf(keep, sizeof keep, "%u", q->keep ? q->keep : 1);
    snprintf(ref, sizeof ref, "%" PRId64, q->writer.ref);
    snprintf(okeep, sizeof okeep, "%u", q->outcome_keep);
    const char *args[11] = {base,
                            q->entry ? q->entry : "",
                            q->record ? q->record : "",
                            keep,
                            keys[0].b,
                            w.b,
                            kind == 'd' ? "d" : "a",
                            ref,
                            q->outcome ? q->outcome : "",
                            okeep,
                            ttl};
    size_t lens[11] = {strlen(base), q->entry_len,   q->record_len, strlen(keep), keys[0].n, w.n, 1,
                       strlen(ref),  q->outcome_len, strlen(okeep), strlen(ttl)};
    call *k = NULL;
    if ((rc = call_new(c, OP_APPEND, (void (*)(void))cb, user, &k, err)) < 0)
        return rc;
    if ((rc = script(k, c->append, nkeys, keys, 11, args, lens, err)) == TP_OK)
        c->st.appends++;
    return rc;
}

int
tp__clog_append_many(tp__clog *c, const tp__clog_append_req *reqs, size_t n,
                     tp__clog_append_many_cb cb, void *user, tp_error *err)
{
    if (!cb)
        return tp__error_set(err, TP_EARG, "clog: append_many: no callback");
    if (n < 1 || n > TP__CLOG_BATCH_MAX)
        return tp__error_set(err, TP_EARG, "clog: append_many: %zu changes, not within 1 to %u", n,
                             TP__CLOG_BATCH_MAX);
    const tp__clog_append_req *q = &reqs[n - 1];
    name *keys = tp__calloc(2 + 2 * n, sizeof *keys);
    wbytes *w = tp__calloc(n, sizeof *w);
    const char **args = tp__calloc(6 + 6 * n, sizeof *args);
    size_t *lens = tp__calloc(6 + 6 * n, sizeof *lens);
    const char **kp = tp__calloc(2 + 2 * n, sizeof *kp);
    size_t *kl = tp__calloc(2 + 2 * n, sizeof *kl);
    char(*nums)[24] = tp__calloc(3 * n + 4, sizeof *nums);
    int rc = keys && w && args && lens && kp && kl && nums
                 ? TP_OK
                 : tp__error_set(err, TP_ENOMEM, "clog: out of memory");
    int nkeys = 2;
    if (rc == TP_OK && ((rc = model_key(q->owner, q->id, 'm', &keys[0], err)) < 0 ||
                        (rc = model_key(q->owner, q->id, 'l', &keys[1], err)) < 0 ||
                        (rc = check_rev(reqs[0].base_rev, "base_rev", err)) < 0))
        ;
    else if (rc == TP_OK && q->record_len > TP__CLOG_RECORD_MAX)
        rc = tp__error_set(err, TP_ETOOLARGE, "clog: record: %zu bytes, more than %u",
                           q->record_len, TP__CLOG_RECORD_MAX);
    else if (rc == TP_OK && (q->keep < 1 || q->keep > TP__CLOG_KEEP_MAX))
        rc = tp__error_set(err, TP_EARG, "clog: keep: %u is not within 1 to %u", q->keep,
                           TP__CLOG_KEEP_MAX);
    if (rc == TP_OK) {
        snprintf(nums[0], sizeof nums[0], "%" PRId64, reqs[0].base_rev);
        snprintf(nums[1], sizeof nums[1], "%u", q->keep);
        snprintf(nums[2], sizeof nums[2], "%zu", n);
        uint32_t okeep = 1; /* the requests' largest */
        for (size_t i = 0; i < n; i++)
            if (reqs[i].outcome_keep > okeep)
                okeep = reqs[i].outcome_keep;
        if (okeep > TP__CLOG_OUTCOMES_MAX)
            okeep = TP__CLOG_OUTCOMES_MAX;
        snprintf(nums[3], sizeof nums[3], "%u", okeep);
        const char *head[6] = {nums[0], q->record ? q->record : "", nums[1], keys[0].b, nums[2],
                               nums[3]};
        size_t hl[6] = {strlen(nums[0]), q->record_len,   strlen(nums[1]),
                        keys[0].n,       strlen(nums[2]), strlen(nums[3])};
        memcpy(args, head, sizeof head);
        memcpy(lens, hl, sizeof hl);
    }
    for (size_t i = 0; rc == TP_OK && i < n; i++) {
        const tp__clog_append_req *p = &reqs[i];
        if (p->entry_len > TP__CLOG_ENTRY_MAX) {
            rc = tp__error_set(err, TP_ETOOLARGE, "clog: entry: %zu bytes, more than %u",
                               p->entry_len, TP__CLOG_ENTRY_MAX);
            break;
        }
        if ((rc = writer_bytes(&p->writer, &w[i], err)) < 0)
            break;
        const char *tenant = *q->owner ? q->owner : p->tenant;
        int here = p->outcome != NULL && p->outcome_here && !*q->owner;
        int ki = 0;
        if (p->outcome != NULL) {
            if (!*q->owner && !here && (!tenant || !*tenant || !tp__redis_standalone(c->r))) {
                rc = tp__error_set(err, TP_EARG,
                                   "clog: outcome: a shared model's client is in "
                                   "another slot (record it with tp__clog_outcome_put)");
                break;
            }
            if (!p->writer.client || !*p->writer.client || p->outcome_len > TP__CLOG_OUTCOME_MAX ||
                !tenant || !*tenant) {
                rc = tp__error_set(err, TP_EARG,
                                   "clog: outcome: needs writer.client and tenant, "
                                   "at most %u bytes",
                                   TP__CLOG_OUTCOME_MAX);
                break;
            }
            if ((rc = client_keys(here ? q->id : NULL, tenant, p->writer.client, &keys[nkeys],
                                  err)) < 0)
                break;
            ki = nkeys + 1; /* Lua counts from 1 */
            nkeys += 2;
        }
        char *ref = nums[4 + 3 * i], *kis = nums[5 + 3 * i], *ttl = nums[6 + 3 * i];
        snprintf(ref, 24, "%" PRId64, p->writer.ref);
        snprintf(kis, 24, "%d", ki);
        snprintf(ttl, 24, "%u", here ? TP__CLOG_HERE_TTL_MS : 0);
        const char *g[6] = {
            w[i].b, p->entry ? p->entry : "", ref, p->outcome ? p->outcome : "", kis, ttl};
        size_t gl[6] = {w[i].n,         p->entry_len, strlen(ref),
                        p->outcome_len, strlen(kis),  strlen(ttl)};
        memcpy(args + 6 + 6 * i, g, sizeof g);
        memcpy(lens + 6 + 6 * i, gl, sizeof gl);
    }
    call *k = NULL;
    if (rc == TP_OK)
        rc = call_new(c, OP_APPEND_MANY, (void (*)(void))cb, user, &k, err);
    if (rc == TP_OK) {
        for (int i = 0; i < nkeys; i++) {
            kp[i] = keys[i].b;
            kl[i] = keys[i].n;
        }
        rc = sent(k, tp__redis_script_call(c->r, c->append_many, nkeys, kp, kl, (int)(6 + 6 * n),
                                           args, lens, on_reply, k, err));
        if (rc == TP_OK)
            c->st.appends++;
    }
    tp__free(keys);
    tp__free(w);
    tp__free(args);
    tp__free(lens);
    tp__free(kp);
    tp__free(kl);
    tp__free(nums);
    return rc;
}

int
tp__clog_append(tp__clog *c, const tp__clog_append_req *req, tp__clog_append_cb cb, void *user,
                tp_error *err)
{
    if (!req || !cb)
        return tp__error_set(err, TP_EARG, "clog: append: no request or callback");
    return append_call(c, req, 'a', cb, user, err);
}

int
tp__clog_delete(tp__clog *c, const char *owner, const char *id, int64_t base_rev,
                const tp__clog_writer *writer, tp__clog_append_cb cb, void *user, tp_error *err)
{
    if (!cb)
        return tp__error_set(err, TP_EARG, "clog: delete: no callback");
    tp__clog_append_req q = {.owner = owner, .id = id, .base_rev = base_rev, .keep = 1};
    if (writer)
        q.writer = *writer;
    return append_call(c, &q, 'd', cb, user, err);
}

int
tp__clog_read(tp__clog *c, const char *owner, const char *id, int64_t after_rev,
              uint32_t max_entries, tp__clog_read_cb cb, void *user, tp_error *err)
{
    name keys[2];
    int rc;
    if ((rc = model_key(owner, id, 'm', &keys[0], err)) < 0 ||
        (rc = model_key(owner, id, 'l', &keys[1], err)) < 0 ||
        (rc = check_rev(after_rev, "after_rev", err)) < 0)
        return rc;
    if (max_entries < 1 || max_entries > TP__CLOG_KEEP_MAX)
        return tp__error_set(err, TP_EARG, "clog: max_entries: %u is not within 1 to %u",
                             max_entries, TP__CLOG_KEEP_MAX);
    if (!cb)
        return tp__error_set(err, TP_EARG, "clog: read: no callback");
    char after[24], max[16];
    snprintf(after, sizeof after, "%" PRId64, after_rev);
    snprintf(max, sizeof max, "%u", max_entries);
    const char *args[2] = {after, max};
    size_t lens[2] = {strlen(after), strlen(max)};
    call *k = NULL;
    if ((rc = call_new(c, OP_READ, (void (*)(void))cb, user, &k, err)) < 0)
        return rc;
    if ((rc = script(k, c->read, 2, keys, 2, args, lens, err)) == TP_OK)
        c->st.reads++;
    return rc;
}

int
tp__clog_snapshot(tp__clog *c, const char *owner, const char *id, tp__clog_read_cb cb, void *user,
                  tp_error *err)
{
    name key;
    int rc = model_key(owner, id, 'm', &key, err);
    if (rc < 0)
        return rc;
    if (!cb)
        return tp__error_set(err, TP_EARG, "clog: snapshot: no callback");
    const char *argv[4] = {"HMGET", key.b, "rev", "record"};
    size_t lens[4] = {5, key.n, 3, 6};
    call *k = NULL;
    if ((rc = call_new(c, OP_SNAPSHOT, (void (*)(void))cb, user, &k, err)) < 0)
        return rc;
    if ((rc = sent(k, tp__redis_command(c->r, 4, argv, lens, 1, on_reply, k, err))) == TP_OK)
        c->st.reads++;
    return rc;
}

int
tp__clog_outcome_put(tp__clog *c, const char *tenant, const char *client, int64_t ref,
                     const char *bytes, size_t len, uint32_t keep, tp__clog_done_cb cb, void *user,
                     tp_error *err)
{
    name keys[2];
    int rc;
    if ((rc = client_keys(NULL, tenant, client, keys, err)) < 0)
        return rc;
    if (len > TP__CLOG_OUTCOME_MAX)
        return tp__error_set(err, TP_ETOOLARGE, "clog: outcome: %zu bytes, more than %u", len,
                             TP__CLOG_OUTCOME_MAX);
    if (len && !bytes)
        return tp__error_set(err, TP_EARG, "clog: outcome: NULL with a length");
    if (keep < 1 || keep > TP__CLOG_OUTCOMES_MAX)
        return tp__error_set(err, TP_EARG, "clog: keep: %u is not within 1 to %u", keep,
                             TP__CLOG_OUTCOMES_MAX);
    if (!cb)
        return tp__error_set(err, TP_EARG, "clog: outcome_put: no callback");
    char r[24], kp[16];
    snprintf(r, sizeof r, "%" PRId64, ref);
    snprintf(kp, sizeof kp, "%u", keep);
    const char *args[3] = {r, bytes ? bytes : "", kp};
    size_t lens[3] = {strlen(r), len, strlen(kp)};
    call *k = NULL;
    if ((rc = call_new(c, OP_OUTCOME_PUT, (void (*)(void))cb, user, &k, err)) < 0)
        return rc;
    if ((rc = script(k, c->outcome, 2, keys, 3, args, lens, err)) == TP_OK)
        c->st.outcomes++;
    return rc;
}

int
tp__clog_outcomes_get(tp__clog *c, const char *tenant, const char *client, tp__clog_outcomes_cb cb,
                      void *user, tp_error *err)
{
    name key;
    int rc = client_key(NULL, tenant, client, 'c', &key, err);
    if (rc < 0)
        return rc;
    if (!cb)
        return tp__error_set(err, TP_EARG, "clog: outcomes_get: no callback");
    const char *argv[2] = {"HGETALL", key.b};
    size_t lens[2] = {7, key.n};
    call *k = NULL;
    if ((rc = call_new(c, OP_OUTCOMES_GET, (void (*)(void))cb, user, &k, err)) < 0)
        return rc;
    if ((rc = sent(k, tp__redis_command(c->r, 2, argv, lens, 1, on_reply, k, err))) == TP_OK)
        c->st.reads++;
    return rc;
}

int
tp__clog_writer_in_log(tp__clog *c, const char *owner, const char *id,
                       const tp__clog_writer *writer, tp__clog_writer_cb cb, void *user,
                       tp_error *err)
{
    name keys[2];
    int rc;
    if ((rc = model_key(owner, id, 'm', &keys[0], err)) < 0 ||
        (rc = model_key(owner, id, 'l', &keys[1], err)) < 0)
        return rc;
    if (!writer || !writer->client || !*writer->client)
        return tp__error_set(err, TP_EARG, "clog: writer.client: empty");
    if (!cb)
        return tp__error_set(err, TP_EARG, "clog: writer_in_log: no callback");
    wbytes w;
    if ((rc = writer_bytes(writer, &w, err)) < 0)
        return rc;
    const char *args[1] = {w.b};
    size_t lens[1] = {w.n};
    call *k = NULL;
    if ((rc = call_new(c, OP_WRITER, (void (*)(void))cb, user, &k, err)) < 0)
        return rc;
    if ((rc = script(k, c->writer, 2, keys, 1, args, lens, err)) == TP_OK)
        c->st.reads++;
    return rc;
}

/* ---- The catalog --------------------------------------------------------------------- */

static void
catalog_key(const char *suffix, name *k)
{
    /* "%catalog" is no escaped name's tag: a tenant's '%' is always written %25. */
    k->n = 0;
    put(k, "tp:{%catalog}:", 14);
    put(k, suffix, strlen(suffix));
}

int
tp__clog_catalog_bound(tp__clog *c, uint32_t items, uint32_t bytes, tp_error *err)
{
    if (items < 1 || items > TP__CLOG_CATALOG_ITEMS_MAX)
        return tp__error_set(err, TP_EARG, "clog: catalog items bound: %u is not within 1 to %u",
                             items, TP__CLOG_CATALOG_ITEMS_MAX);
    if (bytes < 1 || bytes > TP__CLOG_CATALOG_BYTES_MAX)
        return tp__error_set(err, TP_EARG, "clog: catalog bytes bound: %u is not within 1 to %u",
                             bytes, TP__CLOG_CATALOG_BYTES_MAX);
    c->cat_items = items;
    c->cat_bytes = bytes;
    return TP_OK;
}

/* check_items checks a put's arguments, all before anything is allocated or sent. */
static int
check_items(int64_t expect, const char *op, size_t op_len, const tp__clog_item *items, size_t n,
            tp_error *err)
{
    if (expect < -1 || expect >= TP__CLOG_REV_MAX)
        return tp__error_set(err, TP_EARG,
                             "clog: expect: %" PRId64 " is neither -1 nor within 0 to 2^53 - 1",
                             expect);
    if (op_len > TP__CLOG_OP_MAX)
        return tp__error_set(err, TP_ETOOLARGE, "clog: op: %zu bytes, more than %u", op_len,
                             TP__CLOG_OP_MAX);
    if (op_len && !op)
        return tp__error_set(err, TP_EARG, "clog: op: NULL with a length");
    if (n > TP__CLOG_PUT_ITEMS_MAX)
        return tp__error_set(err, TP_ETOOLARGE, "clog: items: %zu in one put, more than %u", n,
                             TP__CLOG_PUT_ITEMS_MAX);
    if (n && !items)
        return tp__error_set(err, TP_EARG, "clog: items: NULL with %zu items", n);
    size_t total = op_len;
    for (size_t i = 0; i < n; i++) {
        const tp__clog_item *it = &items[i];
        if (!it->field || it->field_len == 0)
            return tp__error_set(err, TP_EARG, "clog: items[%zu].field: empty", i);
        if (it->field_len > TP__CLOG_FIELD_MAX)
            return tp__error_set(err, TP_ETOOLARGE,
                                 "clog: items[%zu].field: %zu bytes, more than %u", i,
                                 it->field_len, TP__CLOG_FIELD_MAX);
        if (it->body && it->body_len > TP__CLOG_BODY_MAX)
            return tp__error_set(err, TP_ETOOLARGE,
                                 "clog: items[%zu].body: %zu bytes, more than %u", i, it->body_len,
                                 TP__CLOG_BODY_MAX);
        /* Each term is bounded above, so the sum cannot wrap. */
        total += it->field_len + (it->body ? it->body_len : 0);
    }
    if (total > TP__CLOG_PUT_BYTES_MAX)
        return tp__error_set(err, TP_ETOOLARGE,
                             "clog: items: op, fields and bodies of %zu bytes, more than %u", total,
                             TP__CLOG_PUT_BYTES_MAX);
    return TP_OK;
}

int
tp__clog_catalog_put(tp__clog *c, int64_t expect, const char *op, size_t op_len,
                     const tp__clog_item *items, size_t n, tp__clog_catalog_cb cb, void *user,
                     tp_error *err)
{
    int rc = check_items(expect, op, op_len, items, n, err);
    if (rc < 0)
        return rc;
    if (!cb)
        return tp__error_set(err, TP_EARG, "clog: catalog_put: no callback");
    name keys[3];
    catalog_key("items", &keys[0]);
    catalog_key("v", &keys[1]);
    catalog_key("bytes", &keys[2]);
    char ex[24], bi[16], bb[16];
    snprintf(ex, sizeof ex, "%" PRId64, expect);
    snprintf(bi, sizeof bi, "%u", c->cat_items);
    snprintf(bb, sizeof bb, "%u", c->cat_bytes);
    size_t nargs = 5 + 3 * n;
    const char **args = tp__calloc(nargs, sizeof *args);
    size_t *lens = tp__calloc(nargs, sizeof *lens);
    if (!args || !lens) {
        tp__free(args);
        tp__free(lens);
        return tp__error_set(err, TP_ENOMEM, "clog: out of memory");
    }
    args[0] = ex;
    lens[0] = strlen(ex);
    args[1] = op ? op : "";
    lens[1] = op_len;
    args[2] = TP__CLOG_CATALOG_CHANNEL;
    lens[2] = strlen(TP__CLOG_CATALOG_CHANNEL);
    args[3] = bi;
    lens[3] = strlen(bi);
    args[4] = bb;
    lens[4] = strlen(bb);
    for (size_t i = 0; i < n; i++) {
        size_t j = 5 + 3 * i;
        args[j] = items[i].body ? "s" : "d";
        lens[j] = 1;
        args[j + 1] = items[i].field;
        lens[j + 1] = items[i].field_len;
        args[j + 2] = items[i].body ? items[i].body : "";
        lens[j + 2] = items[i].body ? items[i].body_len : 0;
    }
    call *k = NULL;
    if ((rc = call_new(c, OP_CATALOG_PUT, (void (*)(void))cb, user, &k, err)) == TP_OK &&
        (rc = script(k, c->cat_put, 3, keys, (int)nargs, args, lens, err)) == TP_OK)
        c->st.catalog_puts++;
    tp__free(args);
    tp__free(lens);
    return rc;
}

int
tp__clog_catalog_load(tp__clog *c, tp__clog_catalog_load_cb cb, void *user, tp_error *err)
{
    if (!cb)
        return tp__error_set(err, TP_EARG, "clog: catalog_load: no callback");
    name keys[2];
    catalog_key("items", &keys[0]);
    catalog_key("v", &keys[1]);
    call *k = NULL;
    int rc;
    if ((rc = call_new(c, OP_CATALOG_LOAD, (void (*)(void))cb, user, &k, err)) < 0)
        return rc;
    if ((rc = script(k, c->cat_load, 2, keys, 0, NULL, NULL, err)) == TP_OK)
        c->st.catalog_loads++;
    return rc;
}

int
tp__clog_catalog_version(tp__clog *c, tp__clog_catalog_cb cb, void *user, tp_error *err)
{
    if (!cb)
        return tp__error_set(err, TP_EARG, "clog: catalog_version: no callback");
    name key;
    catalog_key("v", &key);
    const char *argv[2] = {"GET", key.b};
    size_t lens[2] = {3, key.n};
    call *k = NULL;
    int rc;
    if ((rc = call_new(c, OP_CATALOG_VERSION, (void (*)(void))cb, user, &k, err)) < 0)
        return rc;
    if ((rc = sent(k, tp__redis_command(c->r, 2, argv, lens, 1, on_reply, k, err))) == TP_OK)
        c->st.reads++;
    return rc;
}

int
tp__clog_catalog_subscribe(tp__clog *c, int on, tp_error *err)
{
    size_t n = strlen(TP__CLOG_CATALOG_CHANNEL);
    return on ? tp__redis_subscribe(c->r, TP__CLOG_CATALOG_CHANNEL, n, err)
              : tp__redis_unsubscribe(c->r, TP__CLOG_CATALOG_CHANNEL, n, err);
}

int
tp__clog_catalog_decode(const char *d, size_t len, int64_t *version, const char **op,
                        size_t *op_len, tp_error *err)
{
    *version = 0;
    *op = NULL;
    *op_len = 0;
    const char *nl = d ? memchr(d, '\n', len < 17 ? len : 17) : NULL;
    if (!nl)
        return tp__error_set(err, TP_EINVALID,
                             "clog: catalog message: no '\\n' within 17 bytes after the version");
    size_t vn = (size_t)(nl - d);
    int64_t v;
    /* Canonical only (as the script writes it): no sign, no leading zero. */
    if (vn == 0 || d[0] < '1' || d[0] > '9' || parse_i64(d, vn, &v) < 0 || v >= TP__CLOG_REV_MAX)
        return tp__error_set(err, TP_EINVALID,
                             "clog: catalog message: version: not an integer within 1 to 2^53 - 1");
    size_t n = len - vn - 1;
    if (n > TP__CLOG_OP_MAX)
        return tp__error_set(err, TP_EINVALID, "clog: catalog message: op: %zu bytes, more than %u",
                             n, TP__CLOG_OP_MAX);
    *version = v;
    *op = nl + 1;
    *op_len = n;
    return TP_OK;
}

/* ---- Replies ------------------------------------------------------------------------- */

static const char *op_name[] = {"append",          "read",          "snapshot",    "outcome_put",
                                "outcomes_get",    "writer_in_log", "catalog_put", "catalog_load",
                                "catalog_version", "append_many"};

static void
deliver_append(call *k, const redisReply *r, tp_error *e)
{
    int64_t rev = 0;
    if (r->type != REDIS_REPLY_ARRAY || (r->elements != 2 && r->elements != 3) ||
        r->element[0]->type != REDIS_REPLY_INTEGER || reply_i64(r->element[1], &rev) < 0 ||
        (r->elements == 3 &&
         (r->element[0]->integer != 2 || r->element[2]->type != REDIS_REPLY_STRING))) {
        tp__error_set(e, TP_EINTERNAL, "clog: append: unexpected reply");
        ((tp__clog_append_cb)k->cb)(0, 0, NULL, 0, e, k->user);
        return;
    }
    /* 1: appended; 0: a conflict; 2: the writer's ref has an outcome already (written by
     * another append of the same write: a resend through another node), and here it is. */
    int conflict = r->element[0]->integer == 0 ? 1 : r->element[0]->integer == 2 ? 2 : 0;
    if (conflict == 1)
        k->c->st.conflicts++;
    const redisReply *was = r->elements == 3 ? r->element[2] : NULL;
    ((tp__clog_append_cb)k->cb)(conflict, rev, was ? was->str : NULL, was ? was->len : 0, NULL,
                                k->user);
}

static void
deliver_append_many(call *k, const redisReply *r, tp_error *e)
{
    int64_t rev = 0, dup = 0;
    int ok = r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
             r->element[0]->type == REDIS_REPLY_INTEGER && reply_i64(r->element[1], &rev) == 0;
    long long kind = ok ? r->element[0]->integer : -1;
    if (ok && kind == 2)
        ok = r->elements == 4 && reply_i64(r->element[2], &dup) == 0 && dup >= 0 &&
             r->element[3]->type == REDIS_REPLY_STRING;
    else if (ok)
        ok = r->elements == 2 && (kind == 0 || kind == 1);
    if (!ok) {
        tp__error_set(e, TP_EINTERNAL, "clog: append_many: unexpected reply");
        ((tp__clog_append_many_cb)k->cb)(0, 0, 0, NULL, 0, e, k->user);
        return;
    }
    int conflict = kind == 0 ? 1 : kind == 2 ? 2 : 0;
    if (conflict == 1)
        k->c->st.conflicts++;
    const redisReply *was = kind == 2 ? r->element[3] : NULL;
    ((tp__clog_append_many_cb)k->cb)(conflict, rev, (size_t)dup, was ? was->str : NULL,
                                     was ? was->len : 0, NULL, k->user);
}

static void
deliver_read(call *k, const redisReply *r, tp_error *e)
{
    tp__clog_read_result res = {0};
    tp__clog_entry *ents = NULL;
    int64_t st = -1;
    if (k->op == OP_SNAPSHOT) {
        /* HMGET rev record */
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
            goto bad;
        if (r->element[0]->type == REDIS_REPLY_NIL) {
            res.state = TP__CLOG_ABSENT;
        } else {
            if (reply_i64(r->element[0], &res.rev) < 0)
                goto bad;
            if (r->element[1]->type == REDIS_REPLY_STRING) {
                res.state = TP__CLOG_SNAPSHOT;
                res.record = r->element[1]->str;
                res.record_len = r->element[1]->len;
            } else {
                res.state = TP__CLOG_DELETED;
            }
        }
        ((tp__clog_read_cb)k->cb)(&res, NULL, k->user);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || reply_i64(r->element[0], &st) < 0 ||
        st < 0 || st > 3)
        goto bad;
    res.state = (tp__clog_state)st;
    if (st != 0 && (r->elements < 2 || reply_i64(r->element[1], &res.rev) < 0))
        goto bad;
    if (st == TP__CLOG_SNAPSHOT) {
        if (r->elements != 3 || r->element[2]->type != REDIS_REPLY_STRING)
            goto bad;
        res.record = r->element[2]->str;
        res.record_len = r->element[2]->len;
    } else if (st == TP__CLOG_ENTRIES) {
        const redisReply *a = r->elements == 3 ? r->element[2] : NULL;
        if (!a || (a->type != REDIS_REPLY_ARRAY && a->type != REDIS_REPLY_NIL))
            goto bad;
        size_t n = a->type == REDIS_REPLY_ARRAY ? a->elements : 0;
        if (n) {
            ents = tp__calloc(n, sizeof *ents);
            if (!ents) {
                tp__error_set(e, TP_ENOMEM, "clog: read: out of memory");
                ((tp__clog_read_cb)k->cb)(NULL, e, k->user);
                return;
            }
        }
        /* The log holds consecutive revs ending at the current one: check it, so that a log
         * broken by hand is an error rather than a silent gap. */
        for (size_t i = 0; i < n; i++) {
            const redisReply *el = a->element[i];
            if (el->type != REDIS_REPLY_STRING ||
                tp__clog_decode(el->str, el->len, &ents[i], e) < 0 ||
                ents[i].rev != res.rev - (int64_t)(n - 1 - i)) {
                tp__free(ents);
                tp__error_set(e, TP_EINTERNAL, "clog: read: log entry %zu of %zu is broken", i, n);
                ((tp__clog_read_cb)k->cb)(NULL, e, k->user);
                return;
            }
        }
        res.entries = ents;
        res.n = n;
    }
    ((tp__clog_read_cb)k->cb)(&res, NULL, k->user);
    tp__free(ents);
    return;
bad:
    tp__error_set(e, TP_EINTERNAL, "clog: %s: unexpected reply", op_name[k->op]);
    ((tp__clog_read_cb)k->cb)(NULL, e, k->user);
}

static int
cmp_outcome(const void *a, const void *b)
{
    int64_t x = ((const tp__clog_outcome *)a)->ref, y = ((const tp__clog_outcome *)b)->ref;
    return (x > y) - (x < y);
}

static void
deliver_outcomes(call *k, const redisReply *r, tp_error *e)
{
    tp__clog_outcomes res = {0};
    tp__clog_outcome *items = NULL;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2)
        goto bad;
    res.found = r->elements > 0;
    if (r->elements) {
        items = tp__calloc(r->elements / 2, sizeof *items);
        if (!items) {
            tp__error_set(e, TP_ENOMEM, "clog: outcomes_get: out of memory");
            ((tp__clog_outcomes_cb)k->cb)(NULL, e, k->user);
            return;
        }
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || f->len < 1)
            goto bad;
        int64_t x;
        if (f->str[0] == 'o') {
            if (parse_i64(f->str + 1, f->len - 1, &x) < 0)
                goto bad;
            items[res.n++] = (tp__clog_outcome){x, v->str, v->len};
        } else if (f->len == 7 && !memcmp(f->str, "highest", 7)) {
            if (parse_i64(v->str, v->len, &res.highest) < 0)
                goto bad;
        } else if (f->len == 9 && !memcmp(f->str, "forgotten", 9)) {
            if (parse_i64(v->str, v->len, &x) < 0 || x < 0)
                goto bad;
            res.forgotten = (uint64_t)x;
        }
    }
    if (res.n > 1)
        qsort(items, res.n, sizeof *items, cmp_outcome);
    res.items = items;
    ((tp__clog_outcomes_cb)k->cb)(&res, NULL, k->user);
    tp__free(items);
    return;
bad:
    tp__free(items);
    tp__error_set(e, TP_EINTERNAL, "clog: outcomes_get: unexpected reply");
    ((tp__clog_outcomes_cb)k->cb)(NULL, e, k->user);
}

static void
deliver_writer(call *k, const redisReply *r, tp_error *e)
{
    int64_t rev, cur, n;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || reply_i64(r->element[0], &rev) < 0 ||
        reply_i64(r->element[1], &cur) < 0 || reply_i64(r->element[2], &n) < 0) {
        tp__error_set(e, TP_EINTERNAL, "clog: writer_in_log: unexpected reply");
        ((tp__clog_writer_cb)k->cb)(0, 0, 0, e, k->user);
        return;
    }
    ((tp__clog_writer_cb)k->cb)(rev, cur, n ? cur - n + 1 : 0, NULL, k->user);
}

static void
deliver_catalog_put(call *k, const redisReply *r, tp_error *e)
{
    int64_t v = 0, st = -1, items = 0, bytes = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || reply_i64(r->element[0], &st) < 0 ||
        reply_i64(r->element[1], &v) < 0 || st < 0 || st > 2 ||
        (st == 2 && (r->elements != 4 || reply_i64(r->element[2], &items) < 0 ||
                     reply_i64(r->element[3], &bytes) < 0))) {
        tp__error_set(e, TP_EINTERNAL, "clog: catalog_put: unexpected reply");
        ((tp__clog_catalog_cb)k->cb)(0, 0, e, k->user);
        return;
    }
    if (st == 2) {
        /* The bounds of the whole catalog: what Redis holds is only known there. */
        tp__error_set(e, TP_ETOOLARGE,
                      "clog: catalog: full: the put would leave %" PRId64 " items of %" PRId64
                      " bytes, more than %u items or %u bytes",
                      items, bytes, k->c->cat_items, k->c->cat_bytes);
        ((tp__clog_catalog_cb)k->cb)(0, v, e, k->user);
        return;
    }
    if (st == 1)
        k->c->st.catalog_conflicts++;
    ((tp__clog_catalog_cb)k->cb)((int)st, v, NULL, k->user);
}

static void
deliver_catalog_load(call *k, const redisReply *r, tp_error *e)
{
    tp__clog_catalog res = {0};
    tp__clog_item *items = NULL;
    const redisReply *a = NULL;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        reply_i64(r->element[0], &res.version) < 0 || res.version < 0)
        goto bad;
    a = r->element[1];
    if (a->type != REDIS_REPLY_ARRAY || a->elements % 2)
        goto bad;
    if (a->elements) {
        items = tp__calloc(a->elements / 2, sizeof *items);
        if (!items) {
            tp__error_set(e, TP_ENOMEM, "clog: catalog_load: out of memory");
            ((tp__clog_catalog_load_cb)k->cb)(NULL, e, k->user);
            return;
        }
    }
    for (size_t i = 0; i + 1 < a->elements; i += 2) {
        const redisReply *f = a->element[i], *v = a->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            goto bad;
        /* A body of 0 bytes is still a body: never hand out NULL, which means "deleted". */
        items[res.n++] = (tp__clog_item){f->str, f->len, v->str ? v->str : "", v->len};
    }
    res.items = items;
    ((tp__clog_catalog_load_cb)k->cb)(&res, NULL, k->user);
    tp__free(items);
    return;
bad:
    tp__free(items);
    tp__error_set(e, TP_EINTERNAL, "clog: catalog_load: unexpected reply");
    ((tp__clog_catalog_load_cb)k->cb)(NULL, e, k->user);
}

static void
deliver_catalog_version(call *k, const redisReply *r, tp_error *e)
{
    int64_t v = 0;
    if (r->type == REDIS_REPLY_STRING && parse_i64(r->str, r->len, &v) == 0 && v >= 0) {
        ((tp__clog_catalog_cb)k->cb)(0, v, NULL, k->user);
        return;
    }
    if (r->type == REDIS_REPLY_NIL) {
        ((tp__clog_catalog_cb)k->cb)(0, 0, NULL, k->user);
        return;
    }
    tp__error_set(e, TP_EINTERNAL, "clog: catalog_version: unexpected reply");
    ((tp__clog_catalog_cb)k->cb)(0, 0, e, k->user);
}

/* fail calls the call's callback with an error, whatever its type. */
static void
fail(call *k, const tp_error *e)
{
    switch (k->op) {
    case OP_APPEND: ((tp__clog_append_cb)k->cb)(0, 0, NULL, 0, e, k->user); break;
    case OP_APPEND_MANY: ((tp__clog_append_many_cb)k->cb)(0, 0, 0, NULL, 0, e, k->user); break;
    case OP_READ:
    case OP_SNAPSHOT: ((tp__clog_read_cb)k->cb)(NULL, e, k->user); break;
    case OP_OUTCOME_PUT: ((tp__clog_done_cb)k->cb)(e, k->user); break;
    case OP_OUTCOMES_GET: ((tp__clog_outcomes_cb)k->cb)(NULL, e, k->user); break;
    case OP_WRITER: ((tp__clog_writer_cb)k->cb)(0, 0, 0, e, k->user); break;
    case OP_CATALOG_PUT: ((tp__clog_catalog_cb)k->cb)(0, 0, e, k->user); break;
    case OP_CATALOG_LOAD: ((tp__clog_catalog_load_cb)k->cb)(NULL, e, k->user); break;
    case OP_CATALOG_VERSION: ((tp__clog_catalog_cb)k->cb)(0, 0, e, k->user); break;
    }
}

static void
dispatch(call *k, const redisReply *reply, const tp_error *lerr)
{
    tp__clog *c = k->c;
    tp_error e = {0};
    if (lerr || reply->type == REDIS_REPLY_ERROR) {
        c->st.failed++;
        if (!lerr)
            tp__error_set(&e, TP_EINTERNAL, "clog: %s: redis: %.*s", op_name[k->op],
                          (int)(reply->len > 180 ? 180 : reply->len), reply->str);
        fail(k, lerr ? lerr : &e);
        return;
    }
    switch (k->op) {
    case OP_APPEND: deliver_append(k, reply, &e); break;
    case OP_APPEND_MANY: deliver_append_many(k, reply, &e); break;
    case OP_READ:
    case OP_SNAPSHOT: deliver_read(k, reply, &e); break;
    case OP_OUTCOME_PUT: ((tp__clog_done_cb)k->cb)(NULL, k->user); break;
    case OP_OUTCOMES_GET: deliver_outcomes(k, reply, &e); break;
    case OP_WRITER: deliver_writer(k, reply, &e); break;
    case OP_CATALOG_PUT: deliver_catalog_put(k, reply, &e); break;
    case OP_CATALOG_LOAD: deliver_catalog_load(k, reply, &e); break;
    case OP_CATALOG_VERSION: deliver_catalog_version(k, reply, &e); break;
    }
    if (e.code)
        c->st.failed++;
}

static void
on_reply(const redisReply *reply, const tp_error *lerr, void *user)
{
    call *k = user;
    tp__clog *c = k->c;
    /* The call stays counted in flight while its callback runs, so that a tp__clog_free
     * from inside it leaves the memory to the end of this function. */
    if (!c->freed)
        dispatch(k, reply, lerr);
    tp__free(k);
    if (--c->inflight == 0 && c->freed)
        tp__free(c);
}
