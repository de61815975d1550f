// AdaptiveAvgPool2d with torch.nn.AdaptiveAvgPool2d's output_size.
#pragma once
#include <strata/export.h>
#include "../core/module.h"
#include "size2.h"

namespace strata {

class STRATA_API AdaptiveAvgPool2d : public Module {
public:
    explicit AdaptiveAvgPool2d(Size2 output_size);
    std::string type_name() const override { return "AdaptiveAvgPool2d"; }
    std::string extra_repr() const override;
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;
    Shape output_shape(const Shape& input) const override;
    int64_t spatial_stride() const override { return 0; }

private:
    Size2 output_size_;
};

}  // namespace strata
