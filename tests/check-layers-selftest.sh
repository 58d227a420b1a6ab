#!/bin/sh
# check-layers-selftest.sh SOURCE_DIR BUILD_DIR: check-layers.sh must fail on each kind of
# violation it is there for. In a copy of src/ and include/ (and of the build's objects of
# src/), it plants
#   - a header of the core that includes the store's by a relative path, included by a
#     core file: only the compiler's dependency list sees it (check 2);
#   - core/hubapi.h including core/hub.h, so that net reaches the hub's structs through it,
#     and a struct of the hub defined in core/hubapi.h itself (check 3);
#   - a net file that reaches the cluster layer's header (and so hiredis) through a header
#     whose #include names it by a macro, past the direct grep (check 2);
#   - an object of the core that calls a function of the store, and one of the cluster
#     layer (check 4);
#   - a source without an object (check 4 refuses to pass on a build it cannot see);
# and expects check-layers.sh to pass on the clean copy and to fail, naming each, on the
# planted ones.
set -eu
root=$1
build=$2
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

copy() { # a fresh copy of the sources in $tmp/$1, the build's objects in $tmp/build
    rm -rf "${tmp:?}/$1"
    mkdir -p "$tmp/$1"
    cp -R "$root/src" "$root/include" "$tmp/$1/"
}
mkdir -p "$tmp/build"
(cd "$build" && find . -name '*.c.o' -path '*/src/*' -exec cp --parents {} "$tmp/build/" \;)

expect() { # output file, fixed string
    if ! grep -qF -- "$2" "$1"; then
        echo "selftest: check-layers.sh did not report: $2"
        fail=1
    fi
}

# The clean copy passes: else the failures below would prove nothing.
copy clean
if ! sh "$here/check-layers.sh" "$tmp/clean" "$tmp/build" >"$tmp/clean.out" 2>&1; then
    echo "selftest: check-layers.sh fails on a clean copy:"
    cat "$tmp/clean.out"
    exit 1
fi

# Planted violations, each reported by its own check.
copy bad
s=$tmp/bad/src
printf '#include "../store/store.h" /* planted */\n' >"$s/core/planted.h"
printf '#include "core/planted.h"\n' | cat - "$s/core/hubapi.c" >"$tmp/x" && mv "$tmp/x" "$s/core/hubapi.c"
printf '#include "core/hub.h" /* planted */\nstruct tp__model {\n    int planted;\n};\n' \
    >>"$s/core/hubapi.h"
printf '#define TP_PLANTED_CLUSTER "cluster/redis.h"\n#include TP_PLANTED_CLUSTER\n' \
    >"$s/net/planted_cluster.h"
printf '#include "net/planted_cluster.h"\n' | cat - "$s/net/http.c" >"$tmp/x" && mv "$tmp/x" "$s/net/http.c"
cat >"$s/core/planted_call.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
struct tp_store;
void tp_store_free(struct tp_store *s);
uint16_t tp__redis_keyslot(const char *key, size_t len);
void tp__planted_call(void);
void
tp__planted_call(void)
{
    tp_store_free(0);
    (void)tp__redis_keyslot("k", 1);
}
EOF
obj="$tmp/build/CMakeFiles/tp_core.dir/src/core/planted_call.c.o"
mkdir -p "$(dirname "$obj")"
${CC:-cc} -c -o "$obj" "$s/core/planted_call.c"
if sh "$here/check-layers.sh" "$tmp/bad" "$tmp/build" >"$tmp/bad.out" 2>&1; then
    echo "selftest: check-layers.sh passed with planted violations"
    fail=1
fi
expect "$tmp/bad.out" "layer core reaches layer store: src/core/hubapi.c includes src/store/store.h"
expect "$tmp/bad.out" "net sees hub internals: src/net/server.c reaches src/core/hub.h"
expect "$tmp/bad.out" "net sees hub internals: src/core/hubapi.h (which net reaches) defines a struct of the hub"
expect "$tmp/bad.out" "layer core calls layer store: src/core/planted_call.c uses tp_store_free"
expect "$tmp/bad.out" "layer net reaches layer cluster: src/net/http.c includes src/cluster/redis.h"
expect "$tmp/bad.out" "layer net reaches hiredis: src/net/http.c includes"
expect "$tmp/bad.out" "layer core calls layer cluster: src/core/planted_call.c uses tp__redis_keyslot"
# The direct grep alone saw none of them.
if grep -q "includes what it may not" "$tmp/bad.out"; then
    echo "selftest: the planted includes were meant to get past the direct grep"
    fail=1
fi
rm -f "$obj"

# A source the build has no object for: the call check cannot pass on it.
copy noobj
printf 'int tp__planted_noobj;\n' >"$tmp/noobj/src/util/planted_noobj.c"
if sh "$here/check-layers.sh" "$tmp/noobj" "$tmp/build" >"$tmp/noobj.out" 2>&1; then
    echo "selftest: check-layers.sh passed without the object of a source"
    fail=1
fi
expect "$tmp/noobj.out" "no object in $tmp/build for: src/util/planted_noobj.c"

if [ $fail -ne 0 ]; then
    echo "--- check-layers.sh on the planted copy ---"
    cat "$tmp/bad.out"
    exit 1
fi
echo "check-layers selftest: every planted violation was caught"
