// MaxPool2d with torch.nn.MaxPool2d's arguments (stride defaults to kernel_size).
#pragma once
#include <strata/export.h>
#include "../core/module.h"
#include "../kernels/max_pool2d.h"
#include "size2.h"

namespace strata {

class STRATA_API MaxPool2d : public Module {
public:
    // stride 0 means "same as kernel_size", torch's stride=None.
    explicit MaxPool2d(Size2 kernel_size, Size2 stride = 0, Size2 padding = 0, Size2 dilation = 1,
                       bool ceil_mode = false);
    std::string type_name() const override { return "MaxPool2d"; }
    std::string extra_repr() const override;
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;
    Shape output_shape(const Shape& input) const override;
    int64_t spatial_stride() const override { return stride_.h; }

private:
    MaxPool2dParams params_for(const Shape& input) const;  // fails when the input is too small
    Size2 kernel_size_, stride_, padding_, dilation_;
    bool ceil_mode_;
};

}  // namespace strata
