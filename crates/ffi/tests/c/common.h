/* What the C test programs share: the tick type (declared identically in tests/c_interop.rs),
 * the values a tick of each sequence number carries, and checks that report and exit.
 *
 * The programs are started by tests/c_interop.rs through the test kit, which appends the test
 * binary's own arguments after theirs: each program reads its leading arguments only. They
 * report to the test with stdout lines "@@shmlane KEY VALUE" and exit non-zero on a failure,
 * saying what failed on stderr. */
#ifndef SHMLANE_TEST_COMMON_H
#define SHMLANE_TEST_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmlane.h"

/* The Rust test's `#[repr(C)] struct Tick` in crate c_interop: the same four things make the
 * same type (name, size, alignment, version). */
typedef struct tick {
    uint64_t sequence;
    double price;
    uint32_t instrument;
    uint32_t quantity;
    uint64_t checksum;
} tick;

#define TICK_TYPE_NAME "c_interop::Tick"
#define TICK_TIMEOUT_NS 10000000000ull /* 10 s */

static inline shmlane_type tick_type(void) {
    shmlane_type type;
    type.name = TICK_TYPE_NAME;
    type.size = sizeof(tick);
    type.align = SHMLANE_ALIGNOF(tick);
    type.version = 0;
    return type;
}

/* The tick numbered `sequence` (as tick_for in c_interop.rs). */
static inline tick tick_for(uint64_t sequence) {
    tick t;
    t.sequence = sequence;
    t.price = 100.0 + (double)sequence * 0.25;
    t.instrument = (uint32_t)(sequence % 7);
    t.quantity = (uint32_t)(sequence * 3 + 1);
    t.checksum = sequence * 0x9e3779b97f4a7c15ull ^ 0x5eed;
    return t;
}

static inline int tick_equal(const tick *a, const tick *b) {
    return a->sequence == b->sequence && a->price == b->price &&
           a->instrument == b->instrument && a->quantity == b->quantity &&
           a->checksum == b->checksum;
}

static inline void report(const char *key, const char *value) {
    printf("@@shmlane %s %s\n", key, value);
    fflush(stdout);
}

static inline void report_u64(const char *key, uint64_t value) {
    printf("@@shmlane %s %llu\n", key, (unsigned long long)value);
    fflush(stdout);
}

/* Fails the program unless `call` returned SHMLANE_OK. */
#define CHECK_OK(call)                                                                     \
    do {                                                                                   \
        shmlane_error check_rc_ = (call);                                                  \
        if (check_rc_ != SHMLANE_OK) {                                                     \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call,       \
                    shmlane_error_name(check_rc_), shmlane_last_error_message());          \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

/* Checks passed so far (CHECK_RC and CHECK count them). */
static unsigned checks_passed = 0;
static inline unsigned checks_done(void) { return checks_passed; }

/* Fails the program unless `call` returned `expected`. */
#define CHECK_RC(call, expected)                                                           \
    do {                                                                                   \
        shmlane_error check_rc_ = (call);                                                  \
        if (check_rc_ != (expected)) {                                                     \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (message: %s)\n", __FILE__,  \
                    __LINE__, #call, shmlane_error_name(check_rc_),                        \
                    shmlane_error_name(expected), shmlane_last_error_message());           \
            exit(1);                                                                       \
        }                                                                                  \
        checks_passed++;                                                                   \
    } while (0)

/* Fails the program unless `condition` holds. */
#define CHECK(condition)                                                                   \
    do {                                                                                   \
        if (!(condition)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition);  \
            exit(1);                                                                       \
        }                                                                                  \
        checks_passed++;                                                                   \
    } while (0)

#endif
