// ReLU. `inplace` is accepted for torch compatibility and has no effect: strata never writes
// into its input, so an output returned by the getter is never overwritten by a later ReLU
// (torchvision's inplace ReLU does overwrite bn1's output; see docs/GETTER.md).
#pragma once
#include <strata/export.h>
#include "../core/module.h"

namespace strata {

class STRATA_API ReLU : public Module {
public:
    explicit ReLU(bool inplace = false) : inplace_(inplace) {}
    std::string type_name() const override { return "ReLU"; }
    std::string extra_repr() const override { return inplace_ ? "inplace=True" : ""; }
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;
    Shape output_shape(const Shape& input) const override;

private:
    bool inplace_;
};

}  // namespace strata

namespace strata {
// max(x, 0) on the backend's device (what ReLU::forward runs).
STRATA_API Tensor relu(const Tensor& x, const RunOptions& options);
// relu(a + b): the join at the end of a residual block. Shapes must be equal (no broadcasting).
STRATA_API Tensor add_relu(const Tensor& a, const Tensor& b, const RunOptions& options);
// a + b, the same without the ReLU.
STRATA_API Tensor add(const Tensor& a, const Tensor& b, const RunOptions& options);
}  // namespace strata
