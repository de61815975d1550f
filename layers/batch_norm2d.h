// BatchNorm2d in inference mode, with torch.nn.BatchNorm2d's arguments. Parameters `weight`,
// `bias` [C]; buffers `running_mean`, `running_var` [C] and `num_batches_tracked` (int64, []).
#pragma once
#include <strata/export.h>
#include "../core/module.h"

namespace strata {

class STRATA_API BatchNorm2d : public Module {
public:
    explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, double momentum = 0.1,
                         bool affine = true, bool track_running_stats = true);

    std::string type_name() const override { return "BatchNorm2d"; }
    std::string extra_repr() const override;
    Tensor forward(const Tensor& x, const RunOptions& options = {}) const override;
    Shape output_shape(const Shape& input) const override;

    int64_t num_features() const { return num_features_; }
    double eps() const { return eps_; }
    const Tensor& weight() const { return weight_; }
    const Tensor& bias() const { return bias_; }
    const Tensor& running_mean() const { return running_mean_; }
    const Tensor& running_var() const { return running_var_; }

private:
    int64_t num_features_;
    double eps_, momentum_;
    Tensor weight_, bias_, running_mean_, running_var_;
};

}  // namespace strata
