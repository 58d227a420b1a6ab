#!/bin/sh
# `make install` to a fresh prefix, then build and run a program against the
# installed header, library and pkg-config file, as a user of the library would.
set -eu
build=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name transports.pc)")/..
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cat > "$prefix/use.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <transports.h>

int
main(void)
{
    tp_error err;
    tp_hub *hub = tp_hub_new(NULL, &err);
    tp_schema *doc = tp_schema_new("{\"title\":\"Document\",\"type\":\"object\","
                                   "\"properties\":{\"title\":{\"type\":\"string\"}}}", &err);
    if (hub == NULL || doc == NULL)
        return 1;
    const char *id = tp_session_host(tp_hub_tenant(hub, "alice"), doc, "{\"title\":\"x\"}", &err);
    char *v = id ? tp_session_get(tp_hub_tenant(hub, "alice"), id) : NULL;
    int ok = v != NULL && strcmp(v, "{\"title\":\"x\"}") == 0;
    printf("%s %s\n", tp_version(), v ? v : err.message);
    free(v);
    tp_schema_free(doc);
    tp_hub_free(hub);
    return ok ? 0 : 1;
}
C
# shellcheck disable=SC2046
cc -o "$prefix/use-shared" "$prefix/use.c" $(pkg-config --cflags --libs transports)
LD_LIBRARY_PATH="$libdir" "$prefix/use-shared"
# shellcheck disable=SC2046
cc -o "$prefix/use-static" "$prefix/use.c" $(pkg-config --cflags transports) \
    "$libdir/libtransports.a" $(pkg-config --libs jansson libpcre2-8)
"$prefix/use-static"
echo "check-install: the installed library builds and runs, shared and static"
# The demo page that an installed transportsd --demo serves (when the source
# tree it was built from is gone): the page, its scripts and the client module.
for f in index.html app.js style.css sw.js transports-client.js; do
    test -s "$prefix/share/transports/demo/$f" || {
        echo "check-install: share/transports/demo/$f is missing" >&2
        exit 1
    }
done
grep -q "export class Client" "$prefix/share/transports/demo/transports-client.js"
echo "check-install: the demo page is installed"
