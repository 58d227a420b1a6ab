#!/bin/sh
# check-core-cycles.sh SOURCE_DIR BUILD_DIR [ALLOW_FILE] [-v]: the core's modules may call
# each other in a circle only where tests/core-cycles.allow says so.
#
# The call graph comes from the build's objects (nm): module A calls module B when A's
# object leaves undefined a function (or datum) that B's object defines. A module is a
# file of src/core (schema.c, schema_check.c, schema_format.c and schema_pattern.c are one
# module, "schema": they share schema_int.h and are one piece). An edge A -> B lies on a
# cycle when B reaches A back through the graph. Every such edge must be listed in the
# allow file ("A B reason", one a line): a cycle made only of listed edges existed when
# they were listed, so any new cycle brings an edge that is not listed, and fails here.
# A listed edge that no longer lies on a cycle is reported (remove it), not failed: the
# sanitizer build (no optimization) may keep a call the optimized build drops.
#
# -v prints the whole graph, the edges on cycles and the strongly connected components.
#
# tests/check-core-cycles-selftest.sh plants a new cycle in a copy of the objects and
# expects this script to fail on it.
set -eu
root=$1
build=$2
allow=${3:-$root/tests/core-cycles.allow}
verbose=${4:-}
dir=$build/CMakeFiles/tp_core.dir/src/core

objs=""
missing=""
for s in "$root"/src/core/*.c; do
    o="$dir/$(basename "$s").o"
    if [ -f "$o" ]; then objs="$objs $o"; else missing="$missing $(basename "$s")"; fi
done
if [ -n "$missing" ]; then
    echo "check-core-cycles: no object in $dir for:$missing (build first)"
    exit 1
fi

# shellcheck disable=SC2086
nm -A -P -g $objs | awk -v allowfile="$allow" -v verbose="$verbose" '
function mod_of(p) { sub(/:$/, "", p); sub(/.*\//, "", p); sub(/\.c\.o$/, "", p); sub(/^schema_.*/, "schema", p); return p }
BEGIN {
    while ((getline line < allowfile) > 0) {
        if (line ~ /^[[:space:]]*(#|$)/) continue
        split(line, f, /[[:space:]]+/)
        allowed[f[1], f[2]] = 1
        allowline[f[1], f[2]] = line
    }
}
{
    m = mod_of($1); sym = $2; type = $3
    mods[m] = 1
    if (type == "U") { nu++; um[nu] = m; us[nu] = sym }
    else if (type ~ /^[A-Z]$/ && !(sym in def)) def[sym] = m
}
END {
    for (i = 1; i <= nu; i++) {
        if (!(us[i] in def)) continue
        a = um[i]; b = def[us[i]]
        if (a == b) continue
        if (!((a, b) in edge)) { edge[a, b] = us[i]; reach[a, b] = 1 }
        else if (index(" " edge[a, b] " ", " " us[i] " ") == 0) edge[a, b] = edge[a, b] " " us[i]
    }
    n = 0
    for (m in mods) node[++n] = m
    # Transitive closure (Warshall): a few dozen modules.
    for (k = 1; k <= n; k++)
        for (i = 1; i <= n; i++) {
            if (!((node[i], node[k]) in reach)) continue
            for (j = 1; j <= n; j++)
                if ((node[k], node[j]) in reach) reach[node[i], node[j]] = 1
        }
    fail = 0
    for (e in edge) {
        split(e, ab, SUBSEP); a = ab[1]; b = ab[2]
        if (verbose != "") printf "edge %s -> %s: %s\n", a, b, edge[e]
        if (!((b, a) in reach)) continue
        oncycle[a, b] = 1
        if (verbose != "") printf "cycle-edge %s -> %s%s\n", a, b, (a, b) in allowed ? "" : " (NOT ALLOWED)"
        if (!((a, b) in allowed)) {
            printf "new cycle among core modules: %s calls %s (%s), and %s reaches %s back: break it, or list \"%s %s <reason>\" in %s\n", a, b, edge[e], b, a, a, b, allowfile
            fail = 1
        }
    }
    for (e in allowed)
        if (!(e in oncycle)) {
            split(e, ab, SUBSEP)
            printf "check-core-cycles: note: %s -> %s is listed but lies on no cycle now: remove it from %s\n", ab[1], ab[2], allowfile
        }
    if (verbose != "") {
        for (i = 1; i <= n; i++) {
            if (node[i] in done) continue
            comp = node[i]; size = 1; done[node[i]] = 1
            for (j = 1; j <= n; j++)
                if (j != i && !(node[j] in done) && (node[i], node[j]) in reach && (node[j], node[i]) in reach) {
                    comp = comp " " node[j]; size++; done[node[j]] = 1
                }
            if (size > 1) printf "scc (%d): %s\n", size, comp
        }
    }
    if (!fail) print "check-core-cycles: no cycle among core modules beyond the accepted ones"
    exit fail
}'
