// CPU linear layer: Eigen GEMM, output features split across threads.
//   Y[batch, out] = X[batch, in] * W[out, in]^T
#include "../linear.h"

#include <Eigen/Core>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace strata {
namespace cpu {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void linear(const LinearParams& p, const float* x, const float* weight, const float* bias, float* y,
            int threads) {
    Eigen::Map<const RowMatrix> X(x, p.batch, p.in);
#pragma omp parallel num_threads(threads)
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        const int64_t o0 = p.out * t / nt, o1 = p.out * (t + 1) / nt;
        if (o1 > o0) {
            Eigen::Map<const RowMatrix> W(weight + o0 * p.in, o1 - o0, p.in);
            Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>> Y(y + o0, p.batch, o1 - o0,
                                                             Eigen::OuterStride<>(p.out));
            Y.noalias() = X * W.transpose();
            if (bias)
                for (int64_t o = o0; o < o1; ++o) Y.col(o - o0).array() += bias[o];
        }
    }
}

}  // namespace cpu
}  // namespace strata
