#!/bin/sh
# check-layers.sh SOURCE_DIR [BUILD_DIR]: each layer depends only on itself and the layers
# above it (DESIGN.md, "Layers"): util is libc only, core adds jansson and PCRE2 (schema
# patterns: src/core/schema_pattern.c), store adds SQLite, net adds libwebsockets; auth
# (JWT verification) uses util, jansson and OpenSSL, and only net and daemon may use it;
# client uses util and core; cli uses the public API only; Lua (custom merges,
# src/daemon/luamerge.c) is the daemon's alone; cluster (the Redis link, issue 18) uses util,
# the public header, libuv, hiredis and OpenSSL (SHA-1 of scripts), only the daemon may use
# it, and hiredis is cluster's alone. Four checks, any failure fails:
#
# 1. direct includes: a grep of each file's #include lines (system headers too: the core
#    may not include sockets or unistd);
# 2. transitive includes: the compiler's own dependency list (cc -M) of every .c file,
#    so a header reached through another header, a relative path ("../store/store.h") or
#    a macro counts: every project header must belong to an allowed layer, and no library
#    a layer may not use may be reached;
# 3. net sees no hub internals: net's files reach the core only through core/hubapi.h,
#    core/route.h, core/hostops.h, core/journal.h and core/json.h, and none of those defines
#    a struct of the hub (tp_hub, tp_session, tp_conn, tp__model, ...): net calls
#    functions, it reads no field;
# 4. calls (with BUILD_DIR): nm on the build's objects of src/<layer>/*.c: every undefined
#    symbol of a layer's object that another layer's object defines must come from an
#    allowed layer (cli: the public tp_ API of any layer). Every source needs its object:
#    build first.
#
# tests/check-layers-selftest.sh plants a violation of each kind in a copy and expects
# this script to fail on it.
set -eu
root=$1
build=${2:-}
fail=0

# ---- 1. direct includes ---------------------------------------------------------------
check() { # layer, forbidden regexp
    dir="$root/src/$1"
    [ -d "$dir" ] || return 0
    hits=$(grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]($2)" "$dir"/*.[ch] || true)
    if [ -n "$hits" ]; then
        echo "layer $1 includes what it may not:"
        echo "$hits"
        fail=1
    fi
}
check util 'lua|lauxlib|lualib|jansson|pcre2|openssl/|sqlite3|libwebsockets|hiredis|core/|store/|auth/|net/|cluster/|client/|daemon/|cli/'
check core 'lua|lauxlib|lualib|openssl/|sqlite3|libwebsockets|hiredis|store/|auth/|net/|cluster/|client/|daemon/|cli/|sys/socket|netinet/|unistd'
check store 'lua|lauxlib|lualib|libwebsockets|hiredis|auth/|net/|cluster/|client/|daemon/|cli/'
check auth 'lua|lauxlib|lualib|pcre2|sqlite3|libwebsockets|hiredis|core/|store/|net/|cluster/|client/|daemon/|cli/'
check net 'lua|lauxlib|lualib|hiredis|cluster/|client/|daemon/|cli/'
check cluster 'lua|lauxlib|lualib|jansson|pcre2|sqlite3|libwebsockets|curl/|core/|store/|auth/|net/|client/|daemon/|cli/'
check daemon 'client/|cli/'
check client 'lua|lauxlib|lualib|hiredis|store/|auth/|net/|cluster/|daemon/|cli/|sqlite3'
check cli 'lua|lauxlib|lualib|hiredis|core/|store/|auth/|net/|cluster/|client/|daemon/|util/|sqlite3|libwebsockets'

# What each layer may depend on (its own layer included), and the libraries it may not
# reach even through another header. jansson is everyone's: the public header has it.
ALLOWED='util:util core:util,core store:util,core,store auth:util,auth
net:util,core,store,auth,net cluster:util,cluster daemon:util,core,store,auth,net,cluster,daemon
client:util,core,client cli:cli'
NO_LIBS='util:pcre2,openssl,sqlite3,libwebsockets,uv,curl,lua,hiredis core:openssl,sqlite3,libwebsockets,uv,curl,lua,hiredis
store:libwebsockets,uv,curl,openssl,lua,hiredis auth:pcre2,sqlite3,libwebsockets,uv,curl,lua,hiredis net:lua,hiredis
cluster:pcre2,sqlite3,libwebsockets,curl,lua
client:sqlite3,curl,pcre2,lua,hiredis cli:sqlite3,libwebsockets,uv,curl,pcre2,openssl,lua,hiredis'
# The core headers net may reach (check 3).
NET_CORE='hubapi.h route.h hostops.h journal.h json.h commit.h'

# ---- 2 and 3. transitive includes ------------------------------------------------------
sources=$(ls "$root"/src/*/*.c)
cflags=$(pkg-config --cflags jansson libwebsockets sqlite3 libpcre2-8 libuv libcurl libssl lua5.4 hiredis \
    2>/dev/null || true)
deps=$(mktemp)
trap 'rm -f "$deps"' EXIT
# -M lists every header the preprocessor opened; -MG goes on past a header it cannot
# find (listed as written), so a missing library never hides the rest.
# shellcheck disable=SC2086
if ! ${CC:-cc} -M -MG -std=c11 -D_DEFAULT_SOURCE -DTP_BUILDING -I"$root/include" -I"$root/src" \
    $cflags $sources >"$deps" 2>"$deps.err"; then
    echo "check-layers: cc -M failed:"
    cat "$deps.err"
    rm -f "$deps.err"
    exit 1
fi
rm -f "$deps.err"
out=$(awk -v root="$root" -v allowed="$ALLOWED" -v nolibs="$NO_LIBS" -v netcore="$NET_CORE" '
# "src/core/../store/x.h" is store'"'"'s: the compiler lists paths as it joined them.
function norm(p) {
    while (sub(/\/\.\//, "/", p)) ;
    while (sub(/\/[^\/.][^\/]*\/\.\.\//, "/", p)) ;
    return p
}
function layer_of(p,    r) {
    p = norm(p)
    r = root "/src/"
    if (index(p, r) == 1) { p = substr(p, length(r) + 1); sub(/\/.*/, "", p); return p }
    if (index(p, root "/include/") == 1) return "public"
    # -MG: a project header that is not there, as written ("core/x.h")
    if (p ~ /^(util|core|store|auth|net|cluster|daemon|client|cli)\//) { sub(/\/.*/, "", p); return p }
    return ""
}
function lib_of(p) {
    if (p ~ /(^|\/)jansson[^\/]*\.h$/) return "jansson"
    if (p ~ /(^|\/)pcre2\.h$/) return "pcre2"
    if (p ~ /(^|\/)openssl\//) return "openssl"
    if (p ~ /(^|\/)sqlite3[^\/]*\.h$/) return "sqlite3"
    if (p ~ /(^|\/)libwebsockets(\.h$|\/)/) return "libwebsockets"
    if (p ~ /(^|\/)uv(\.h$|\/)/) return "uv"
    if (p ~ /(^|\/)curl\//) return "curl"
    if (p ~ /(^|\/)(lua|lauxlib|lualib|luaconf)\.h$/) return "lua"
    if (p ~ /(^|\/)hiredis\//) return "hiredis"
    return ""
}
function rel(p) { sub("^" root "/", "", p); return p }
BEGIN {
    n = split(allowed, a, /[ \n]+/)
    for (i = 1; i <= n; i++) { split(a[i], kv, ":"); m = split(kv[2], l, ","); for (j = 1; j <= m; j++) ok[kv[1], l[j]] = 1 }
    n = split(nolibs, a, /[ \n]+/)
    for (i = 1; i <= n; i++) { split(a[i], kv, ":"); m = split(kv[2], l, ","); for (j = 1; j <= m; j++) nolib[kv[1], l[j]] = 1 }
    n = split(netcore, a, " ")
    for (i = 1; i <= n; i++) netok[root "/src/core/" a[i]] = 1
}
# Make rules, continued with backslashes: one rule per source.
{ line = line $0; if (line ~ /\\$/) { sub(/\\$/, " ", line); next } }
{
    n = split(line, f, /[ \t]+/); line = ""
    src = ""
    for (i = 1; i <= n; i++) {
        if (f[i] == "" || f[i] ~ /:$/) continue
        if (src == "") { src = f[i]; L = layer_of(src); continue }
        dep = norm(f[i])
        D = layer_of(dep)
        if (D != "" && D != "public" && !ok[L, D] && !seen[src, dep]++)
            printf "layer %s reaches layer %s: %s includes %s (directly or through another header)\n", L, D, rel(src), rel(dep)
        lib = lib_of(dep)
        if (lib != "" && nolib[L, lib] && !seen[src, lib]++)
            printf "layer %s reaches %s: %s includes %s (directly or through another header)\n", L, lib, rel(src), dep
        if (L == "net" && D == "core" && !netok[dep] && !seen[src, dep]++)
            printf "net sees hub internals: %s reaches %s; net may see the core only through core/hubapi.h, route.h, hostops.h, journal.h and json.h (functions, no struct of the hub): add a function to core/hubapi.h\n", rel(src), rel(dep)
        if (L == "net" && D == "core") netreach[dep] = 1
    }
}
END { for (h in netreach) print "NETREACH " h }
' "$deps")
reached=$(echo "$out" | sed -n 's/^NETREACH //p')
viol=$(echo "$out" | grep -v '^NETREACH ' || true)
if [ -n "$viol" ]; then
    echo "$viol"
    fail=1
fi
# The headers net reaches hold no struct of the hub's.
for h in $reached; do
    hits=$(grep -nE 'struct[[:space:]]+(tp_hub|tp_session|tp_conn|tp__model|tp__sub|tp__client|tp__hist)[[:space:]]*\{' "$h" || true)
    if [ -n "$hits" ]; then
        echo "net sees hub internals: ${h#"$root"/} (which net reaches) defines a struct of the hub:"
        echo "$hits"
        fail=1
    fi
done

# ---- 4. calls across layers ------------------------------------------------------------
if [ -n "$build" ]; then
    objs=$(mktemp)
    trap 'rm -f "$deps" "$objs"' EXIT
    # The objects of src/<layer>/<file>.c, wherever the build put them.
    find "$build" -name '*.c.o' -path '*/src/*' | grep -E '/src/[a-z]+/[^/]+\.c\.o$' >"$objs" || true
    missing=""
    for s in $sources; do
        r=${s#"$root"/}
        grep -q "/$r\.o\$" "$objs" || missing="$missing $r"
    done
    if [ -n "$missing" ]; then
        echo "check-layers: no object in $build for:$missing (build first)"
        fail=1
    elif [ -s "$objs" ]; then
        # shellcheck disable=SC2046
        viol=$(nm -A -P -g $(cat "$objs") 2>/dev/null | awk -v root="$root" -v allowed="$ALLOWED" '
function layer_of(p) { if (match(p, /\/src\/[a-z]+\/[^\/]+\.c\.o$/)) { p = substr(p, RSTART + 5); sub(/\/.*/, "", p); return p } return "" }
function src_of(p) { match(p, /\/src\/[a-z]+\/[^\/]+\.c\.o$/); p = substr(p, RSTART + 1); sub(/\.o$/, "", p); return p }
BEGIN {
    n = split(allowed, a, /[ \n]+/)
    for (i = 1; i <= n; i++) { split(a[i], kv, ":"); m = split(kv[2], l, ","); for (j = 1; j <= m; j++) ok[kv[1], l[j]] = 1 }
}
{
    file = $1; sub(/:$/, "", file)
    # A source file removed since: its stale object says nothing of the code.
    s = src_of(file)
    if (!(s in exists)) exists[s] = (system("test -f \"" root "/" s "\"") == 0)
    if (!exists[s]) next
    L = layer_of(file); sym = $2; type = $3
    if (sym == "main" || L == "") next
    if (type == "U") { nu++; usel[nu] = L; uses[nu] = sym; usrc[nu] = s }
    else if (type ~ /^[A-Z]$/ && !(sym in def)) def[sym] = L
}
END {
    for (i = 1; i <= nu; i++) {
        sym = uses[i]; L = usel[i]
        if (!(sym in def)) continue
        D = def[sym]
        if (D == L || ok[L, D]) continue
        # cli uses the public API: tp_ symbols, not the internal tp__ ones.
        if (L == "cli" && sym ~ /^tp_/ && sym !~ /^tp__/) continue
        if (!seen[usrc[i], sym]++)
            printf "layer %s calls layer %s: %s uses %s\n", L, D, usrc[i], sym
    }
}')
        if [ -n "$viol" ]; then
            echo "$viol"
            fail=1
        fi
    fi
fi

[ $fail -eq 0 ] && echo "check-layers: every layer includes and calls only what it may"
exit $fail
