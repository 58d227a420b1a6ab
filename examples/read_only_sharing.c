/*
 * read_only_sharing: the guide's "Share a model read-only".
 *
 * The host shares a model once and subscribes tenants to it with READ
 * access: every subscriber gets its snapshot, nobody but the host may change
 * it. The host writes with tp_hub_set_shared; subscribers receive the patch
 * on the next sync (tp_hub_sync here, the autosync tick in a server).
 */
#include "example.h"

int
main(void)
{
    tp_error err;
    tp_hub *hub = tp_hub_new(NULL, &err); /* NULL: the tenant is the route's {tenant} */
    tp_schema *document = tp_schema_new(DOCUMENT_SCHEMA, &err);
    if (hub == NULL || document == NULL) {
        printf("setup failed: %s\n", err.message);
        return 1;
    }

    printf("== Share a model read-only\n");
    /* NULL merge: last write wins, the default. The sid is assigned: "s1". */
    const char *sid = tp_hub_share(hub, document, "{\"title\": \"Roadmap\"}", NULL, &err);
    tp_hub_subscribe(hub, "alice", sid, TP_READ);
    tp_hub_subscribe(hub, "bob", sid, TP_READ);
    printf("host: shared \"%s\", subscribed alice and bob with READ\n", sid);

    tp_conn *alice = open_client(hub, "alice");
    tp_conn *bob = open_client(hub, "bob");
    json_t *got = receive(alice);
    check(is(find(got, "snapshot"), "access", "read"), "alice gets the snapshot, read-only");
    json_decref(got);
    got = receive(bob);
    check(is(find(got, "snapshot"), "access", "read"), "so does bob");
    json_decref(got);

    printf("\nthe host writes to the shared model\n");
    tp_hub_set_shared(hub, sid, "{\"title\": \"Roadmap\", \"body\": \"Updated\"}", &err);
    check(show("the roadmap", tp_hub_get_shared(hub, sid), "body", "Updated"),
          "the host reads its own write at once");
    /* Nothing leaves before the sync: host changes coalesce until the next tick. */
    got = receive(alice);
    check(json_array_size(got) == 0, "subscribers hear nothing before the sync");
    json_decref(got);

    printf("host: sync\n");
    int published = tp_hub_sync(hub);
    check(published == 1, "the sync publishes the one pending change");
    got = receive(alice);
    json_t *seen_by_bob = receive(bob);
    const json_t *patch = find(got, "patch");
    check(is(patch, "origin", "host") && int_of(patch, "rev") == 2,
          "subscribers receive the patch on the next sync, from the host");
    check(json_equal(patch, find(seen_by_bob, "patch")), "every subscriber gets the same patch");
    json_decref(got);
    json_decref(seen_by_bob);

    printf("\nbob tries to write; READ access refuses it\n");
    client_send(bob, "{\"type\":\"write\",\"scope\":\"shared\",\"id\":\"s1\",\"ref\":1,"
                     "\"patch\":{\"body\":\"Bob was here\"}}");
    got = receive(bob);
    check(is(find(got, "error"), "code", "forbidden"), "bob gets error forbidden");
    json_decref(got);
    got = receive(alice);
    check(json_array_size(got) == 0, "alice hears nothing of it");
    json_decref(got);
    check(show("the roadmap", tp_hub_get_shared(hub, sid), "body", "Updated"),
          "a refused write changes nothing");

    tp_conn_close(alice);
    tp_conn_close(bob);
    tp_schema_free(document);
    tp_hub_free(hub);
    return failures != 0;
}
