/* Request/response between C and Rust: rpc server|client NAMESPACE COUNT
 * The service "doubler" carries u64 requests and u64 responses (the Rust type u64: name
 * "u64", 8 bytes, align 8). As the server, it reports "ready" and answers COUNT requests x
 * with 2x + 1. As the client, it calls COUNT times with 0 .. COUNT-1, checks each response
 * is 2x + 1, and reports "answered COUNT". */
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: rpc server|client NAMESPACE COUNT\n");
        return 2;
    }
    int serve = strcmp(argv[1], "server") == 0;
    uint64_t count = strtoull(argv[3], NULL, 10);
    shmlane_type u64_type = {"u64", sizeof(uint64_t), SHMLANE_ALIGNOF(uint64_t), 0};
    shmlane_node *node = NULL;
    shmlane_rpc *rpc = NULL;
    CHECK_OK(shmlane_node_create(serve ? "c-server" : "c-client", argv[2], NULL, &node));
    CHECK_OK(shmlane_rpc_open_or_create(node, "doubler", &u64_type, &u64_type, NULL, &rpc));
    shmlane_type request_type, response_type;
    CHECK_OK(shmlane_rpc_types(rpc, &request_type, &response_type));
    CHECK(strcmp(request_type.name, "u64") == 0 && response_type.size == 8);

    if (serve) {
        shmlane_server *server = NULL;
        CHECK_OK(shmlane_server_create(rpc, &server));
        report("ready", "1");
        for (uint64_t i = 0; i < count; i++) {
            shmlane_sample request;
            CHECK_OK(shmlane_server_receive_wait(server, SHMLANE_WAIT_BLOCKING, TICK_TIMEOUT_NS,
                                                 &request));
            CHECK(request.len == 1 && request.bytes == 8);
            uint64_t x = *(const uint64_t *)request.data;
            uint64_t y = 2 * x + 1;
            CHECK_OK(shmlane_server_respond(server, &request, &y, sizeof y));
            CHECK_OK(shmlane_server_release(server, &request));
            CHECK_RC(shmlane_server_respond(server, &request, &y, sizeof y),
                     SHMLANE_ERROR_RELEASED);
        }
        CHECK_OK(shmlane_server_destroy(server));
    } else {
        shmlane_client *client = NULL;
        CHECK_OK(shmlane_client_create(rpc, &client));
        for (uint64_t x = 0; x < count; x++) {
            shmlane_sample response;
            if (x % 2 == 0) {
                CHECK_OK(shmlane_client_call(client, &x, sizeof x, SHMLANE_WAIT_BLOCKING,
                                             TICK_TIMEOUT_NS, &response));
            } else {
                uint64_t pending = 0;
                CHECK_OK(shmlane_client_send(client, &x, sizeof x, &pending));
                /* Polls without blocking until the response comes (the test's deadline
                 * kills a hang). */
                do {
                    CHECK_OK(shmlane_client_receive(client, pending, &response));
                } while (response.data == NULL);
                shmlane_sample again;
                CHECK_RC(shmlane_client_receive(client, pending, &again),
                         SHMLANE_ERROR_INVALID_ARGUMENT); /* answered already */
            }
            uint64_t y = *(const uint64_t *)response.data;
            if (response.len != 1 || y != 2 * x + 1) {
                fprintf(stderr, "request %llu: got %llu (%zu elements)\n", (unsigned long long)x,
                        (unsigned long long)y, response.len);
                return 1;
            }
            CHECK_OK(shmlane_client_release(client, &response));
        }
        report_u64("answered", count);
        CHECK_OK(shmlane_client_destroy(client));
    }
    CHECK_OK(shmlane_rpc_destroy(rpc));
    CHECK_OK(shmlane_node_destroy(node));
    return 0;
}
