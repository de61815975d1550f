#include "relu.h"

#include "../kernels/elementwise.h"

namespace strata {

Tensor ReLU::forward(const Tensor& input, const RunOptions& options) const {
    STRATA_CHECK(input.defined() && input.dtype() == DType::Float32,
                 "ReLU expects a float32 tensor");
    const Tensor x = input.contiguous();
    Tensor y = Tensor::empty(x.shape());
    switch (options.backend) {
        case Backend::Reference:
            reference::relu(x.data<float>(), y.data<float>(), x.numel());
            break;
        case Backend::Cpu:
            cpu::relu(x.data<float>(), y.data<float>(), x.numel(), options.threads());
            break;
    }
    return y;
}

}  // namespace strata

namespace strata {

Tensor add_relu(const Tensor& a_in, const Tensor& b_in, const RunOptions& options) {
    STRATA_CHECK(a_in.shape() == b_in.shape(), "residual add of shapes ", shape_str(a_in.shape()),
                 " and ", shape_str(b_in.shape()), " (strata does not broadcast)");
    const Tensor a = a_in.contiguous(), b = b_in.contiguous();
    Tensor y = Tensor::empty(a.shape());
    switch (options.backend) {
        case Backend::Reference:
            reference::add(a.data<float>(), b.data<float>(), y.data<float>(), a.numel(), true);
            break;
        case Backend::Cpu:
            cpu::add(a.data<float>(), b.data<float>(), y.data<float>(), a.numel(), true,
                     options.threads());
            break;
    }
    return y;
}

}  // namespace strata
