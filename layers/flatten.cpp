#include "flatten.h"

namespace strata {

Tensor flatten(const Tensor& input, int64_t start_dim, int64_t end_dim) {
    STRATA_CHECK(input.defined(), "flatten of an undefined tensor");
    const int64_t r = input.dim() == 0 ? 1 : input.dim();
    const int64_t s = start_dim < 0 ? start_dim + r : start_dim;
    const int64_t e = end_dim < 0 ? end_dim + r : end_dim;
    STRATA_CHECK(s >= 0 && s < r && e >= 0 && e < r && s <= e, "flatten(start_dim=", start_dim,
                 ", end_dim=", end_dim, ") does not fit a tensor of shape ",
                 shape_str(input.shape()));
    if (input.dim() == 0) return input.contiguous().view({1});
    Shape shape;
    for (int64_t d = 0; d < s; ++d) shape.push_back(input.size(d));
    int64_t merged = 1;
    for (int64_t d = s; d <= e; ++d) merged *= input.size(d);
    shape.push_back(merged);
    for (int64_t d = e + 1; d < input.dim(); ++d) shape.push_back(input.size(d));
    return input.contiguous().view(shape);
}

Tensor Flatten::forward(const Tensor& x, const RunOptions&) const {
    return flatten(x, start_dim_, end_dim_);
}

}  // namespace strata
