// shmlane.hpp in one process: checks NAMESPACE
// RAII (a sample released by its destructor, a loan given back when dropped unsent), spans,
// errors as exceptions with their codes, timeouts as empty optionals, events. Prints
// "cpp checks passed N" and exits 0, or says what failed and exits 1.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "shmlane.hpp"

namespace {

struct Pair {
    uint32_t left;
    uint32_t right;
};

unsigned passed = 0;

void expect(bool condition, const char* what, int line) {
    if (!condition) {
        std::fprintf(stderr, "checks.cpp:%d: check failed: %s\n", line, what);
        std::exit(1);
    }
    passed++;
}
#define EXPECT(condition) expect((condition), #condition, __LINE__)

/// Runs `body`, expecting a shmlane::Error with `code`.
template <class Body>
void expect_error(Body body, shmlane_error code, int line) {
    try {
        body();
    } catch (const shmlane::Error& error) {
        expect(error.code() == code, error.what(), line);
        return;
    }
    expect(false, "an exception", line);
}
#define EXPECT_ERROR(body, code) expect_error([&] { body; }, code, __LINE__)

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: checks NAMESPACE\n");
        return 2;
    }
    try {
        shmlane::Node node("cpp-checks", std::string(argv[1]));
        shmlane::TopicConfig config;
        config.max_loans = 1;
        config.max_held = 1;
        config.max_slice_len = 4;
        auto topic = shmlane::Topic<Pair>::create(node, "pairs", "checks::Pair", 0, config);
        auto publisher = topic.publisher();
        auto subscriber = topic.subscriber();
        EXPECT(publisher.subscribers() == 1);

        // Wrong type, existing topic, bad name: exceptions with their codes.
        EXPECT_ERROR(shmlane::Topic<uint64_t>::open(node, "pairs", "checks::Pair"),
                     SHMLANE_ERROR_TYPE_MISMATCH);
        EXPECT_ERROR(shmlane::Topic<Pair>::create(node, "pairs", "checks::Pair"),
                     SHMLANE_ERROR_ALREADY_EXISTS);
        EXPECT_ERROR(shmlane::Node("not a name"), SHMLANE_ERROR_INVALID_NAME);

        // A loan dropped unsent goes back: max_loans is 1, and a second loan succeeds.
        { auto unsent = publisher.loan(); }
        {
            auto loan = publisher.loan(3);
            EXPECT(loan.size() == 3 && loan.span().size() == 3);
            EXPECT_ERROR(publisher.loan(), SHMLANE_ERROR_OUT_OF_BLOCKS);
            std::uint32_t n = 0;
            for (Pair& pair : loan.span()) {
                pair = Pair{n, n * 10};
                n++;
            }
            EXPECT(publisher.send(std::move(loan)) == 1);
        }
        EXPECT(publisher.send_copy(Pair{7, 70}) == 1);

        // Samples read in place, released by their destructors: max_held is 1.
        {
            auto sample = subscriber.receive();
            EXPECT(sample.has_value() && sample->size() == 3);
            EXPECT(sample->span()[2].left == 2 && sample->span()[2].right == 20);
            EXPECT_ERROR(subscriber.receive(), SHMLANE_ERROR_TOO_MANY_HELD);
        }
        {
            auto sample = subscriber.receive(shmlane::Wait::BusySpin, std::chrono::seconds(5));
            EXPECT(sample.has_value() && (*sample)->left == 7 && sample->size() == 1);
        }
        EXPECT(!subscriber.receive().has_value());
        EXPECT(!subscriber.receive(shmlane::Wait::Backoff, std::chrono::milliseconds(1)).has_value());
        EXPECT(subscriber.drops() == 0);

        // Events.
        shmlane::Event event(node, "checks-events", 16);
        auto listener = event.listener();
        auto notifier = event.notifier();
        EXPECT(notifier.notify(3) == 1);
        EXPECT(notifier.notify(12) == 1);
        auto ids = listener.wait(shmlane::Wait::Blocking, std::chrono::seconds(5));
        EXPECT(ids.size() == 2 && ids[0] == 3 && ids[1] == 12);
        EXPECT(listener.wait(shmlane::Wait::Blocking, std::chrono::milliseconds(1)).empty());
        EXPECT_ERROR(notifier.notify(16), SHMLANE_ERROR_BAD_EVENT_ID);
    } catch (const shmlane::Error& error) {
        std::fprintf(stderr, "unexpected: %s\n", error.what());
        return 1;
    }
    std::printf("cpp checks passed %u\n", passed);
    return 0;
}
