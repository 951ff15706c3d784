/* A C subscriber of ticks: subscriber NAMESPACE COUNT SLICE
 * Opens the topic "ticks" (created by the Rust test) as the tick type, reports "ready", then
 * receives ticks 0 .. COUNT-1 in order (waiting with each strategy in turn) and one sample of
 * SLICE ticks numbered COUNT .., checks every field, and reports "received COUNT". Exits 1,
 * printing what it got, on a wrong value. */
#include "common.h"

static void expect_tick(const tick *got, uint64_t sequence) {
    tick expected = tick_for(sequence);
    if (!tick_equal(got, &expected)) {
        fprintf(stderr,
                "wrong tick %llu: got sequence %llu price %f instrument %u quantity %u "
                "checksum %llx\n",
                (unsigned long long)sequence, (unsigned long long)got->sequence, got->price,
                got->instrument, got->quantity, (unsigned long long)got->checksum);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: subscriber NAMESPACE COUNT SLICE\n");
        return 2;
    }
    const char *ns = argv[1];
    uint64_t count = strtoull(argv[2], NULL, 10);
    size_t slice = (size_t)strtoull(argv[3], NULL, 10);
    const shmlane_wait_strategy strategies[3] = {SHMLANE_WAIT_BLOCKING, SHMLANE_WAIT_BACKOFF,
                                                 SHMLANE_WAIT_BUSY_SPIN};

    shmlane_node *node = NULL;
    shmlane_topic *topic = NULL;
    shmlane_subscriber *subscriber = NULL;
    shmlane_type type = tick_type();
    CHECK_OK(shmlane_node_create("c-subscriber", ns, NULL, &node));
    CHECK_OK(shmlane_topic_open(node, "ticks", &type, NULL, &topic));
    CHECK_OK(shmlane_subscriber_create(topic, &subscriber));
    report("ready", "1");

    for (uint64_t sequence = 0; sequence < count; sequence++) {
        shmlane_sample sample;
        CHECK_OK(shmlane_subscriber_receive_wait(subscriber, strategies[sequence % 3],
                                                 TICK_TIMEOUT_NS, &sample));
        if (sample.len != 1 || sample.bytes != sizeof(tick) || sample.data == NULL) {
            fprintf(stderr, "sample %llu: %zu elements, %zu bytes\n",
                    (unsigned long long)sequence, sample.len, sample.bytes);
            return 1;
        }
        expect_tick((const tick *)sample.data, sequence);
        CHECK_OK(shmlane_subscriber_release(subscriber, &sample));
    }

    shmlane_sample many;
    CHECK_OK(shmlane_subscriber_receive_wait(subscriber, SHMLANE_WAIT_BLOCKING, TICK_TIMEOUT_NS,
                                             &many));
    if (many.len != slice || many.bytes != slice * sizeof(tick)) {
        fprintf(stderr, "slice sample: %zu elements, %zu bytes; expected %zu elements\n",
                many.len, many.bytes, slice);
        return 1;
    }
    for (size_t i = 0; i < slice; i++) {
        expect_tick((const tick *)many.data + i, count + i);
    }
    CHECK_OK(shmlane_subscriber_release(subscriber, &many));

    /* Nothing more was sent: a non-blocking receive finds nothing. */
    shmlane_sample none;
    CHECK_OK(shmlane_subscriber_receive(subscriber, &none));
    if (none.data != NULL) {
        fprintf(stderr, "an extra sample arrived\n");
        return 1;
    }
    uint64_t drops = 1;
    CHECK_OK(shmlane_subscriber_drops(subscriber, &drops));
    if (drops != 0) {
        fprintf(stderr, "%llu samples dropped\n", (unsigned long long)drops);
        return 1;
    }
    report_u64("received", count);

    CHECK_OK(shmlane_subscriber_destroy(subscriber));
    CHECK_OK(shmlane_topic_destroy(topic));
    CHECK_OK(shmlane_node_destroy(node));
    return 0;
}
