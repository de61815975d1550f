// strata::Error and the one check mechanism used for every caller- or file-supplied value.
// STRATA_CHECK is active in release builds too; `assert` is kept for internal invariants only.
// An Error may carry a module path ("layer2.0.conv1"); parents add their child's name as the
// error travels up (Module::run_child), so messages read "layer2.0.conv1: expected 64 ...".
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace strata {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& detail, const std::string& path = "")
        : std::runtime_error(path.empty() ? detail : path + ": " + detail),
          detail_(detail), path_(path) {}

    const std::string& detail() const { return detail_; }
    const std::string& path() const { return path_; }

    // The same error seen from the parent that owns the child `name`.
    Error within(const std::string& name) const {
        return Error(detail_, path_.empty() ? name : name + "." + path_);
    }

private:
    std::string detail_;
    std::string path_;
};

namespace detail {
// Builds a message from any streamable pieces: error_message("expected ", 3, " got ", 4).
template <typename... Parts>
std::string error_message(const Parts&... parts) {
    std::ostringstream os;
    (os << ... << parts);
    return os.str();
}
}  // namespace detail

}  // namespace strata

// STRATA_CHECK(cond, "expected ", c, " input channels, got ", x);
#define STRATA_CHECK(cond, ...)                                                         \
    do {                                                                                \
        if (!(cond)) throw ::strata::Error(::strata::detail::error_message(__VA_ARGS__)); \
    } while (0)

#define STRATA_FAIL(...) throw ::strata::Error(::strata::detail::error_message(__VA_ARGS__))
