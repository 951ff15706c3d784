/* The C initiator of benches/c_latency.rs: pub/sub ping-pong through the C ABI with a Rust
 * echo process, round by round on the bench's signal.
 *
 *   pingpong NAMESPACE CPU ROUND_SIZE
 *
 * Pins itself to CPU, opens topics "ping-c" (publishes) and "pong-c" (subscribes) of u64,
 * then for each byte read on stdin does ROUND_SIZE round trips (loan, write the sequence
 * number in place, send; busy receive until the answer, release) and writes the round trip
 * times (ns, CLOCK_MONOTONIC, as native u64) to stdout. Exits 0 at the end of stdin. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "shmlane.h"

static void check(enum shmlane_error error, const char *what) {
    if (error != SHMLANE_OK) {
        fprintf(stderr, "pingpong: %s: %s\n", what, shmlane_last_error_message());
        exit(1);
    }
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: pingpong NAMESPACE CPU ROUND_SIZE\n");
        return 2;
    }
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(atoi(argv[2]), &cpus);
    if (sched_setaffinity(0, sizeof cpus, &cpus) != 0) {
        perror("pingpong: sched_setaffinity");
        return 1;
    }
    size_t round_size = (size_t)strtoull(argv[3], NULL, 10);
    uint64_t *rtts = calloc(round_size, sizeof *rtts);
    if (rtts == NULL) {
        return 1;
    }
    struct shmlane_node *node;
    struct shmlane_topic *ping, *pong;
    struct shmlane_publisher *publisher;
    struct shmlane_subscriber *subscriber;
    shmlane_type word = {"u64", 8, 8, 0};
    check(shmlane_node_create("c-initiator", argv[1], NULL, &node), "node");
    check(shmlane_topic_open(node, "ping-c", &word, NULL, &ping), "ping topic");
    check(shmlane_topic_open(node, "pong-c", &word, NULL, &pong), "pong topic");
    check(shmlane_publisher_create(ping, &publisher), "publisher");
    check(shmlane_subscriber_create(pong, &subscriber), "subscriber");
    /* Ready: the bench starts the first round once both ends are in place. */
    fputc('r', stdout);
    fflush(stdout);

    uint64_t seq = 0;
    while (fgetc(stdin) != EOF) {
        for (size_t i = 0; i < round_size; i++) {
            seq++;
            uint64_t start = now_ns();
            shmlane_loan loan;
            check(shmlane_publisher_loan(publisher, 1, &loan), "loan");
            *(uint64_t *)loan.data = seq;
            check(shmlane_publisher_send(publisher, &loan, NULL), "send");
            shmlane_sample sample;
            for (;;) {
                check(shmlane_subscriber_receive(subscriber, &sample), "receive");
                if (sample.data != NULL) {
                    break;
                }
            }
            uint64_t answer = *(const uint64_t *)sample.data;
            check(shmlane_subscriber_release(subscriber, &sample), "release");
            rtts[i] = now_ns() - start;
            if (answer != seq) {
                fprintf(stderr, "pingpong: answer %llu to %llu\n", (unsigned long long)answer,
                        (unsigned long long)seq);
                return 1;
            }
        }
        if (fwrite(rtts, sizeof *rtts, round_size, stdout) != round_size) {
            return 1;
        }
        fflush(stdout);
    }
    shmlane_subscriber_destroy(subscriber);
    shmlane_publisher_destroy(publisher);
    shmlane_topic_destroy(pong);
    shmlane_topic_destroy(ping);
    shmlane_node_destroy(node);
    free(rtts);
    return 0;
}
