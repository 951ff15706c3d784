/* Errors and misuse from C, in one process: misuse NAMESPACE
 * Every wrong call gets its error code (and a message), and the handles stay usable after:
 * NULL arguments and handles, a handle of another kind, bad names and settings, a missing
 * topic, samples released twice or to another subscriber, a subscriber destroyed while it
 * holds a sample, loans sent twice or to another publisher, a publisher destroyed with a loan
 * out, limits (max_held, max_loans), timeouts, discovery. Reports "checks N". */
#include "common.h"

static int contains(const char *text, const char *part) { return strstr(text, part) != NULL; }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: misuse NAMESPACE\n");
        return 2;
    }
    const char *ns = argv[1];
    shmlane_node *node = (shmlane_node *)1;

    /* Nodes: NULL arguments, bad names; a failed create writes NULL. */
    CHECK_RC(shmlane_node_create(NULL, ns, NULL, &node), SHMLANE_ERROR_NULL_ARGUMENT);
    CHECK(node == NULL);
    CHECK(contains(shmlane_last_error_message(), "name is NULL"));
    CHECK_RC(shmlane_node_create("c-misuse", ns, NULL, NULL), SHMLANE_ERROR_NULL_ARGUMENT);
    CHECK_RC(shmlane_node_create("no spaces", ns, NULL, &node), SHMLANE_ERROR_INVALID_NAME);
    CHECK(contains(shmlane_last_error_message(), "no spaces"));
    CHECK_OK(shmlane_node_create("c-misuse", ns, NULL, &node));

    /* Topics: missing, no type to create with, bad settings, existing. */
    shmlane_type type = {"misuse_t", 8, 8, 0};
    shmlane_topic *topic = NULL;
    CHECK_RC(shmlane_topic_open(node, "misuse", &type, NULL, &topic), SHMLANE_ERROR_NOT_FOUND);
    CHECK_RC(shmlane_topic_open_or_create(node, "misuse", NULL, NULL, &topic),
             SHMLANE_ERROR_TYPE_REQUIRED);
    CHECK_RC(shmlane_topic_open(NULL, "misuse", &type, NULL, &topic), SHMLANE_ERROR_NULL_ARGUMENT);
    CHECK_RC(shmlane_topic_open(node, NULL, &type, NULL, &topic), SHMLANE_ERROR_NULL_ARGUMENT);
    shmlane_topic_config config;
    CHECK_OK(shmlane_topic_config_default(&config));
    CHECK(config.max_held == 8 && config.overflow == SHMLANE_OVERFLOW_DROP_OLDEST);
    config.overflow = 9;
    CHECK_RC(shmlane_topic_create(node, "misuse", &type, &config, &topic),
             SHMLANE_ERROR_INVALID_CONFIG);
    config.overflow = SHMLANE_OVERFLOW_DROP_OLDEST;
    config.subscriber_capacity = 3;
    CHECK_RC(shmlane_topic_create(node, "misuse", &type, &config, &topic),
             SHMLANE_ERROR_INVALID_CONFIG);
    CHECK(contains(shmlane_last_error_message(), "subscriber_capacity is 3"));
    config.subscriber_capacity = 16;
    config.max_held = 2;
    config.max_loans = 2;
    CHECK_OK(shmlane_topic_create(node, "misuse", &type, &config, &topic));
    shmlane_topic *again = NULL;
    CHECK_RC(shmlane_topic_create(node, "misuse", &type, &config, &again),
             SHMLANE_ERROR_ALREADY_EXISTS);
    const char *service = NULL;
    CHECK_OK(shmlane_topic_service(topic, &service));
    CHECK(strcmp(service, "misuse") == 0);
    shmlane_topic_config got;
    CHECK_OK(shmlane_topic_get_config(topic, &got));
    CHECK(got.max_held == 2 && got.subscriber_capacity == 16);

    shmlane_publisher *publisher = NULL, *other_publisher = NULL;
    shmlane_subscriber *subscriber = NULL, *other_subscriber = NULL;
    CHECK_OK(shmlane_publisher_create(topic, &publisher));
    CHECK_OK(shmlane_publisher_create(topic, &other_publisher));
    CHECK_OK(shmlane_subscriber_create(topic, &subscriber));
    CHECK_OK(shmlane_subscriber_create(topic, &other_subscriber));

    /* NULL and wrong handles. */
    shmlane_sample sample;
    CHECK_RC(shmlane_subscriber_receive(NULL, &sample), SHMLANE_ERROR_NULL_ARGUMENT);
    CHECK(contains(shmlane_last_error_message(), "subscriber is NULL"));
    CHECK_RC(shmlane_subscriber_receive(subscriber, NULL), SHMLANE_ERROR_NULL_ARGUMENT);
    CHECK_RC(shmlane_subscriber_receive((shmlane_subscriber *)publisher, &sample),
             SHMLANE_ERROR_INVALID_HANDLE);
    CHECK(contains(shmlane_last_error_message(), "not a live subscriber handle"));
    uint64_t fake[64];
    memset(fake, 0, sizeof fake);
    shmlane_loan loan;
    CHECK_RC(shmlane_publisher_loan((shmlane_publisher *)fake, 1, &loan),
             SHMLANE_ERROR_INVALID_HANDLE);
    CHECK_RC(shmlane_topic_destroy((shmlane_topic *)fake), SHMLANE_ERROR_INVALID_HANDLE);
    CHECK_RC(shmlane_notifier_notify(NULL, 1, NULL), SHMLANE_ERROR_NULL_ARGUMENT);

    /* Nothing queued: no sample, or a timeout; an unknown strategy. */
    CHECK_OK(shmlane_subscriber_receive(subscriber, &sample));
    CHECK(sample.data == NULL && sample.len == 0);
    CHECK_RC(shmlane_subscriber_receive_wait(subscriber, SHMLANE_WAIT_BACKOFF, 1000000, &sample),
             SHMLANE_ERROR_TIMEOUT);
    CHECK_RC(shmlane_subscriber_receive_wait(subscriber, 7, 1000000, &sample),
             SHMLANE_ERROR_INVALID_ARGUMENT);

    /* Lengths: whole elements only, at least one. */
    uint64_t values[4] = {11, 22, 33, 44};
    CHECK_RC(shmlane_publisher_send_copy(publisher, values, 3, NULL), SHMLANE_ERROR_BAD_LENGTH);
    CHECK_RC(shmlane_publisher_send_copy(publisher, NULL, 8, NULL), SHMLANE_ERROR_NULL_ARGUMENT);
    CHECK_RC(shmlane_publisher_loan(publisher, 0, &loan), SHMLANE_ERROR_BAD_LENGTH);

    /* Samples: released to another subscriber, twice, or by a stale copy. */
    size_t delivered = 0;
    for (int i = 0; i < 4; i++) {
        CHECK_OK(shmlane_publisher_send_copy(publisher, &values[i], 8, &delivered));
        CHECK(delivered == 2);
    }
    shmlane_sample first, copy;
    CHECK_OK(shmlane_subscriber_receive(subscriber, &first));
    CHECK(first.data != NULL && *(const uint64_t *)first.data == 11 && first.len == 1);
    copy = first;
    CHECK_RC(shmlane_subscriber_release(other_subscriber, &first), SHMLANE_ERROR_FOREIGN);
    CHECK_OK(shmlane_subscriber_release(subscriber, &first));
    CHECK(first.data == NULL && first.token == 0);
    CHECK_RC(shmlane_subscriber_release(subscriber, &first), SHMLANE_ERROR_RELEASED);
    CHECK_RC(shmlane_subscriber_release(subscriber, &copy), SHMLANE_ERROR_RELEASED);

    /* max_held: two samples held, a third refused (and not lost); no destroy while held. */
    shmlane_sample second, third, fourth;
    CHECK_OK(shmlane_subscriber_receive(subscriber, &second));
    CHECK_OK(shmlane_subscriber_receive(subscriber, &third));
    CHECK(*(const uint64_t *)second.data == 22 && *(const uint64_t *)third.data == 33);
    CHECK_RC(shmlane_subscriber_receive(subscriber, &fourth), SHMLANE_ERROR_TOO_MANY_HELD);
    uint32_t held = 0;
    CHECK_OK(shmlane_subscriber_held(subscriber, &held));
    CHECK(held == 2);
    CHECK_RC(shmlane_subscriber_destroy(subscriber), SHMLANE_ERROR_BUSY);
    CHECK(contains(shmlane_last_error_message(), "holds 2 samples"));
    /* Still usable: the samples read as before. */
    CHECK(*(const uint64_t *)second.data == 22);
    CHECK_OK(shmlane_subscriber_release(subscriber, &second));
    CHECK_OK(shmlane_subscriber_release(subscriber, &third));
    CHECK_OK(shmlane_subscriber_receive(subscriber, &fourth));
    CHECK(fourth.data != NULL && *(const uint64_t *)fourth.data == 44);
    CHECK_OK(shmlane_subscriber_release(subscriber, &fourth));
    CHECK_OK(shmlane_subscriber_destroy(subscriber));

    /* Loans: max_loans, another publisher's, twice; no destroy with a loan out. */
    shmlane_loan a, b, c;
    CHECK_OK(shmlane_publisher_loan(publisher, 1, &a));
    CHECK_OK(shmlane_publisher_loan(publisher, 1, &b));
    CHECK(a.bytes == 8 && a.len == 1 && a.data != NULL);
    CHECK_RC(shmlane_publisher_loan(publisher, 1, &c), SHMLANE_ERROR_OUT_OF_BLOCKS);
    CHECK_RC(shmlane_publisher_send(other_publisher, &a, NULL), SHMLANE_ERROR_FOREIGN);
    CHECK_RC(shmlane_publisher_destroy(publisher), SHMLANE_ERROR_BUSY);
    CHECK_OK(shmlane_publisher_drop_loan(publisher, &a));
    CHECK_RC(shmlane_publisher_drop_loan(publisher, &a), SHMLANE_ERROR_RELEASED);
    CHECK_RC(shmlane_publisher_send(publisher, &a, NULL), SHMLANE_ERROR_RELEASED);
    *(uint64_t *)b.data = 55;
    CHECK_OK(shmlane_publisher_send(publisher, &b, &delivered));
    CHECK(delivered == 1); /* only other_subscriber is left */
    CHECK_RC(shmlane_publisher_send(publisher, &b, NULL), SHMLANE_ERROR_RELEASED);
    CHECK_OK(shmlane_publisher_destroy(publisher));

    /* The other subscriber got all five, in order. */
    uint64_t expected[5] = {11, 22, 33, 44, 55};
    for (int i = 0; i < 5; i++) {
        CHECK_OK(shmlane_subscriber_receive(other_subscriber, &sample));
        CHECK(sample.data != NULL && *(const uint64_t *)sample.data == expected[i]);
        CHECK_OK(shmlane_subscriber_release(other_subscriber, &sample));
    }

    /* Events: a NULL buffer with room claimed, an id out of range. */
    shmlane_event *event = NULL;
    shmlane_listener *listener = NULL;
    shmlane_notifier *notifier = NULL;
    size_t count = 0;
    CHECK_OK(shmlane_event_open_or_create(node, "misuse-events", NULL, &event));
    CHECK_OK(shmlane_listener_create(event, &listener));
    CHECK_OK(shmlane_notifier_create(event, &notifier));
    CHECK_RC(shmlane_listener_try_take(listener, NULL, 4, &count), SHMLANE_ERROR_NULL_ARGUMENT);
    CHECK_RC(shmlane_listener_wait(listener, SHMLANE_WAIT_BLOCKING, 1000000, NULL, 0, &count),
             SHMLANE_ERROR_TIMEOUT);
    CHECK_RC(shmlane_notifier_notify(notifier, 64, NULL), SHMLANE_ERROR_BAD_EVENT_ID);

    /* Discovery sees the topic with its type and participants. */
    shmlane_service_list *list = NULL;
    size_t services = 0;
    int found = 0;
    CHECK_OK(shmlane_discovery_list(NULL, &list));
    CHECK_OK(shmlane_service_list_len(list, &services));
    for (size_t i = 0; i < services; i++) {
        shmlane_service_info info;
        CHECK_OK(shmlane_service_list_get(list, i, &info));
        if (strcmp(info.namespace_name, ns) == 0 && strcmp(info.name, "misuse") == 0) {
            CHECK(info.kind == SHMLANE_SERVICE_TOPIC);
            CHECK(info.type_name != NULL && strcmp(info.type_name, "misuse_t") == 0);
            CHECK(info.type_size == 8 && info.publishers == 1 && info.subscribers == 1);
            found++;
        }
        if (strcmp(info.namespace_name, ns) == 0 && strcmp(info.name, "misuse-events") == 0) {
            CHECK(info.kind == SHMLANE_SERVICE_EVENT && info.subscribers == 1);
            found++;
        }
    }
    CHECK(found == 2);
    shmlane_service_info beyond;
    CHECK_RC(shmlane_service_list_get(list, services, &beyond), SHMLANE_ERROR_INVALID_ARGUMENT);
    CHECK_OK(shmlane_service_list_destroy(list));

    /* Error names; destroying NULL does nothing. */
    CHECK(strcmp(shmlane_error_name(SHMLANE_ERROR_BUSY), "SHMLANE_ERROR_BUSY") == 0);
    CHECK(strcmp(shmlane_error_name(999), "SHMLANE_UNKNOWN") == 0);
    CHECK_OK(shmlane_subscriber_destroy(NULL));
    CHECK_OK(shmlane_node_destroy(NULL));

    CHECK_OK(shmlane_notifier_destroy(notifier));
    CHECK_OK(shmlane_listener_destroy(listener));
    CHECK_OK(shmlane_event_destroy(event));
    CHECK_OK(shmlane_subscriber_destroy(other_subscriber));
    CHECK_OK(shmlane_publisher_destroy(other_publisher));
    CHECK_OK(shmlane_topic_destroy(topic));
    CHECK_OK(shmlane_node_destroy(node));
    report_u64("checks", checks_done());
    return 0;
}
