// Linear with torch.nn.Linear's arguments: weight [out, in], bias [out]; input [..., in].
#pragma once
#include <strata/export.h>
#include "../core/module.h"

namespace strata {

class STRATA_API Linear : public Module {
public:
    Linear(int64_t in_features, int64_t out_features, bool bias = true);
    std::string type_name() const override { return "Linear"; }
    std::string extra_repr() const override;
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;
    Shape output_shape(const Shape& input) const override;
    int64_t spatial_stride() const override { return 0; }

private:
    int64_t in_features_, out_features_;
    Tensor weight_, bias_;
};

}  // namespace strata
