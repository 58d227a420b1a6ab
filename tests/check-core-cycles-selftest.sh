#!/bin/sh
# check-core-cycles-selftest.sh SOURCE_DIR BUILD_DIR: check-core-cycles.sh must fail on a new
# cycle among the core's modules. In a copy of the build's objects of src/core it plants
#   - a call from model.c's object to hub.c's tp__hub_session (ld -r merges a planted object
#     into model.c.o): hub calls model, so model -> hub closes a new cycle;
#   - an allow list without one of today's accepted edges (journal -> outbox);
#   - a source without an object (the check refuses to pass on a build it cannot see);
# and expects check-core-cycles.sh to pass on the clean copy and to fail, naming each, on
# the planted ones.
set -eu
root=$1
build=$2
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
core=CMakeFiles/tp_core.dir/src/core

copy() { # the build's objects of src/core in $tmp/$1
    rm -rf "${tmp:?}/$1"
    mkdir -p "$tmp/$1/$core"
    cp "$build/$core"/*.c.o "$tmp/$1/$core/"
}
expect() { # output file, fixed string
    if ! grep -qF -- "$2" "$1"; then
        echo "selftest: check-core-cycles.sh did not report: $2"
        cat "$1"
        fail=1
    fi
}
refuses() { # name, check-core-cycles.sh arguments...: it must fail
    name=$1
    shift
    if sh "$here/check-core-cycles.sh" "$@" >"$tmp/$name.out" 2>&1; then
        echo "selftest: check-core-cycles.sh passed with a planted violation ($name)"
        cat "$tmp/$name.out"
        fail=1
    fi
}

# The clean copy passes: else the failures below would prove nothing.
copy clean
if ! sh "$here/check-core-cycles.sh" "$root" "$tmp/clean" >"$tmp/clean.out" 2>&1; then
    echo "selftest: check-core-cycles.sh fails on a clean copy:"
    cat "$tmp/clean.out"
    exit 1
fi

# model.c's object calls hub.c: a new cycle.
copy bad
cat >"$tmp/planted.c" <<'EOC'
void *tp__hub_session(void *hub, const char *tenant, int pin);
void *
tp__planted_cycle(void)
{
    return tp__hub_session(0, "planted", 0);
}
EOC
${CC:-cc} -c -o "$tmp/planted.o" "$tmp/planted.c"
${LD:-ld} -r -o "$tmp/model.o" "$tmp/bad/$core/model.c.o" "$tmp/planted.o"
mv "$tmp/model.o" "$tmp/bad/$core/model.c.o"
refuses bad "$root" "$tmp/bad"
expect "$tmp/bad.out" "new cycle among core modules: model calls hub (tp__hub_session)"

# An accepted edge taken off the list fails too.
grep -v '^journal outbox ' "$root/tests/core-cycles.allow" >"$tmp/short.allow"
refuses short "$root" "$tmp/clean" "$tmp/short.allow"
expect "$tmp/short.out" "new cycle among core modules: journal calls outbox"

# A source the build has no object for.
rm "$tmp/clean/$core/wire.c.o"
refuses noobj "$root" "$tmp/clean"
expect "$tmp/noobj.out" "no object in $tmp/clean/$core for: wire.c"

[ $fail -eq 0 ] && echo "check-core-cycles-selftest: every planted violation was caught"
exit $fail
