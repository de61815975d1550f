// Linear with torch.nn.Linear's arguments: weight [out, in], bias [out]; input [..., in].
#pragma once
#include "../core/module.h"

namespace strata {

class Linear : public Module {
public:
    Linear(int64_t in_features, int64_t out_features, bool bias = true);
    std::string type_name() const override { return "Linear"; }
    std::string extra_repr() const override;
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;

private:
    int64_t in_features_, out_features_;
    Tensor weight_, bias_;
};

}  // namespace strata
