// shmlane.hpp: C++20 RAII wrappers over the C ABI of shmlane (shmlane.h), header-only.
//
// Handles own what they wrap and free it in their destructors; a Loan that was not sent is
// given back, a Sample is released. Errors are exceptions (shmlane::Error, with the C error
// code and message); a wait that times out is not an error: it returns an empty optional.
// Payload types are trivially copyable standard-layout structs (checked by static_assert),
// described to shmlane by a name, sizeof, alignof and a version: a Rust process sharing the
// topic uses the same name (its std::any::type_name, for example "my_app::Tick", or "f32").
//
// Rules carried over from shmlane.h: a Publisher, Subscriber, Listener, Server or Client is
// used by one thread at a time (it may move between threads with its loans and samples);
// Node, Topic, Event, Notifier and Rpc may be shared. Loans and samples must be sent, dropped
// or destroyed before their publisher or subscriber: one destroyed while they are out is
// refused by the library, and its handle is leaked rather than freed under them.
//
// Link with -lshmlane_ffi.
#ifndef SHMLANE_HPP
#define SHMLANE_HPP

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "shmlane.h"

namespace shmlane {

/// A failed call: the C error code and the library's message.
class Error : public std::runtime_error {
public:
    Error(shmlane_error code, const std::string& message)
        : std::runtime_error(std::string(shmlane_error_name(code)) + ": " + message), code_(code) {}

    /// The SHMLANE_ERROR_* code.
    shmlane_error code() const noexcept { return code_; }

private:
    shmlane_error code_;
};

namespace detail {

/// Throws an Error unless `rc` is SHMLANE_OK.
inline void check(shmlane_error rc) {
    if (rc != SHMLANE_OK) {
        throw Error(rc, shmlane_last_error_message());
    }
}

/// A timeout in nanoseconds, or SHMLANE_TIMEOUT_INFINITE for none.
inline uint64_t nanos(std::optional<std::chrono::nanoseconds> timeout) {
    if (!timeout) {
        return SHMLANE_TIMEOUT_INFINITE;
    }
    auto count = timeout->count();
    return count <= 0 ? 0 : static_cast<uint64_t>(count);
}

/// A move-only owner of a C handle, destroyed by `Destroy`.
template <class T, shmlane_error (*Destroy)(T*)>
class Owned {
public:
    Owned() noexcept = default;
    explicit Owned(T* raw) noexcept : raw_(raw) {}
    Owned(Owned&& other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}
    Owned& operator=(Owned&& other) noexcept {
        if (this != &other) {
            reset();
            raw_ = std::exchange(other.raw_, nullptr);
        }
        return *this;
    }
    Owned(const Owned&) = delete;
    Owned& operator=(const Owned&) = delete;
    ~Owned() { reset(); }

    T* get() const noexcept { return raw_; }

private:
    void reset() noexcept {
        if (raw_ != nullptr) {
            // Only refused with SHMLANE_ERROR_BUSY (loans or samples still out): the handle is
            // then left to the process rather than freed under them.
            (void)Destroy(raw_);
            raw_ = nullptr;
        }
    }

    T* raw_ = nullptr;
};

}  // namespace detail

/// How a blocking call waits.
enum class Wait : shmlane_wait_strategy {
    /// Polls in a tight loop (pin the thread).
    BusySpin = SHMLANE_WAIT_BUSY_SPIN,
    /// Spins, yields, then sleeps on a futex.
    Backoff = SHMLANE_WAIT_BACKOFF,
    /// Sleeps on a futex until woken.
    Blocking = SHMLANE_WAIT_BLOCKING,
};

/// A participant in a namespace (see shmlane_node_create).
class Node {
public:
    /// Node `name` in namespace `ns` (none: $SHMLANE_NAMESPACE or "default"), its shared
    /// memory in `root_dir` (none: /dev/shm).
    explicit Node(const std::string& name, const std::optional<std::string>& ns = std::nullopt,
                  const std::optional<std::string>& root_dir = std::nullopt) {
        shmlane_node* raw = nullptr;
        detail::check(shmlane_node_create(name.c_str(), ns ? ns->c_str() : nullptr,
                                          root_dir ? root_dir->c_str() : nullptr, &raw));
        node_ = Owned(raw);
    }

    shmlane_node* get() const noexcept { return node_.get(); }

private:
    using Owned = detail::Owned<shmlane_node, shmlane_node_destroy>;
    Owned node_;
};

/// A topic's settings (shmlane_topic_config), starting from the defaults.
struct TopicConfig : shmlane_topic_config {
    TopicConfig() : shmlane_topic_config() { detail::check(shmlane_topic_config_default(this)); }
};

template <class T>
class Publisher;
template <class T>
class Subscriber;

/// Room for `size()` elements of T in shared memory: write them, then Publisher::send it.
/// Dropped unsent, it goes back.
template <class T>
class Loan {
public:
    Loan(Loan&& other) noexcept
        : publisher_(std::exchange(other.publisher_, nullptr)), loan_(other.loan_) {}
    Loan& operator=(Loan&&) = delete;
    Loan(const Loan&) = delete;
    Loan& operator=(const Loan&) = delete;
    ~Loan() {
        if (publisher_ != nullptr) {
            (void)shmlane_publisher_drop_loan(publisher_, &loan_);
        }
    }

    /// The elements, to write in place.
    std::span<T> span() noexcept { return {static_cast<T*>(loan_.data), loan_.len}; }
    std::size_t size() const noexcept { return loan_.len; }
    T& operator*() noexcept { return *static_cast<T*>(loan_.data); }
    T* operator->() noexcept { return static_cast<T*>(loan_.data); }

private:
    friend class Publisher<T>;
    Loan(shmlane_publisher* publisher, shmlane_loan loan) : publisher_(publisher), loan_(loan) {}

    shmlane_publisher* publisher_;
    shmlane_loan loan_;
};

/// A received sample of T, read in place in shared memory; released when destroyed. Copy
/// out what you keep: its publisher wrote it.
template <class T>
class Sample {
public:
    Sample(Sample&& other) noexcept
        : subscriber_(std::exchange(other.subscriber_, nullptr)), sample_(other.sample_) {}
    Sample& operator=(Sample&&) = delete;
    Sample(const Sample&) = delete;
    Sample& operator=(const Sample&) = delete;
    ~Sample() {
        if (subscriber_ != nullptr) {
            (void)shmlane_subscriber_release(subscriber_, &sample_);
        }
    }

    /// The elements (at least one).
    std::span<const T> span() const noexcept {
        return {static_cast<const T*>(sample_.data), sample_.len};
    }
    std::size_t size() const noexcept { return sample_.len; }
    const T& operator*() const noexcept { return *static_cast<const T*>(sample_.data); }
    const T* operator->() const noexcept { return static_cast<const T*>(sample_.data); }

private:
    friend class Subscriber<T>;
    Sample(shmlane_subscriber* subscriber, shmlane_sample sample)
        : subscriber_(subscriber), sample_(sample) {}

    shmlane_subscriber* subscriber_;
    shmlane_sample sample_;
};

/// A topic's sending end.
template <class T>
class Publisher {
public:
    /// Loans room for `count` elements.
    Loan<T> loan(std::size_t count = 1) {
        shmlane_loan loan;
        detail::check(shmlane_publisher_loan(publisher_.get(), count, &loan));
        return Loan<T>(publisher_.get(), loan);
    }

    /// Publishes a loan of this publisher; returns how many subscribers it was queued for.
    /// The loan is gone afterwards, sent or not (but for one of another publisher: refused,
    /// it stays with its own).
    std::size_t send(Loan<T>&& loan) {
        std::size_t delivered = 0;
        shmlane_error rc = shmlane_publisher_send(publisher_.get(), &loan.loan_, &delivered);
        if (rc != SHMLANE_ERROR_FOREIGN) {
            loan.publisher_ = nullptr;
        }
        detail::check(rc);
        return delivered;
    }

    /// Sends elements by copy; returns how many subscribers they were queued for.
    std::size_t send_copy(std::span<const T> values) {
        std::size_t delivered = 0;
        detail::check(shmlane_publisher_send_copy(publisher_.get(), values.data(),
                                                  values.size_bytes(), &delivered));
        return delivered;
    }
    std::size_t send_copy(const T& value) { return send_copy(std::span<const T>(&value, 1)); }

    /// Subscribers the topic has now.
    std::size_t subscribers() const {
        std::size_t count = 0;
        detail::check(shmlane_publisher_subscribers(publisher_.get(), &count));
        return count;
    }

    /// How long a send waits for a full subscriber under SHMLANE_OVERFLOW_BLOCK.
    void set_block_timeout(std::chrono::nanoseconds timeout) {
        detail::check(shmlane_publisher_set_block_timeout(publisher_.get(), detail::nanos(timeout)));
    }

private:
    template <class>
    friend class Topic;
    explicit Publisher(shmlane_publisher* raw) : publisher_(raw) {}

    detail::Owned<shmlane_publisher, shmlane_publisher_destroy> publisher_;
};

/// A topic's receiving end.
template <class T>
class Subscriber {
public:
    /// The next sample if one is queued, without blocking.
    std::optional<Sample<T>> receive() {
        shmlane_sample sample;
        detail::check(shmlane_subscriber_receive(subscriber_.get(), &sample));
        if (sample.data == nullptr) {
            return std::nullopt;
        }
        return Sample<T>(subscriber_.get(), sample);
    }

    /// Waits with `wait` for the next sample, up to `timeout` (none: no limit); empty if none
    /// came in time.
    std::optional<Sample<T>> receive(Wait wait,
                                     std::optional<std::chrono::nanoseconds> timeout) {
        shmlane_sample sample;
        shmlane_error rc =
            shmlane_subscriber_receive_wait(subscriber_.get(), static_cast<shmlane_wait_strategy>(wait),
                                            detail::nanos(timeout), &sample);
        if (rc == SHMLANE_ERROR_TIMEOUT) {
            return std::nullopt;
        }
        detail::check(rc);
        return Sample<T>(subscriber_.get(), sample);
    }

    /// Samples dropped for this subscriber (evicted before it read them).
    uint64_t drops() const {
        uint64_t count = 0;
        detail::check(shmlane_subscriber_drops(subscriber_.get(), &count));
        return count;
    }

    /// The C handle (to attach it to a WaitSet); still owned by this object.
    shmlane_subscriber* get() const noexcept { return subscriber_.get(); }

private:
    template <class>
    friend class Topic;
    explicit Subscriber(shmlane_subscriber* raw) : subscriber_(raw) {}

    detail::Owned<shmlane_subscriber, shmlane_subscriber_destroy> subscriber_;
};

/// A topic of T. `type_name` is the name every process gives the type (a Rust process: its
/// std::any::type_name); its size and alignment are T's.
template <class T>
class Topic {
    static_assert(std::is_trivially_copyable_v<T>, "a shmlane payload is trivially copyable");
    static_assert(std::is_standard_layout_v<T>, "a shmlane payload has standard layout");

public:
    static Topic create(const Node& node, const std::string& service, const std::string& type_name,
                        uint64_t version = 0, const TopicConfig& config = TopicConfig()) {
        return Topic(shmlane_topic_create, node, service, type_name, version, config);
    }
    static Topic open(const Node& node, const std::string& service, const std::string& type_name,
                      uint64_t version = 0, const TopicConfig& config = TopicConfig()) {
        return Topic(shmlane_topic_open, node, service, type_name, version, config);
    }
    static Topic open_or_create(const Node& node, const std::string& service,
                                const std::string& type_name, uint64_t version = 0,
                                const TopicConfig& config = TopicConfig()) {
        return Topic(shmlane_topic_open_or_create, node, service, type_name, version, config);
    }

    Publisher<T> publisher() const {
        shmlane_publisher* raw = nullptr;
        detail::check(shmlane_publisher_create(topic_.get(), &raw));
        return Publisher<T>(raw);
    }

    Subscriber<T> subscriber() const {
        shmlane_subscriber* raw = nullptr;
        detail::check(shmlane_subscriber_create(topic_.get(), &raw));
        return Subscriber<T>(raw);
    }

private:
    using Opener = shmlane_error (*)(const shmlane_node*, const char*, const shmlane_type*,
                                     const shmlane_topic_config*, shmlane_topic**);

    Topic(Opener opener, const Node& node, const std::string& service, const std::string& type_name,
          uint64_t version, const TopicConfig& config) {
        shmlane_type type{type_name.c_str(), sizeof(T), alignof(T), version};
        shmlane_topic* raw = nullptr;
        detail::check(opener(node.get(), service.c_str(), &type, &config, &raw));
        topic_ = detail::Owned<shmlane_topic, shmlane_topic_destroy>(raw);
    }

    detail::Owned<shmlane_topic, shmlane_topic_destroy> topic_;
};

namespace detail {

/// A request (held by a server) or a response (held by a client) of T, read in place;
/// released by `Release` when destroyed.
template <class T, class Holder, shmlane_error (*Release)(Holder*, shmlane_sample*)>
class Held {
public:
    Held(Holder* holder, shmlane_sample sample) noexcept : holder_(holder), sample_(sample) {}
    Held(Held&& other) noexcept
        : holder_(std::exchange(other.holder_, nullptr)), sample_(other.sample_) {}
    /// Releases what this holds and takes `other`'s.
    Held& operator=(Held&& other) noexcept {
        if (this != &other) {
            release();
            holder_ = std::exchange(other.holder_, nullptr);
            sample_ = other.sample_;
        }
        return *this;
    }
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;
    ~Held() { release(); }

    /// The elements (at least one).
    std::span<const T> span() const noexcept {
        return {static_cast<const T*>(sample_.data), sample_.len};
    }
    std::size_t size() const noexcept { return sample_.len; }
    const T& operator*() const noexcept { return *static_cast<const T*>(sample_.data); }
    const T* operator->() const noexcept { return static_cast<const T*>(sample_.data); }

    /// The C sample (for the calls that take one, such as shmlane_server_respond).
    const shmlane_sample& raw() const noexcept { return sample_; }

private:
    void release() noexcept {
        if (holder_ != nullptr) {
            (void)Release(holder_, &sample_);
            holder_ = nullptr;
        }
    }

    Holder* holder_;
    shmlane_sample sample_;
};

}  // namespace detail

/// A request a server holds, read in place; released when destroyed.
template <class Req>
using Request = detail::Held<Req, shmlane_server, shmlane_server_release>;

/// A response a client holds, read in place; released when destroyed.
template <class Resp>
using Response = detail::Held<Resp, shmlane_client, shmlane_client_release>;

/// An rpc service's server (one at a time): takes requests, answers each to its client.
template <class Req, class Resp>
class Server {
public:
    /// The next request if one is queued, without blocking.
    std::optional<Request<Req>> receive() {
        shmlane_sample request;
        detail::check(shmlane_server_receive(server_.get(), &request));
        if (request.data == nullptr) {
            return std::nullopt;
        }
        return std::optional<Request<Req>>(std::in_place, server_.get(), request);
    }

    /// Waits with `wait` for the next request, up to `timeout` (none: no limit); empty if
    /// none came in time.
    std::optional<Request<Req>> receive(Wait wait,
                                        std::optional<std::chrono::nanoseconds> timeout) {
        shmlane_sample request;
        shmlane_error rc = shmlane_server_receive_wait(
            server_.get(), static_cast<shmlane_wait_strategy>(wait), detail::nanos(timeout),
            &request);
        if (rc == SHMLANE_ERROR_TIMEOUT) {
            return std::nullopt;
        }
        detail::check(rc);
        return std::optional<Request<Req>>(std::in_place, server_.get(), request);
    }

    /// Answers `request` (to the client that sent it) with `values` by copy.
    void respond(const Request<Req>& request, std::span<const Resp> values) {
        detail::check(shmlane_server_respond(server_.get(), &request.raw(), values.data(),
                                             values.size_bytes()));
    }
    void respond(const Request<Req>& request, const Resp& value) {
        respond(request, std::span<const Resp>(&value, 1));
    }

    /// The C handle (to attach it to a WaitSet); still owned by this object.
    shmlane_server* get() const noexcept { return server_.get(); }

private:
    template <class, class>
    friend class Rpc;
    explicit Server(shmlane_server* raw) : server_(raw) {}

    detail::Owned<shmlane_server, shmlane_server_destroy> server_;
};

/// An rpc service's client: sends requests and takes the responses to them (one awaited at
/// a time).
template <class Req, class Resp>
class Client {
public:
    /// A request sent and not yet answered.
    struct Pending {
        uint64_t id;
    };

    /// Sends `values` as a request (waiting up to 1 s for room at the server).
    Pending send(std::span<const Req> values) {
        Pending pending{0};
        detail::check(
            shmlane_client_send(client_.get(), values.data(), values.size_bytes(), &pending.id));
        return pending;
    }
    Pending send(const Req& value) { return send(std::span<const Req>(&value, 1)); }

    /// The response to `pending` if it has come, without blocking.
    std::optional<Response<Resp>> receive(Pending pending) {
        shmlane_sample response;
        detail::check(shmlane_client_receive(client_.get(), pending.id, &response));
        if (response.data == nullptr) {
            return std::nullopt;
        }
        return std::optional<Response<Resp>>(std::in_place, client_.get(), response);
    }

    /// Waits with `wait` for the response to `pending`, up to `timeout` (none: no limit);
    /// empty if it did not come in time (the request stays awaited).
    std::optional<Response<Resp>> receive(Pending pending, Wait wait,
                                          std::optional<std::chrono::nanoseconds> timeout) {
        shmlane_sample response;
        shmlane_error rc = shmlane_client_receive_wait(
            client_.get(), pending.id, static_cast<shmlane_wait_strategy>(wait),
            detail::nanos(timeout), &response);
        if (rc == SHMLANE_ERROR_TIMEOUT) {
            return std::nullopt;
        }
        detail::check(rc);
        return std::optional<Response<Resp>>(std::in_place, client_.get(), response);
    }

    /// Sends `value` and waits for its response, up to `timeout`; empty if it did not come
    /// in time.
    std::optional<Response<Resp>> call(const Req& value, Wait wait,
                                       std::optional<std::chrono::nanoseconds> timeout) {
        shmlane_sample response;
        shmlane_error rc =
            shmlane_client_call(client_.get(), &value, sizeof value,
                                static_cast<shmlane_wait_strategy>(wait), detail::nanos(timeout),
                                &response);
        if (rc == SHMLANE_ERROR_TIMEOUT) {
            return std::nullopt;
        }
        detail::check(rc);
        return std::optional<Response<Resp>>(std::in_place, client_.get(), response);
    }

private:
    template <class, class>
    friend class Rpc;
    explicit Client(shmlane_client* raw) : client_(raw) {}

public:
    /// The C handle (to attach it to a WaitSet); still owned by this object.
    shmlane_client* get() const noexcept { return client_.get(); }

private:

    detail::Owned<shmlane_client, shmlane_client_destroy> client_;
};

/// A request/response service of Req requests and Resp responses, each type named as every
/// process names it (a Rust process: its std::any::type_name).
template <class Req, class Resp>
class Rpc {
    static_assert(std::is_trivially_copyable_v<Req> && std::is_trivially_copyable_v<Resp>,
                  "shmlane payloads are trivially copyable");
    static_assert(std::is_standard_layout_v<Req> && std::is_standard_layout_v<Resp>,
                  "shmlane payloads have standard layout");

public:
    /// Opens `service`, creating it with these types (and `max_clients`, `capacity`) if it
    /// does not exist.
    Rpc(const Node& node, const std::string& service, const std::string& request_type,
        const std::string& response_type, uint64_t version = 0, uint32_t max_clients = 8,
        uint32_t capacity = 64) {
        shmlane_type request{request_type.c_str(), sizeof(Req), alignof(Req), version};
        shmlane_type response{response_type.c_str(), sizeof(Resp), alignof(Resp), version};
        shmlane_rpc_config config{max_clients, capacity};
        shmlane_rpc* raw = nullptr;
        detail::check(shmlane_rpc_open_or_create(node.get(), service.c_str(), &request,
                                                 &response, &config, &raw));
        rpc_ = detail::Owned<shmlane_rpc, shmlane_rpc_destroy>(raw);
    }

    Server<Req, Resp> server() const {
        shmlane_server* raw = nullptr;
        detail::check(shmlane_server_create(rpc_.get(), &raw));
        return Server<Req, Resp>(raw);
    }

    Client<Req, Resp> client() const {
        shmlane_client* raw = nullptr;
        detail::check(shmlane_client_create(rpc_.get(), &raw));
        return Client<Req, Resp>(raw);
    }

private:
    detail::Owned<shmlane_rpc, shmlane_rpc_destroy> rpc_;
};

/// Signals event ids (may be shared by threads).
class Notifier {
public:
    /// Signals `id` to every listener; returns how many listener slots are held.
    std::size_t notify(uint32_t id) const {
        std::size_t listeners = 0;
        detail::check(shmlane_notifier_notify(notifier_.get(), id, &listeners));
        return listeners;
    }

private:
    friend class Event;
    explicit Notifier(shmlane_notifier* raw) : notifier_(raw) {}
    detail::Owned<shmlane_notifier, shmlane_notifier_destroy> notifier_;
};

/// Receives event ids.
class Listener {
public:
    /// Every pending id, ascending, without blocking.
    std::vector<uint32_t> try_take() {
        std::vector<uint32_t> ids;
        uint32_t buffer[64];
        std::size_t count = 0;
        do {
            detail::check(shmlane_listener_try_take(listener_.get(), buffer, 64, &count));
            ids.insert(ids.end(), buffer, buffer + count);
        } while (count == 64);
        return ids;
    }

    /// Waits with `wait` until an id is pending, up to `timeout`; takes them all (empty: none
    /// came in time).
    std::vector<uint32_t> wait(Wait wait, std::optional<std::chrono::nanoseconds> timeout) {
        uint32_t buffer[64];
        std::size_t count = 0;
        shmlane_error rc = shmlane_listener_wait(listener_.get(), static_cast<shmlane_wait_strategy>(wait),
                                                 detail::nanos(timeout), buffer, 64, &count);
        if (rc == SHMLANE_ERROR_TIMEOUT) {
            return {};
        }
        detail::check(rc);
        std::vector<uint32_t> ids(buffer, buffer + count);
        std::vector<uint32_t> rest = try_take();
        ids.insert(ids.end(), rest.begin(), rest.end());
        return ids;
    }

    /// The C handle (to attach it to a WaitSet); still owned by this object.
    shmlane_listener* get() const noexcept { return listener_.get(); }

private:
    friend class Event;
    explicit Listener(shmlane_listener* raw) : listener_(raw) {}
    detail::Owned<shmlane_listener, shmlane_listener_destroy> listener_;
};

/// An event service opened by name.
class Event {
public:
    /// Opens `service`, creating it with `max_event_id` and `max_listeners` if needed.
    Event(const Node& node, const std::string& service, uint32_t max_event_id = 64,
          uint32_t max_listeners = 8) {
        shmlane_event_config config{max_listeners, max_event_id};
        shmlane_event* raw = nullptr;
        detail::check(shmlane_event_open_or_create(node.get(), service.c_str(), &config, &raw));
        event_ = detail::Owned<shmlane_event, shmlane_event_destroy>(raw);
    }

    Notifier notifier() const {
        shmlane_notifier* raw = nullptr;
        detail::check(shmlane_notifier_create(event_.get(), &raw));
        return Notifier(raw);
    }

    Listener listener() const {
        shmlane_listener* raw = nullptr;
        detail::check(shmlane_listener_create(event_.get(), &raw));
        return Listener(raw);
    }

private:
    detail::Owned<shmlane_event, shmlane_event_destroy> event_;
};

/// Waits on many subscribers, listeners, rpc servers and clients at once, on deadlines and on
/// intervals (shmlane_waitset_*). Used by the thread that created it, the one that uses its
/// sources. Destroy (or detach from) it before its sources: a source attached to a wait set
/// refuses to be destroyed, and its wrapper then leaks it.
class WaitSet {
public:
    /// What a wait found about an attachment.
    enum class Kind : shmlane_ready_kind {
        /// Something is queued for the source (it stays ready until taken).
        Data = SHMLANE_READY_DATA,
        /// The source's deadline passed with nothing from it.
        Missed = SHMLANE_READY_MISSED,
        /// The interval's period came round.
        Tick = SHMLANE_READY_TICK,
    };

    /// One ready attachment: the id its attach call returned, and what it is ready with.
    struct Ready {
        uint64_t id;
        Kind kind;
        bool operator==(const Ready&) const = default;
    };

    WaitSet() {
        shmlane_waitset* raw = nullptr;
        detail::check(shmlane_waitset_create(&raw));
        set_ = detail::Owned<shmlane_waitset, shmlane_waitset_destroy>(raw);
    }

    /// Attaches a subscriber, with a deadline (Kind::Missed when silent that long) or none;
    /// returns the attachment's id.
    template <class T>
    uint64_t attach(const Subscriber<T>& subscriber,
                    std::optional<std::chrono::nanoseconds> deadline = std::nullopt) {
        return attached(shmlane_waitset_attach_subscriber(set_.get(), subscriber.get(),
                                                          detail::nanos(deadline), &id_));
    }
    /// Attaches a listener (ready while an event id is pending).
    uint64_t attach(const Listener& listener,
                    std::optional<std::chrono::nanoseconds> deadline = std::nullopt) {
        return attached(shmlane_waitset_attach_listener(set_.get(), listener.get(),
                                                        detail::nanos(deadline), &id_));
    }
    /// Attaches an rpc server (ready while a request is queued).
    template <class Req, class Resp>
    uint64_t attach(const Server<Req, Resp>& server,
                    std::optional<std::chrono::nanoseconds> deadline = std::nullopt) {
        return attached(shmlane_waitset_attach_server(set_.get(), server.get(),
                                                      detail::nanos(deadline), &id_));
    }
    /// Attaches an rpc client (ready while a response is queued).
    template <class Req, class Resp>
    uint64_t attach(const Client<Req, Resp>& client,
                    std::optional<std::chrono::nanoseconds> deadline = std::nullopt) {
        return attached(shmlane_waitset_attach_client(set_.get(), client.get(),
                                                      detail::nanos(deadline), &id_));
    }
    /// Attaches an interval: Kind::Tick every `every`.
    uint64_t attach_interval(std::chrono::nanoseconds every) {
        return attached(shmlane_waitset_attach_interval(set_.get(), detail::nanos(every), &id_));
    }

    /// Detaches attachment `id` (an Error if it is not attached).
    void detach(uint64_t id) { detail::check(shmlane_waitset_detach(set_.get(), id)); }

    /// Attachments now.
    std::size_t size() const {
        std::size_t count = 0;
        detail::check(shmlane_waitset_len(set_.get(), &count));
        return count;
    }

    /// Waits with `wait` until something is ready, up to `timeout` (none: no limit); returns
    /// what is (up to 64; the rest comes with the next wait), empty if nothing was in time.
    std::vector<Ready> wait(Wait wait, std::optional<std::chrono::nanoseconds> timeout) {
        shmlane_ready buffer[64];
        std::size_t count = 0;
        shmlane_error rc = shmlane_waitset_wait(set_.get(), static_cast<shmlane_wait_strategy>(wait),
                                                detail::nanos(timeout), buffer, 64, &count);
        if (rc == SHMLANE_ERROR_TIMEOUT) {
            return {};
        }
        detail::check(rc);
        std::vector<Ready> ready;
        ready.reserve(count);
        for (std::size_t i = 0; i < count; i++) {
            ready.push_back(Ready{buffer[i].id, static_cast<Kind>(buffer[i].kind)});
        }
        return ready;
    }

private:
    uint64_t attached(shmlane_error rc) {
        detail::check(rc);
        return id_;
    }

    detail::Owned<shmlane_waitset, shmlane_waitset_destroy> set_;
    uint64_t id_ = 0;
};

}  // namespace shmlane

#endif  // SHMLANE_HPP
