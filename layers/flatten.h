// Flatten (start_dim=1, end_dim=-1 as in torch.nn.Flatten). A view: no data moves (a
// non-contiguous input is made contiguous first).
#pragma once
#include <strata/export.h>
#include "../core/module.h"

namespace strata {

// Merges dimensions start_dim..end_dim of a tensor into one.
STRATA_API Tensor flatten(const Tensor& x, int64_t start_dim = 1, int64_t end_dim = -1);
// The shape flatten() gives a tensor of shape `in`.
STRATA_API Shape flatten_shape(const Shape& in, int64_t start_dim = 1, int64_t end_dim = -1);

class STRATA_API Flatten : public Module {
public:
    explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
        : start_dim_(start_dim), end_dim_(end_dim) {}
    std::string type_name() const override { return "Flatten"; }
    std::string extra_repr() const override {
        return "start_dim=" + std::to_string(start_dim_) + ", end_dim=" + std::to_string(end_dim_);
    }
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;
    Shape output_shape(const Shape& input) const override;

private:
    int64_t start_dim_, end_dim_;
};

}  // namespace strata
