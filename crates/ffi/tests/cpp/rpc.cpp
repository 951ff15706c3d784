// Request/response between C++ (shmlane.hpp) and Rust: rpc server|client NAMESPACE COUNT
// As tests/c/rpc.c: the service "doubler" of u64 requests and u64 responses. As the server,
// it reports "ready" and answers COUNT requests x with 2x + 1 (a Request released by its
// destructor). As the client, it calls COUNT times with 0 .. COUNT-1, alternating `call`
// and `send` + polling `receive`, checks each response, and reports "answered COUNT".
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "shmlane.hpp"

namespace {

void report(const char* key, const std::string& value) {
    std::printf("@@shmlane %s %s\n", key, value.c_str());
    std::fflush(stdout);
}

void fail(const std::string& what) {
    std::fprintf(stderr, "rpc.cpp: %s\n", what.c_str());
    std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: rpc server|client NAMESPACE COUNT\n");
        return 2;
    }
    bool serve = std::strcmp(argv[1], "server") == 0;
    uint64_t count = std::strtoull(argv[3], nullptr, 10);
    using namespace std::chrono_literals;
    try {
        shmlane::Node node(serve ? "cpp-server" : "cpp-client", std::string(argv[2]));
        shmlane::Rpc<uint64_t, uint64_t> rpc(node, "doubler", "u64", "u64");
        if (serve) {
            auto server = rpc.server();
            report("ready", "1");
            for (uint64_t i = 0; i < count; i++) {
                auto request = server.receive(shmlane::Wait::Blocking, 10s);
                if (!request) {
                    fail("no request in 10 s");
                }
                if (request->size() != 1) {
                    fail("a request of " + std::to_string(request->size()) + " elements");
                }
                server.respond(*request, 2 * **request + 1);
            }
        } else {
            auto client = rpc.client();
            for (uint64_t x = 0; x < count; x++) {
                std::optional<shmlane::Response<uint64_t>> response;
                if (x % 2 == 0) {
                    response = client.call(x, shmlane::Wait::Blocking, 10s);
                } else {
                    auto pending = client.send(x);
                    // Polls without blocking (the test's deadline kills a hang).
                    while (!(response = client.receive(pending))) {
                    }
                }
                if (!response || **response != 2 * x + 1) {
                    fail("request " + std::to_string(x) + ": a wrong or no response");
                }
            }
            report("answered", std::to_string(count));
        }
    } catch (const shmlane::Error& error) {
        fail(std::string("error ") + error.what());
    }
    return 0;
}
