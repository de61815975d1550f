// Module tree: registration, traversal, state_dict and the strict loader.
#include "module.h"

#include <sstream>

#include "derived.h"

namespace strata {

namespace {
// Versions come from one counter, so a new version is greater than every version handed out
// before: a value derived from several modules can be tagged with the largest of their versions.
std::atomic<uint64_t> g_next_version{1};
std::atomic<uint64_t> g_derived_builds{0};
}  // namespace

uint64_t Module::next_weights_version() { return g_next_version.fetch_add(1, std::memory_order_acq_rel); }

void Module::notify_weights_changed() {
    weights_version_.store(next_weights_version(), std::memory_order_release);
    for (const auto& item : children_) item.second->notify_weights_changed();
}

uint64_t derived_weight_builds() { return g_derived_builds.load(std::memory_order_relaxed); }
void count_derived_build() { g_derived_builds.fetch_add(1, std::memory_order_relaxed); }

Tensor Module::forward(const Tensor&, const RunOptions&) const {
    STRATA_FAIL(type_name(), " has no forward of its own; call its children");
}

Module::InputAdapter Module::child_input_adapter(const std::string&) const { return nullptr; }

Shape Module::output_shape(const Shape&) const {
    throw UnknownShape(type_name() + " has no shape inference of its own (Module::output_shape)");
}

int Module::trace(Graph& graph, const std::string& path, int x) const {
    if (children_.empty()) return graph.call(*this, path, x);
    for (const auto& [name, child] : children_) {
        STRATA_CHECK(!child_input_adapter(name), type_name(), " runs code of its own before '", name,
                     "' that cannot be traced; override Module::trace to name its nodes");
        x = child->trace(graph, join_path(path, name), x);
    }
    return x;
}

namespace {
void check_name(const std::string& kind, const std::string& name) {
    STRATA_CHECK(!name.empty(), kind, " name can't be empty");
    STRATA_CHECK(name.find('.') == std::string::npos, kind, " name can't contain \".\", got '",
                 name, "'");
}
}  // namespace

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
    check_name("module", name);
    STRATA_CHECK(module != nullptr, "register_module('", name, "'): null module");
    STRATA_CHECK(!parameters_.contains(name) && !buffers_.contains(name), "'", name,
                 "' is already a parameter or buffer");
    children_.insert(name, std::move(module));
}

Tensor Module::register_parameter(const std::string& name, Tensor tensor) {
    check_name("parameter", name);
    STRATA_CHECK(!children_.contains(name) && !buffers_.contains(name), "'", name,
                 "' is already a module or buffer");
    parameters_.insert(name, tensor);
    return tensor;
}

Tensor Module::register_buffer(const std::string& name, Tensor tensor) {
    check_name("buffer", name);
    STRATA_CHECK(!children_.contains(name) && !parameters_.contains(name), "'", name,
                 "' is already a module or parameter");
    buffers_.insert(name, tensor);
    return tensor;
}

std::shared_ptr<Module> Module::child(const std::string& name) const {
    const auto* c = children_.find(name);
    STRATA_CHECK(c != nullptr, type_name(), " has no child '", name, "'");
    return *c;
}

std::vector<std::pair<std::string, std::shared_ptr<const Module>>> Module::named_modules() const {
    std::vector<std::pair<std::string, std::shared_ptr<const Module>>> out;
    // The root is reported by a non-owning pointer: the caller already holds it.
    out.emplace_back("", std::shared_ptr<const Module>(std::shared_ptr<const Module>(), this));
    for (const auto& [name, child] : children_) {
        for (auto& [sub, m] : child->named_modules()) {
            if (sub.empty()) out.emplace_back(name, child);
            else out.emplace_back(name + "." + sub, m);
        }
    }
    return out;
}

void Module::collect_state(const std::string& prefix,
                           std::vector<std::pair<std::string, Tensor>>& out, bool parameters,
                           bool buffers) const {
    if (parameters)
        for (const auto& [name, t] : parameters_) out.emplace_back(prefix + name, t);
    if (buffers)
        for (const auto& [name, t] : buffers_) out.emplace_back(prefix + name, t);
    for (const auto& [name, child] : children_)
        child->collect_state(prefix + name + ".", out, parameters, buffers);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
    std::vector<std::pair<std::string, Tensor>> out;
    collect_state("", out, true, false);
    return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
    std::vector<std::pair<std::string, Tensor>> out;
    collect_state("", out, false, true);
    return out;
}

int64_t Module::num_parameters() const {
    int64_t n = 0;
    for (const auto& p : named_parameters()) n += p.second.numel();
    return n;
}

StateDict Module::state_dict() const {
    std::vector<std::pair<std::string, Tensor>> items;
    collect_state("", items, true, true);
    StateDict out;
    for (auto& [k, t] : items) out.insert(k, t);
    return out;
}

namespace {

// Whether `dst` can take `src`'s memory instead of a copy of it (LoadMode::Share).
bool can_share(const Tensor& dst, const Tensor& src) {
    return src.dtype() == dst.dtype() && src.dtype() == DType::Float32 && src.device() == dst.device() &&
           src.is_contiguous() && reinterpret_cast<uintptr_t>(src.raw_data()) % alignof(float) == 0 &&
           dst.byte_offset() == 0 && dst.nbytes() == dst.storage()->nbytes() && dst.is_contiguous() &&
           src.storage() != dst.storage();
}

}  // namespace

void Module::load_state_dict(const StateDict& state, bool strict, LoadMode mode) {
    const StateDict mine = state_dict();
    std::vector<std::string> missing, unexpected, mismatched;
    for (const auto& [key, dst] : mine) {
        const Tensor* src = state.find(key);
        if (!src) {
            missing.push_back(key);
        } else if (src->shape() != dst.shape()) {
            mismatched.push_back(key + " (expected " + shape_str(dst.shape()) + ", found " +
                                 shape_str(src->shape()) + ")");
        } else if ((src->dtype() == DType::Int64) != (dst.dtype() == DType::Int64)) {
            mismatched.push_back(key + " (expected " + dtype_name(dst.dtype()) + ", found " +
                                 dtype_name(src->dtype()) + ")");
        }
    }
    for (const auto& item : state)
        if (!mine.contains(item.first)) unexpected.push_back(item.first);

    const bool fail = !mismatched.empty() || (strict && (!missing.empty() || !unexpected.empty()));
    if (fail) {
        std::ostringstream os;
        os << "error(s) in loading state_dict for " << type_name() << ":";
        // The count and the first 20 of each kind: one line stays readable when a file has
        // 200,000 unexpected keys (it was 1.7 MB). Keys are cut at 200 bytes.
        constexpr size_t kListed = 20, kKeyChars = 200;
        auto list = [&os](const char* what, const std::vector<std::string>& keys) {
            if (keys.empty()) return;
            os << " " << what << " (" << keys.size() << "): ";
            for (size_t i = 0; i < keys.size() && i < kListed; ++i)
                os << (i ? ", " : "") << (keys[i].size() <= kKeyChars ? keys[i] : keys[i].substr(0, kKeyChars) + "...");
            if (keys.size() > kListed) os << ", ... and " << keys.size() - kListed << " more";
            os << ";";
        };
        if (strict) list("missing keys", missing);
        if (strict) list("unexpected keys", unexpected);
        list("shape mismatch", mismatched);
        std::string msg = os.str();
        if (msg.back() == ';') msg.pop_back();
        throw Error(msg);
    }
    for (const auto& [key, dst] : mine) {
        const Tensor* src = state.find(key);
        if (!src) continue;
        if (mode == LoadMode::Share && can_share(dst, *src)) {
            dst.storage()->share(src->storage(), src->byte_offset());
        } else {
            dst.storage()->make_private();  // it may hold another module's (shared) bytes
            Tensor(dst).copy_from(*src);
        }
    }
    notify_weights_changed();
}

Module& Module::to(Device device) {
    for (auto& item : state_dict()) item.second.storage()->move_to(device);
    notify_weights_changed();
    return *this;
}

Tensor Module::run_child(const std::string& name, const Module& child, const Tensor& x,
                         const RunOptions& options) const {
    try {
        return child.forward(x, options);
    } catch (...) {
        rethrow_within(name);
    }
}

std::string Module::repr() const {
    std::ostringstream os;
    os << type_name() << "(";
    if (children_.empty()) {
        os << extra_repr() << ")";
        return os.str();
    }
    const std::string extra = extra_repr();
    if (!extra.empty()) os << "\n  " << extra;
    for (const auto& [name, child] : children_) {
        std::string sub = child->repr();
        std::string indented;
        for (char c : sub) {
            indented += c;
            if (c == '\n') indented += "  ";
        }
        os << "\n  (" << name << "): " << indented;
    }
    os << "\n)";
    return os.str();
}

}  // namespace strata
