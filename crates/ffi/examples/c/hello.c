/* hello: a C publisher and subscriber of a struct over shmlane, zero copy.
 *
 *   ./hello sub [NAMESPACE]   # waits for 10 greetings and prints them
 *   ./hello pub [NAMESPACE]   # waits for a subscriber, then sends 10 greetings
 *
 * Build (from the repository root):
 *   cargo build -p shmlane-ffi
 *   cc -std=c11 -Wall -I include crates/ffi/examples/c/hello.c \
 *      -L target/debug -lshmlane_ffi -Wl,-rpath,"$PWD/target/debug" -o hello
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "shmlane.h"

/* The payload: every process describes it with the same name, size, alignment and version. */
typedef struct greeting {
    uint64_t number;
    char text[56];
} greeting;

static const shmlane_type GREETING = {"hello::Greeting", sizeof(greeting),
                                      SHMLANE_ALIGNOF(greeting), 0};

/* Returns from main with a message if a call fails. */
#define TRY(call)                                                                          \
    do {                                                                                   \
        shmlane_error rc_ = (call);                                                        \
        if (rc_ != SHMLANE_OK) {                                                           \
            fprintf(stderr, "%s: %s\n", shmlane_error_name(rc_),                           \
                    shmlane_last_error_message());                                         \
            return 1;                                                                      \
        }                                                                                  \
    } while (0)

/* Waits up to 10 s until the topic has `wanted` subscribers (1, or 0). */
static shmlane_error await_subscribers(shmlane_publisher *publisher, size_t wanted) {
    size_t subscribers = wanted + 1;
    for (int tries = 0; tries < 1000; tries++) {
        shmlane_error rc = shmlane_publisher_subscribers(publisher, &subscribers);
        if (rc != SHMLANE_OK || (subscribers > 0) == (wanted > 0)) {
            return rc;
        }
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return SHMLANE_OK;
}

static int publish(shmlane_topic *topic) {
    shmlane_publisher *publisher = NULL;
    TRY(shmlane_publisher_create(topic, &publisher));
    /* Nothing is kept for late subscribers (history 0): wait for one. */
    TRY(await_subscribers(publisher, 1));
    for (uint64_t number = 0; number < 10; number++) {
        shmlane_loan loan;
        TRY(shmlane_publisher_loan(publisher, 1, &loan)); /* room in shared memory */
        greeting *message = (greeting *)loan.data;
        message->number = number;
        snprintf(message->text, sizeof message->text, "hello from C, number %u",
                 (unsigned)number);
        TRY(shmlane_publisher_send(publisher, &loan, NULL)); /* no copy */
    }
    printf("sent 10 greetings\n");
    /* The greetings are in this publisher's shared memory: stay until the subscriber leaves. */
    TRY(await_subscribers(publisher, 0));
    TRY(shmlane_publisher_destroy(publisher));
    return 0;
}

static int subscribe(shmlane_topic *topic) {
    shmlane_subscriber *subscriber = NULL;
    TRY(shmlane_subscriber_create(topic, &subscriber));
    for (int i = 0; i < 10; i++) {
        shmlane_sample sample;
        TRY(shmlane_subscriber_receive_wait(subscriber, SHMLANE_WAIT_BLOCKING,
                                            10ull * 1000 * 1000 * 1000, &sample));
        const greeting *message = (const greeting *)sample.data; /* read in place */
        printf("%llu: %.56s\n", (unsigned long long)message->number, message->text);
        TRY(shmlane_subscriber_release(subscriber, &sample));
    }
    TRY(shmlane_subscriber_destroy(subscriber));
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "pub") != 0 && strcmp(argv[1], "sub") != 0)) {
        fprintf(stderr, "usage: hello pub|sub [NAMESPACE]\n");
        return 2;
    }
    int publisher = strcmp(argv[1], "pub") == 0;
    const char *ns = argc > 2 ? argv[2] : NULL; /* NULL: $SHMLANE_NAMESPACE or "default" */

    shmlane_node *node = NULL;
    shmlane_topic *topic = NULL;
    TRY(shmlane_node_create(publisher ? "hello-pub" : "hello-sub", ns, NULL, &node));
    TRY(shmlane_topic_open_or_create(node, "hello", &GREETING, NULL, &topic));
    int status = publisher ? publish(topic) : subscribe(topic);
    TRY(shmlane_topic_destroy(topic));
    TRY(shmlane_node_destroy(node));
    return status;
}
