// strata::Error and the one check mechanism used for every caller- or file-supplied value.
// STRATA_CHECK is active in release builds too; `assert` is kept for internal invariants only.
// An Error may carry a module path ("layer2.0.conv1"); parents add their child's name as the
// error travels up (Module::run_child), so messages read "layer2.0.conv1: expected 64 ...".
#pragma once
#include <strata/export.h>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>

namespace strata {

class STRATA_API Error : public std::runtime_error {
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

// Inside a catch block: rethrows the exception in flight as seen from the parent that owns the
// child `name`. An Error gains `name` in its path. std::bad_alloc (a kernel's scratch vector or a
// packed weight that could not be allocated) becomes an Error too, so a failed forward call only
// ever throws strata::Error. Anything else propagates unchanged.
//   try { return child.forward(x, options); } catch (...) { rethrow_within(name); }
[[noreturn]] inline void rethrow_within(const std::string& name) {
    try {
        throw;
    } catch (const Error& e) {
        throw e.within(name);
    } catch (const std::bad_alloc&) {
        throw Error("out of memory: an allocation failed; use a smaller batch or input size", name);
    }
}

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
