#include "flatten.h"

namespace strata {

Shape flatten_shape(const Shape& in, int64_t start_dim, int64_t end_dim) {
    const int64_t rank = static_cast<int64_t>(in.size());
    const int64_t r = rank == 0 ? 1 : rank;
    const int64_t s = start_dim < 0 ? start_dim + r : start_dim;
    const int64_t e = end_dim < 0 ? end_dim + r : end_dim;
    STRATA_CHECK(s >= 0 && s < r && e >= 0 && e < r && s <= e, "flatten(start_dim=", start_dim,
                 ", end_dim=", end_dim, ") does not fit a tensor of shape ", shape_str(in));
    if (rank == 0) return {1};
    Shape shape(in.begin(), in.begin() + s);
    int64_t merged = 1;
    for (int64_t d = s; d <= e; ++d) merged *= in[d];
    shape.push_back(merged);
    shape.insert(shape.end(), in.begin() + e + 1, in.end());
    return shape;
}

Tensor flatten(const Tensor& input, int64_t start_dim, int64_t end_dim) {
    STRATA_CHECK(input.defined(), "flatten of an undefined tensor");
    return input.contiguous().view(flatten_shape(input.shape(), start_dim, end_dim));
}

Shape Flatten::output_shape(const Shape& input) const { return flatten_shape(input, start_dim_, end_dim_); }

Tensor Flatten::forward(const Tensor& x, const RunOptions&) const {
    return flatten(x, start_dim_, end_dim_);
}

}  // namespace strata
