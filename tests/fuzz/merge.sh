#!/bin/sh
# Merges what a fuzzer found into its committed corpus, keeping the corpus
# small (README.md, "Growing the corpora"):
#
#   tests/fuzz/merge.sh fuzz_conn build-fuzz/corpus/fuzz_conn [more directories]
#
# Run from the top of the tree after `make fuzz` (it uses build-fuzz/). The
# seeds (seed-*) and fixed reproducers (regress-*) always stay; then come the
# inputs that reach new edges, whole, and the inputs that reach edges a new
# number of times, cut to a few KiB (fuzz_conn 2500 bytes, fuzz_schema 600,
# fuzz_client 1000).
set -eu
if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET DIRECTORY..." >&2
    exit 2
fi
target=$1
shift
bin=build-fuzz/tests/fuzz/$target
corpus=tests/fuzz/corpus/$target
case $target in
fuzz_conn) cut=2500 ;;
fuzz_schema) cut=600 ;;
fuzz_client) cut=1000 ;;
*) cut=4096 ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/all" "$tmp/out"
"$bin" -merge=1 "$tmp/all" "$corpus" "$@"
for f in "$corpus"/seed-* "$corpus"/regress-*; do
    [ -f "$f" ] && cp "$f" "$tmp/out/"
done
"$bin" -merge=1 -use_counters=0 "$tmp/out" "$tmp/all"
"$bin" -merge=1 -max_len=$cut "$tmp/out" "$tmp/all"
rm -f "$corpus"/*
cp "$tmp/out"/* "$corpus/"
echo "$target: $(ls "$corpus" | wc -l) files, $(cat "$corpus"/* | wc -c) bytes"
