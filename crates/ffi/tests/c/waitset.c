/* A C wait set over Rust publishers: waitset NAMESPACE
 * Opens the topics "ticks-a" and "ticks-b" (created by the Rust test) and the event "bell",
 * attaches a subscriber of each topic (b with a 20 ms deadline) and a listener to one wait
 * set, checks the misuse refusals, reports "ready", then waits (buffer of one report at a
 * time) for tick 0 on a, reports "got-a", waits for tick 1 on b and event 3 on the listener,
 * for b's missed deadline and for an interval's tick; detaches, destroys, and reports
 * "checks N". Exits 1, saying what, on anything unexpected. */
#include "common.h"

#define SECOND_NS 1000000000ull

static void expect_tick(const shmlane_sample *sample, uint64_t sequence) {
    tick expected = tick_for(sequence);
    CHECK(sample->data != NULL);
    CHECK(sample->len == 1);
    CHECK(tick_equal((const tick *)sample->data, &expected));
}

/* Waits (one report per call) until `id` is reported as `kind`; other reports are skipped
 * (b's missed deadlines come whenever b is silent for 20 ms). */
static void wait_for(shmlane_waitset *set, uint64_t id, shmlane_ready_kind kind) {
    for (int tries = 0; tries < 10000; tries++) {
        shmlane_ready ready;
        size_t count = 0;
        CHECK_OK(shmlane_waitset_wait(set, SHMLANE_WAIT_BLOCKING, TICK_TIMEOUT_NS, &ready, 1,
                                      &count));
        CHECK(count == 1);
        if (ready.id == id && ready.kind == kind) {
            return;
        }
    }
    fprintf(stderr, "attachment %llu never reported kind %u\n", (unsigned long long)id, kind);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: waitset NAMESPACE\n");
        return 2;
    }
    shmlane_type type = tick_type();
    shmlane_node *node = NULL;
    shmlane_topic *topic_a = NULL, *topic_b = NULL;
    shmlane_subscriber *sub_a = NULL, *sub_b = NULL;
    shmlane_event *event = NULL;
    shmlane_listener *listener = NULL;
    shmlane_waitset *set = NULL;
    shmlane_event_config config;
    CHECK_OK(shmlane_event_config_default(&config));
    config.max_event_id = 16;
    CHECK_OK(shmlane_node_create("c-waitset", argv[1], NULL, &node));
    CHECK_OK(shmlane_topic_open(node, "ticks-a", &type, NULL, &topic_a));
    CHECK_OK(shmlane_topic_open(node, "ticks-b", &type, NULL, &topic_b));
    CHECK_OK(shmlane_subscriber_create(topic_a, &sub_a));
    CHECK_OK(shmlane_subscriber_create(topic_b, &sub_b));
    CHECK_OK(shmlane_event_open_or_create(node, "bell", &config, &event));
    CHECK_OK(shmlane_listener_create(event, &listener));
    CHECK_OK(shmlane_waitset_create(&set));

    /* Misuse first: nothing attached, bad arguments, wrong handles. */
    shmlane_ready ready[4];
    size_t count = 7;
    CHECK_RC(shmlane_waitset_wait(set, SHMLANE_WAIT_BUSY_SPIN, 0, ready, 4, &count),
             SHMLANE_ERROR_INVALID_ARGUMENT);
    CHECK(count == 0);
    uint64_t id_a = 0, id_b = 0, id_bell = 0, id_tick = 0, bad = 9;
    CHECK_RC(shmlane_waitset_attach_subscriber(NULL, sub_a, SHMLANE_TIMEOUT_INFINITE, &bad),
             SHMLANE_ERROR_NULL_ARGUMENT);
    CHECK(bad == 0);
    CHECK_RC(shmlane_waitset_attach_subscriber(set, (shmlane_subscriber *)listener,
                                               SHMLANE_TIMEOUT_INFINITE, &bad),
             SHMLANE_ERROR_INVALID_HANDLE);
    CHECK_RC(shmlane_waitset_attach_subscriber(set, sub_a, 0, &bad),
             SHMLANE_ERROR_INVALID_ARGUMENT);
    CHECK_RC(shmlane_waitset_attach_interval(set, 0, &bad), SHMLANE_ERROR_INVALID_ARGUMENT);

    CHECK_OK(shmlane_waitset_attach_subscriber(set, sub_a, SHMLANE_TIMEOUT_INFINITE, &id_a));
    CHECK_OK(shmlane_waitset_attach_subscriber(set, sub_b, 20000000ull, &id_b));
    CHECK_OK(shmlane_waitset_attach_listener(set, listener, SHMLANE_TIMEOUT_INFINITE, &id_bell));
    CHECK(id_a != 0 && id_b != 0 && id_bell != 0);
    CHECK(id_a != id_b && id_b != id_bell && id_a != id_bell);
    size_t len = 0;
    CHECK_OK(shmlane_waitset_len(set, &len));
    CHECK(len == 3);
    CHECK_RC(shmlane_waitset_wait(set, SHMLANE_WAIT_BUSY_SPIN, 0, ready, 0, &count),
             SHMLANE_ERROR_INVALID_ARGUMENT);
    CHECK_RC(shmlane_waitset_wait(set, 9, 0, ready, 4, &count), SHMLANE_ERROR_INVALID_ARGUMENT);
    /* Nothing sent yet and b's deadline not due: a wait of 1 ms times out. */
    CHECK_RC(shmlane_waitset_wait(set, SHMLANE_WAIT_BACKOFF, 1000000ull, ready, 4, &count),
             SHMLANE_ERROR_TIMEOUT);
    /* An attached source is not destroyed under the set. */
    CHECK_RC(shmlane_subscriber_destroy(sub_a), SHMLANE_ERROR_BUSY);
    CHECK_RC(shmlane_listener_destroy(listener), SHMLANE_ERROR_BUSY);
    CHECK_RC(shmlane_waitset_detach(set, 12345), SHMLANE_ERROR_NOT_FOUND);
    report("ready", "1");

    /* Tick 0 on a. */
    wait_for(set, id_a, SHMLANE_READY_DATA);
    shmlane_sample sample;
    CHECK_OK(shmlane_subscriber_receive(sub_a, &sample));
    expect_tick(&sample, 0);
    CHECK_OK(shmlane_subscriber_release(sub_a, &sample));
    report("got-a", "1");

    /* Tick 1 on b and event 3, in either order, one report per wait. */
    int got_b = 0, got_bell = 0;
    for (int tries = 0; tries < 10000 && !(got_b && got_bell); tries++) {
        CHECK_OK(shmlane_waitset_wait(set, SHMLANE_WAIT_BLOCKING, TICK_TIMEOUT_NS, ready, 1,
                                      &count));
        CHECK(count == 1);
        CHECK(ready[0].id != id_a);
        if (ready[0].id == id_b && ready[0].kind == SHMLANE_READY_DATA) {
            CHECK_OK(shmlane_subscriber_receive(sub_b, &sample));
            expect_tick(&sample, 1);
            CHECK_OK(shmlane_subscriber_release(sub_b, &sample));
            got_b = 1;
        } else if (ready[0].id == id_bell) {
            CHECK(ready[0].kind == SHMLANE_READY_DATA);
            uint32_t ids[4];
            size_t taken = 0;
            CHECK_OK(shmlane_listener_try_take(listener, ids, 4, &taken));
            CHECK(taken == 1 && ids[0] == 3);
            got_bell = 1;
        } else {
            CHECK(ready[0].id == id_b && ready[0].kind == SHMLANE_READY_MISSED);
        }
    }
    CHECK(got_b && got_bell);

    /* b stays silent: its deadline is reported missed. */
    wait_for(set, id_b, SHMLANE_READY_MISSED);
    /* An interval ticks. */
    CHECK_OK(shmlane_waitset_attach_interval(set, 5000000ull, &id_tick));
    wait_for(set, id_tick, SHMLANE_READY_TICK);

    /* Detached, a is free to go; a detached id is gone. */
    CHECK_OK(shmlane_waitset_detach(set, id_a));
    CHECK_RC(shmlane_waitset_detach(set, id_a), SHMLANE_ERROR_NOT_FOUND);
    CHECK_OK(shmlane_waitset_len(set, &len));
    CHECK(len == 3);
    CHECK_OK(shmlane_subscriber_destroy(sub_a));
    /* Destroying the set detaches the rest. */
    CHECK_OK(shmlane_waitset_destroy(set));
    CHECK_OK(shmlane_listener_destroy(listener));
    CHECK_OK(shmlane_subscriber_destroy(sub_b));
    CHECK_OK(shmlane_event_destroy(event));
    CHECK_OK(shmlane_topic_destroy(topic_b));
    CHECK_OK(shmlane_topic_destroy(topic_a));
    CHECK_OK(shmlane_node_destroy(node));
    report_u64("checks", checks_done());
    return 0;
}
