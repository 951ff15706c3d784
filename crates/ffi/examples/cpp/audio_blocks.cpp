// audio_blocks: stereo audio blocks over shmlane from C++ (C++20, shmlane.hpp), zero copy.
//
//   ./audio_blocks consumer NAMESPACE BLOCKS   # checks BLOCKS blocks, prints a summary
//   ./audio_blocks producer NAMESPACE BLOCKS   # sends BLOCKS blocks once a consumer is there
//
// A block is 256 stereo frames of float, interleaved L R (512 samples), sent as one slice of
// the topic "audio" of f32 (the Rust type f32: name "f32", 4 bytes): the same topic a Rust
// process opens with node.topic::<f32>("audio"). Sample 0 of block n is n; sample i > 0 is
// ((n * 512 + i) % 1000) / 1000, so the consumer checks every sample it gets. The producer
// creates the topic with back-pressure (SHMLANE_OVERFLOW_BLOCK): no block is dropped.
//
// Build (from the repository root):
//   cargo build -p shmlane-ffi
//   g++ -std=c++20 -Wall -I include crates/ffi/examples/cpp/audio_blocks.cpp
//       -L target/debug -lshmlane_ffi -Wl,-rpath,"$PWD/target/debug" -o audio_blocks  (one line)
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <thread>

#include "shmlane.hpp"

namespace {

constexpr std::size_t kFrames = 256;
constexpr std::size_t kChannels = 2;
constexpr std::size_t kBlockLen = kFrames * kChannels;

/// Sample `i` of block `n`.
float sample_value(uint64_t n, std::size_t i) {
    if (i == 0) {
        return static_cast<float>(n);
    }
    return static_cast<float>((n * kBlockLen + i) % 1000) * 0.001f;
}

shmlane::TopicConfig audio_config() {
    shmlane::TopicConfig config;
    config.max_publishers = 1;
    config.max_slice_len = kBlockLen;
    config.subscriber_capacity = 16;
    config.overflow = SHMLANE_OVERFLOW_BLOCK;
    return config;
}

int consume(const shmlane::Node& node, uint64_t blocks) {
    auto topic = shmlane::Topic<float>::open_or_create(node, "audio", "f32", 0, audio_config());
    auto subscriber = topic.subscriber();
    double sum = 0.0;
    for (uint64_t n = 0; n < blocks; n++) {
        auto block = subscriber.receive(shmlane::Wait::Backoff, std::chrono::seconds(10));
        if (!block) {
            std::fprintf(stderr, "block %llu did not come within 10 s\n",
                         static_cast<unsigned long long>(n));
            return 1;
        }
        std::span<const float> samples = block->span();  // in shared memory, no copy
        if (samples.size() != kBlockLen) {
            std::fprintf(stderr, "block %llu has %zu samples\n", static_cast<unsigned long long>(n),
                         samples.size());
            return 1;
        }
        for (std::size_t i = 0; i < samples.size(); i++) {
            if (samples[i] != sample_value(n, i)) {
                std::fprintf(stderr, "block %llu sample %zu: got %f, expected %f\n",
                             static_cast<unsigned long long>(n), i, samples[i], sample_value(n, i));
                return 1;
            }
            sum += samples[i];
        }
    }  // each block is released at the end of its iteration
    std::printf("consumed %llu blocks, %llu dropped, sum %.3f\n",
                static_cast<unsigned long long>(blocks),
                static_cast<unsigned long long>(subscriber.drops()), sum);
    return 0;
}

int produce(const shmlane::Node& node, uint64_t blocks) {
    auto topic = shmlane::Topic<float>::open_or_create(node, "audio", "f32", 0, audio_config());
    auto publisher = topic.publisher();
    publisher.set_block_timeout(std::chrono::seconds(10));
    for (int tries = 0; publisher.subscribers() == 0 && tries < 1000; tries++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (uint64_t n = 0; n < blocks; n++) {
        auto loan = publisher.loan(kBlockLen);  // room in shared memory
        std::span<float> samples = loan.span();
        for (std::size_t i = 0; i < samples.size(); i++) {
            samples[i] = sample_value(n, i);
        }
        publisher.send(std::move(loan));
    }
    std::printf("sent %llu blocks\n", static_cast<unsigned long long>(blocks));
    std::fflush(stdout);
    // The blocks live in this publisher's shared memory: stay until the consumer leaves.
    for (int tries = 0; publisher.subscribers() > 0 && tries < 1000; tries++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: audio_blocks consumer|producer NAMESPACE BLOCKS\n");
        return 2;
    }
    std::string role = argv[1];
    uint64_t blocks = std::strtoull(argv[3], nullptr, 10);
    try {
        shmlane::Node node(role == "producer" ? "cpp-producer" : "cpp-consumer", std::string(argv[2]));
        return role == "producer" ? produce(node, blocks) : consume(node, blocks);
    } catch (const shmlane::Error& error) {
        std::fprintf(stderr, "shmlane: %s\n", error.what());
        return 1;
    }
}
