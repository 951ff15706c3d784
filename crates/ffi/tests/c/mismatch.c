/* Type checks from C: mismatch NAMESPACE
 * The Rust test created the topic "ticks" of its Tick. Opening it as another layout or
 * version is refused with SHMLANE_ERROR_TYPE_MISMATCH (the messages are reported as "layout"
 * and "version"); opening it without a type adopts the recorded one ("adopted NAME SIZE
 * ALIGN VERSION"). */
#include "common.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: mismatch NAMESPACE\n");
        return 2;
    }
    shmlane_node *node = NULL;
    shmlane_topic *topic = NULL;
    CHECK_OK(shmlane_node_create("c-mismatch", argv[1], NULL, &node));

    /* Same name, another size. */
    shmlane_type smaller = tick_type();
    smaller.size = 24;
    topic = (shmlane_topic *)1; /* a failed open writes NULL */
    CHECK_RC(shmlane_topic_open(node, "ticks", &smaller, NULL, &topic), SHMLANE_ERROR_TYPE_MISMATCH);
    CHECK(topic == NULL);
    report("layout", shmlane_last_error_message());

    /* Same layout, another version; and open_or_create is refused the same way. */
    shmlane_type newer = tick_type();
    newer.version = 1;
    CHECK_RC(shmlane_topic_open_or_create(node, "ticks", &newer, NULL, &topic),
             SHMLANE_ERROR_TYPE_MISMATCH);
    report("version", shmlane_last_error_message());

    /* A layout no type has is refused before the topic is looked at. */
    shmlane_type odd = tick_type();
    odd.align = 3;
    CHECK_RC(shmlane_topic_open(node, "ticks", &odd, NULL, &topic), SHMLANE_ERROR_INVALID_CONFIG);

    /* No type: the recorded one. */
    CHECK_OK(shmlane_topic_open(node, "ticks", NULL, NULL, &topic));
    shmlane_type recorded;
    CHECK_OK(shmlane_topic_type(topic, &recorded));
    printf("@@shmlane adopted %s %llu %llu %llu\n", recorded.name,
           (unsigned long long)recorded.size, (unsigned long long)recorded.align,
           (unsigned long long)recorded.version);
    fflush(stdout);
    CHECK(recorded.size == sizeof(tick) && recorded.align == SHMLANE_ALIGNOF(tick));
    CHECK(strcmp(recorded.name, TICK_TYPE_NAME) == 0);

    CHECK_OK(shmlane_topic_destroy(topic));
    CHECK_OK(shmlane_node_destroy(node));
    return 0;
}
