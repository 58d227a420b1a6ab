/*
 * private_models: the guide's "Create a hub" and "Host private tenant models".
 *
 * A hub maps each connection to a tenant key. Each tenant has its own session:
 * an isolated store of private models with its own id space, so alice's model
 * "1" and bob's model "1" are two different models. A connection for alice
 * receives only Alice's private snapshots, and a private edit is echoed only
 * to alice's other connections.
 */
#include "example.h"

/*
 * The key function maps a handshake to a tenant. This one takes the route's
 * {tenant} path parameter, as the default does, but only for the tenants the
 * host knows: returning NULL refuses the connection (HTTP 403, before the
 * WebSocket upgrade).
 */
static const char *
tenant_key(const tp_request *req, void *user)
{
    const char *const *known = user;
    const char *tenant = tp_request_path_param(req, "tenant");
    for (; tenant != NULL && *known != NULL; known++) {
        if (strcmp(*known, tenant) == 0)
            return tenant;
    }
    return NULL;
}

/*
 * handshake runs the key function as the server does for GET /ws/{tenant}.
 * The server fills the request from the HTTP request; here we fill it by hand.
 */
static int
handshake(tp_hub *hub, const char *tenant)
{
    char path[64];
    snprintf(path, sizeof path, "/ws/%s", tenant);
    tp_request *req = tp_request_new(path);
    tp_request_set_path_param(req, "tenant", tenant);
    const char *key = tp_hub_key(hub, req);
    printf("handshake GET %s: %s%s\n", path, key != NULL ? "tenant " : "refused (403)",
           key != NULL ? key : "");
    tp_request_free(req);
    return key != NULL;
}

int
main(void)
{
    static const char *const known[] = {"alice", "bob", NULL};
    tp_hub_config config = {0};
    config.key = tenant_key;
    config.key_user = (void *)known;

    tp_error err;
    tp_hub *hub = tp_hub_new(&config, &err);
    tp_schema *document = tp_schema_new(DOCUMENT_SCHEMA, &err);
    if (hub == NULL || document == NULL) {
        printf("setup failed: %s\n", err.message);
        return 1;
    }

    printf("== Create a hub\n");
    check(handshake(hub, "alice"), "a tenant the key function knows is let in");
    check(!handshake(hub, "mallory"), "the key function refuses the others");

    printf("\n== Host private tenant models\n");
    /* tp_hub_tenant makes the session on first use; it lives as long as the hub. */
    tp_session *alice = tp_hub_tenant(hub, "alice");
    tp_session *bob = tp_hub_tenant(hub, "bob");
    const char *alice_notes =
        tp_session_host(alice, document, "{\"title\": \"Alice notes\"}", &err);
    const char *bob_notes = tp_session_host(bob, document, "{\"title\": \"Bob notes\"}", &err);
    printf("host: hosted alice's \"%s\" and bob's \"%s\"\n", alice_notes, bob_notes);
    check(alice_notes != NULL && bob_notes != NULL && strcmp(alice_notes, bob_notes) == 0,
          "private model ids can overlap between tenants");
    /* Defaults are filled in when a model is hosted: body is "". */
    check(show("alice's \"1\"", tp_session_get(alice, "1"), "body", ""), "defaults are filled in");
    check(show("bob's \"1\"", tp_session_get(bob, "1"), "title", "Bob notes"),
          "each tenant has an isolated store");

    printf("\nalice connects twice, bob once; each gets hello, its snapshots, synced\n");
    tp_conn *alice1 = open_client(hub, "alice");
    tp_conn *alice2 = open_client(hub, "alice");
    tp_conn *bob1 = open_client(hub, "bob");
    json_t *got = receive(alice1);
    const json_t *snapshot = find(got, "snapshot");
    check(count(got, "snapshot") == 1 &&
              is(json_object_get(snapshot, "value"), "title", "Alice notes"),
          "a connection for alice receives only Alice's private snapshots");
    json_decref(got);
    json_decref(receive(alice2));
    got = receive(bob1);
    snapshot = find(got, "snapshot");
    check(count(got, "snapshot") == 1 &&
              is(json_object_get(snapshot, "value"), "title", "Bob notes"),
          "bob receives only Bob's");
    json_decref(got);

    printf("\nalice edits her notes on c1\n");
    client_send(alice1, "{\"type\":\"write\",\"scope\":\"private\",\"id\":\"1\",\"ref\":1,"
                        "\"patch\":{\"body\":\"Buy milk\"}}");
    /* The writer gets an ack (its patch took the model from rev 1 to 2)... */
    got = receive(alice1);
    check(count(got, "ack") == 1 && count(got, "patch") == 0, "the writer gets only an ack");
    json_decref(got);
    /* ...alice's other connection gets the patch... */
    got = receive(alice2);
    check(is(find(got, "patch"), "origin", tp_conn_id(alice1)),
          "the edit is echoed to alice's other connection");
    json_decref(got);
    /* ...and bob learns nothing. */
    got = receive(bob1);
    check(json_array_size(got) == 0, "a private edit is echoed only to other Alice connections");
    json_decref(got);
    check(show("alice's \"1\"", tp_session_get(alice, "1"), "body", "Buy milk"),
          "the host sees the edit");
    check(show("bob's \"1\"", tp_session_get(bob, "1"), "body", ""), "bob's model is untouched");

    printf("\na write that breaks the schema is refused and changes nothing\n");
    client_send(alice1, "{\"type\":\"write\",\"scope\":\"private\",\"id\":\"1\",\"ref\":2,"
                        "\"patch\":{\"title\":42}}");
    got = receive(alice1);
    check(is(find(got, "error"), "code", "invalid"), "the writer gets error invalid");
    json_decref(got);
    got = receive(alice2);
    check(json_array_size(got) == 0, "nobody else hears of it");
    json_decref(got);
    check(tp_session_rev(alice, "1") == 2, "the model stays at rev 2");

    tp_conn_close(alice1);
    tp_conn_close(alice2);
    tp_conn_close(bob1);
    tp_schema_free(document);
    tp_hub_free(hub);
    return failures != 0;
}
