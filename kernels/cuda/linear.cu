// Linear on CUDA: one cuBLASLt matrix product with the bias added in its epilogue.
// Row-major y[batch, out] = x[batch, in] * W[out, in]^T is, in cuBLAS's column-major terms,
// D[out x batch] = op(A)[out x in] * B[in x batch] with A = W read as [in x out] and op = T.
// The algorithm comes from cuBLASLt's heuristic, once per shape; TF32 only when asked for.
#include "../linear.h"
#include "context.cuh"

namespace strata {
namespace cuda {

namespace {

using cuda_detail::LinearPlan;

constexpr size_t kLinearWorkspace = size_t(32) << 20;

LinearPlan& plan_for(Context& im, const LinearParams& p, bool has_bias) {
    const std::array<int64_t, 4> key{p.batch, p.in, p.out, has_bias ? 1 : 0};
    auto found = im.linear_plans.find(key);
    if (found != im.linear_plans.end()) return *found->second;
    STRATA_CHECK(!im.capturing, "cuda linear: a new shape while a CUDA graph is being captured; run the call "
                                "once before capturing");
    auto plan = std::make_unique<LinearPlan>();
    const cublasComputeType_t compute = im.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    STRATA_CUBLAS_CHECK("linear", cublasLtMatmulDescCreate(&plan->op, compute, CUDA_R_32F));
    const cublasOperation_t transpose = CUBLAS_OP_T, keep = CUBLAS_OP_N;
    STRATA_CUBLAS_CHECK("linear", cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
    STRATA_CUBLAS_CHECK("linear", cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof(keep)));
    const cublasLtEpilogue_t epilogue = has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    STRATA_CUBLAS_CHECK("linear", cublasLtMatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    const auto rows = [](int64_t v) { return static_cast<uint64_t>(v); };
    STRATA_CUBLAS_CHECK("linear", cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_32F, rows(p.in), rows(p.out), p.in));
    STRATA_CUBLAS_CHECK("linear", cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_32F, rows(p.in), rows(p.batch), p.in));
    STRATA_CUBLAS_CHECK("linear", cublasLtMatrixLayoutCreate(&plan->d, CUDA_R_32F, rows(p.out), rows(p.batch), p.out));

    cublasLtMatmulPreference_t preference = nullptr;
    STRATA_CUBLAS_CHECK("linear", cublasLtMatmulPreferenceCreate(&preference));
    std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, cublasStatus_t (*)(cublasLtMatmulPreference_t)> guard(
        preference, cublasLtMatmulPreferenceDestroy);
    const size_t max_workspace = kLinearWorkspace;
    STRATA_CUBLAS_CHECK("linear", cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                                       &max_workspace, sizeof(max_workspace)));
    cublasLtMatmulHeuristicResult_t result{};
    int found_count = 0;
    STRATA_CUBLAS_CHECK("linear", cublasLtMatmulAlgoGetHeuristic(im.cublaslt, plan->op, plan->a, plan->b, plan->d,
                                                                 plan->d, preference, 1, &result, &found_count));
    STRATA_CHECK(found_count > 0, "cuda linear: cuBLASLt has no algorithm for [", p.batch, ", ", p.in, "] x [", p.out,
                 ", ", p.in, "]^T");
    plan->algo = result.algo;
    plan->workspace = result.workspaceSize;
    return *im.linear_plans.emplace(key, std::move(plan)).first->second;
}

}  // namespace

void linear(Context& ctx, const LinearParams& p, const float* x, const float* weight, const float* bias, float* y) {
    Context& im = cuda_detail::use(ctx, "linear");
    if (p.batch == 0) return;
    LinearPlan& plan = plan_for(im, p, bias != nullptr);
    if (bias)
        STRATA_CUBLAS_CHECK("linear", cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                                     sizeof(bias)));
    std::shared_ptr<void> workspace = im.scratch(plan.workspace);
    const float one = 1.0f, zero = 0.0f;
    STRATA_CUBLAS_CHECK("linear", cublasLtMatmul(im.cublaslt, plan.op, &one, weight, plan.a, x, plan.b, &zero, y, plan.d,
                                                 y, plan.d, &plan.algo, workspace.get(), plan.workspace, im.stream));
}

}  // namespace cuda
}  // namespace strata
