// load_for_request: a strict load of the children a getter keeps (see load_for_request.h).
#include "load_for_request.h"

#include <set>
#include <sstream>

namespace strata {

namespace {

const std::string kNumBatchesTracked = "num_batches_tracked";

bool is_num_batches_tracked(const std::string& key) {
    return key == kNumBatchesTracked ||
           (key.size() > kNumBatchesTracked.size() &&
            key.compare(key.size() - kNumBatchesTracked.size() - 1, std::string::npos, "." + kNumBatchesTracked) == 0);
}

// The child a key belongs to ("" for the model's own parameters and buffers).
std::string child_of(const std::string& key) {
    const size_t dot = key.find('.');
    return dot == std::string::npos ? "" : key.substr(0, dot);
}

struct Plan {
    StateDict to_load;  // file tensors for kept children, under the model's keys
    RequestLoadSummary summary;
    std::vector<std::string> missing, unexpected, mismatched;
    std::string error;
};

Plan plan_for(const Module& model, const StateDict& state, const std::vector<std::string>& kept_children) {
    std::set<std::string> kept;
    for (const auto& name : kept_children) {
        STRATA_CHECK(model.named_children().contains(name), "load_for_request: '", name, "' is not a child of ",
                     model.type_name(), "; children: ", [&] {
                         std::string s;
                         for (const auto& c : model.named_children().keys()) s += (s.empty() ? "" : ", ") + c;
                         return s;
                     }());
        kept.insert(name);
    }
    kept.insert("");  // the model's own tensors, if it has any, always load
    Plan plan;
    const StateDict mine = model.state_dict();
    for (const auto& [key, dst] : mine) {
        const bool required = kept.count(child_of(key)) != 0;
        const Tensor* src = state.find(key);
        if (!required) {
            if (src) plan.summary.not_loaded.push_back(key);
            continue;
        }
        if (!src) {
            if (is_num_batches_tracked(key)) plan.summary.kept_default.push_back(key);
            else plan.missing.push_back(key);
        } else if (src->shape() != dst.shape()) {
            plan.mismatched.push_back(key + " (expected " + shape_str(dst.shape()) + ", found " +
                                      shape_str(src->shape()) + ")");
        } else if ((src->dtype() == DType::Int64) != (dst.dtype() == DType::Int64)) {
            plan.mismatched.push_back(key + " (expected " + dtype_name(dst.dtype()) + ", found " +
                                      dtype_name(src->dtype()) + ")");
        } else {
            plan.to_load.insert(key, *src);
        }
    }
    for (const auto& item : state)
        if (!mine.contains(item.first)) plan.unexpected.push_back(item.first);
    if (!plan.missing.empty() || !plan.unexpected.empty() || !plan.mismatched.empty()) {
        std::ostringstream os;
        os << "error(s) in loading state_dict for " << model.type_name() << " (children run: ";
        for (size_t i = 0; i < kept_children.size(); ++i) os << (i ? ", " : "") << kept_children[i];
        os << "):";
        auto list = [&os](const char* what, const std::vector<std::string>& keys) {
            if (keys.empty()) return;
            os << " " << what << " (" << keys.size() << "): ";
            for (size_t i = 0; i < keys.size(); ++i) os << (i ? ", " : "") << keys[i];
            os << ";";
        };
        list("missing keys", plan.missing);
        list("unexpected keys", plan.unexpected);
        list("shape mismatch", plan.mismatched);
        plan.error = os.str();
        plan.error.pop_back();  // the last ';'
    }
    plan.summary.loaded = plan.to_load.size();
    return plan;
}

}  // namespace

std::string check_for_request(const Module& model, const StateDict& state,
                              const std::vector<std::string>& kept_children) {
    return plan_for(model, state, kept_children).error;
}

RequestLoadSummary load_for_request(Module& model, const StateDict& state,
                                    const std::vector<std::string>& kept_children, LoadMode mode) {
    Plan plan = plan_for(model, state, kept_children);
    if (!plan.error.empty()) throw Error(plan.error);
    // Everything is checked: a non-strict load of exactly the kept keys does the copying (or
    // sharing) and moves the weights' versions, as a strict load would.
    model.load_state_dict(plan.to_load, /*strict=*/false, mode);
    return plan.summary;
}

std::vector<std::string> required_keys(const Module& model, const std::vector<std::string>& kept_children) {
    const std::set<std::string> kept(kept_children.begin(), kept_children.end());
    std::vector<std::string> out;
    for (const auto& item : model.state_dict()) {
        const std::string child = child_of(item.first);
        if ((child.empty() || kept.count(child)) && !is_num_batches_tracked(item.first)) out.push_back(item.first);
    }
    return out;
}

}  // namespace strata
