#!/bin/sh
# Each layer includes only its own headers and those of the layers above it
# (DESIGN.md, "Layers"): util is libc only, core adds jansson and PCRE2 (schema
# patterns: src/core/schema_pattern.c), store adds SQLite, net adds
# libwebsockets; auth (JWT verification) uses util, jansson and OpenSSL, and
# only net and daemon may use it; Lua (custom merges, src/daemon/luamerge.c)
# is the daemon's alone. A stray include fails this test.
set -eu
root=$1
fail=0
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
check util 'lua|lauxlib|lualib|jansson|pcre2|openssl/|sqlite3|libwebsockets|core/|store/|auth/|net/|client/|daemon/|cli/'
check core 'lua|lauxlib|lualib|openssl/|sqlite3|libwebsockets|store/|auth/|net/|client/|daemon/|cli/|sys/socket|netinet/|unistd'
check store 'lua|lauxlib|lualib|libwebsockets|auth/|net/|client/|daemon/|cli/'
check auth 'lua|lauxlib|lualib|pcre2|sqlite3|libwebsockets|core/|store/|net/|client/|daemon/|cli/'
check net 'lua|lauxlib|lualib|client/|daemon/|cli/'
check daemon 'client/|cli/'
check client 'lua|lauxlib|lualib|store/|auth/|net/|daemon/|cli/|sqlite3'
check cli 'lua|lauxlib|lualib|core/|store/|auth/|net/|client/|daemon/|util/|sqlite3|libwebsockets'
[ $fail -eq 0 ] && echo "check-layers: every layer includes only what it may"
exit $fail
