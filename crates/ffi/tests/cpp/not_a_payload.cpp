// Must not compile: a std::string is not trivially copyable, so it cannot be a payload.
#include <string>

#include "shmlane.hpp"

int main() {
    shmlane::Node node("never-run");
    auto topic = shmlane::Topic<std::string>::open(node, "strings", "std::string");
    return 0;
}
