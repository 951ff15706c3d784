/* A C publisher of ticks: publisher NAMESPACE COUNT SLICE
 * Opens the topic "ticks" (created by the Rust test) as the tick type, waits for its
 * subscriber, sends ticks 0 .. COUNT-1 (even ones by loan, odd ones by copy), then one loan of
 * SLICE ticks numbered COUNT .. COUNT+SLICE-1, and reports "sent COUNT". */
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: publisher NAMESPACE COUNT SLICE\n");
        return 2;
    }
    const char *ns = argv[1];
    uint64_t count = strtoull(argv[2], NULL, 10);
    size_t slice = (size_t)strtoull(argv[3], NULL, 10);

    shmlane_node *node = NULL;
    shmlane_topic *topic = NULL;
    shmlane_publisher *publisher = NULL;
    shmlane_type type = tick_type();
    CHECK_OK(shmlane_node_create("c-publisher", ns, NULL, &node));
    CHECK_OK(shmlane_topic_open(node, "ticks", &type, NULL, &topic));
    CHECK_OK(shmlane_publisher_create(topic, &publisher));
    CHECK_OK(shmlane_publisher_set_block_timeout(publisher, TICK_TIMEOUT_NS));

    size_t subscribers = 0;
    CHECK_OK(shmlane_publisher_subscribers(publisher, &subscribers));
    if (subscribers != 1) {
        fprintf(stderr, "expected the Rust subscriber, found %zu subscribers\n", subscribers);
        return 1;
    }

    for (uint64_t sequence = 0; sequence < count; sequence++) {
        tick value = tick_for(sequence);
        size_t delivered = 0;
        if (sequence % 2 == 0) {
            shmlane_loan loan;
            CHECK_OK(shmlane_publisher_loan(publisher, 1, &loan));
            if (loan.len != 1 || loan.bytes != sizeof(tick) ||
                (uintptr_t)loan.data % SHMLANE_ALIGNOF(tick) != 0) {
                fprintf(stderr, "bad loan: %zu elements, %zu bytes at %p\n", loan.len,
                        loan.bytes, loan.data);
                return 1;
            }
            *(tick *)loan.data = value;
            CHECK_OK(shmlane_publisher_send(publisher, &loan, &delivered));
            if (loan.data != NULL || loan.token != 0) {
                fprintf(stderr, "a sent loan was not zeroed\n");
                return 1;
            }
        } else {
            CHECK_OK(shmlane_publisher_send_copy(publisher, &value, sizeof value, &delivered));
        }
        if (delivered != 1) {
            fprintf(stderr, "tick %llu delivered to %zu subscribers, expected 1\n",
                    (unsigned long long)sequence, delivered);
            return 1;
        }
    }

    shmlane_loan many;
    CHECK_OK(shmlane_publisher_loan(publisher, slice, &many));
    if (many.len != slice || many.bytes != slice * sizeof(tick)) {
        fprintf(stderr, "bad slice loan: %zu elements, %zu bytes\n", many.len, many.bytes);
        return 1;
    }
    tick *ticks = (tick *)many.data;
    for (size_t i = 0; i < slice; i++) {
        ticks[i] = tick_for(count + i);
    }
    CHECK_OK(shmlane_publisher_send(publisher, &many, NULL));
    report_u64("sent", count);

    CHECK_OK(shmlane_publisher_destroy(publisher));
    CHECK_OK(shmlane_topic_destroy(topic));
    CHECK_OK(shmlane_node_destroy(node));
    return 0;
}
