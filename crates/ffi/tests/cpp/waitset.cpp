// A C++ wait set (shmlane.hpp) over a Rust publisher and a Rust rpc client: waitset NAMESPACE
// Opens the topic "ticks" of u64 and the rpc service "doubler" (u64 to u64, both created by
// the Rust test), attaches the subscriber, the server and a 5 ms interval to one WaitSet and
// reports "ready"; then, from the waits alone, takes the tick the Rust test sends (7), answers
// its request x with 2x + 1, and sees the interval tick; detaches and reports "checks N".
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "shmlane.hpp"

namespace {

unsigned passed = 0;

void expect(bool condition, const char* what, int line) {
    if (!condition) {
        std::fprintf(stderr, "waitset.cpp:%d: check failed: %s\n", line, what);
        std::exit(1);
    }
    passed++;
}
#define EXPECT(condition) expect((condition), #condition, __LINE__)

void report(const char* key, const std::string& value) {
    std::printf("@@shmlane %s %s\n", key, value.c_str());
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: waitset NAMESPACE\n");
        return 2;
    }
    using namespace std::chrono_literals;
    using Kind = shmlane::WaitSet::Kind;
    try {
        shmlane::Node node("cpp-waitset", std::string(argv[1]));
        auto topic = shmlane::Topic<uint64_t>::open(node, "ticks", "u64");
        auto subscriber = topic.subscriber();
        shmlane::Rpc<uint64_t, uint64_t> rpc(node, "doubler", "u64", "u64");
        auto server = rpc.server();
        // Declared after its sources: destroyed (detaching them) before they are.
        shmlane::WaitSet set;
        try {
            set.wait(shmlane::Wait::BusySpin, 0ns);  // nothing attached
            EXPECT(false);
        } catch (const shmlane::Error& error) {
            EXPECT(error.code() == SHMLANE_ERROR_INVALID_ARGUMENT);
        }
        uint64_t ticks = set.attach(subscriber);
        uint64_t requests = set.attach(server, 10s);
        EXPECT(ticks != requests);
        EXPECT(set.size() == 2);
        EXPECT(set.wait(shmlane::Wait::Backoff, 1ms).empty());
        try {
            set.detach(999);
            EXPECT(false);
        } catch (const shmlane::Error& error) {
            EXPECT(error.code() == SHMLANE_ERROR_NOT_FOUND);
        }
        report("ready", "1");

        bool got_tick = false, answered = false, ticked = false;
        uint64_t interval = 0;
        for (int waits = 0; waits < 1000 && !(got_tick && answered && ticked); waits++) {
            auto ready = set.wait(shmlane::Wait::Blocking, 10s);
            EXPECT(!ready.empty());
            for (auto [id, kind] : ready) {
                if (id == ticks) {
                    EXPECT(kind == Kind::Data);
                    auto sample = subscriber.receive();
                    EXPECT(sample.has_value());
                    EXPECT(**sample == 7);
                    got_tick = true;
                    // Then an interval: attached while waiting.
                    interval = set.attach_interval(5ms);
                } else if (id == requests) {
                    EXPECT(kind == Kind::Data);
                    auto request = server.receive();
                    EXPECT(request.has_value());
                    server.respond(*request, 2 * **request + 1);
                    answered = true;
                } else {
                    EXPECT(id == interval && kind == Kind::Tick);
                    ticked = true;
                }
            }
        }
        EXPECT(got_tick && answered && ticked);
        set.detach(interval);
        EXPECT(set.size() == 2);
    } catch (const shmlane::Error& error) {
        std::fprintf(stderr, "waitset.cpp: %s\n", error.what());
        return 1;
    }
    report("checks", std::to_string(passed));
    return 0;
}
