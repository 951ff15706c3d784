/* Events between C and Rust: events NAMESPACE
 * Opens the event service "bell" (the Rust test listens on it), makes a listener and a
 * notifier, reports "ready", waits (blocking) for the id the Rust test signals and checks it
 * is 5, then signals 7 and 9 and reports "notified". */
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: events NAMESPACE\n");
        return 2;
    }
    shmlane_node *node = NULL;
    shmlane_event *event = NULL;
    shmlane_listener *listener = NULL;
    shmlane_notifier *notifier = NULL;
    shmlane_event_config config;
    CHECK_OK(shmlane_event_config_default(&config));
    config.max_event_id = 16;
    CHECK_OK(shmlane_node_create("c-events", argv[1], NULL, &node));
    CHECK_OK(shmlane_event_open_or_create(node, "bell", &config, &event));
    uint32_t max_event_id = 0;
    CHECK_OK(shmlane_event_max_event_id(event, &max_event_id));
    CHECK(max_event_id == 16);
    CHECK_OK(shmlane_listener_create(event, &listener));
    CHECK_OK(shmlane_notifier_create(event, &notifier));
    report("ready", "1");

    uint32_t ids[4];
    size_t count = 0;
    CHECK_OK(shmlane_listener_wait(listener, SHMLANE_WAIT_BLOCKING, TICK_TIMEOUT_NS, ids, 4,
                                   &count));
    if (count != 1 || ids[0] != 5) {
        fprintf(stderr, "expected event id 5 alone, got %zu ids, the first %u\n", count,
                count > 0 ? ids[0] : 0);
        return 1;
    }
    size_t listeners = 0;
    CHECK_OK(shmlane_notifier_notify(notifier, 7, &listeners));
    CHECK(listeners == 2); /* the Rust test's listener and ours */
    CHECK_OK(shmlane_notifier_notify(notifier, 9, NULL));
    /* Ours sees them too, one at a time when the buffer holds one. */
    CHECK_OK(shmlane_listener_try_take(listener, ids, 1, &count));
    CHECK(count == 1 && ids[0] == 7);
    CHECK_OK(shmlane_listener_try_take(listener, ids, 4, &count));
    CHECK(count == 1 && ids[0] == 9);
    CHECK_RC(shmlane_notifier_notify(notifier, 16, NULL), SHMLANE_ERROR_BAD_EVENT_ID);
    report("notified", "1");

    CHECK_OK(shmlane_notifier_destroy(notifier));
    CHECK_OK(shmlane_listener_destroy(listener));
    CHECK_OK(shmlane_event_destroy(event));
    CHECK_OK(shmlane_node_destroy(node));
    return 0;
}
