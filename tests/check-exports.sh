#!/bin/sh
# The shared library exports only tp_ symbols (jansson's check-exports).
set -eu
lib=$1
bad=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^tp_' | grep -v '^_' || true)
if [ -n "$bad" ]; then
    echo "symbols exported without the tp_ prefix:"
    echo "$bad"
    exit 1
fi
n=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -c '^tp_')
echo "check-exports: $n tp_ symbols, nothing else"
[ "$n" -gt 0 ]
