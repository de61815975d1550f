// cuDNN convolution with BatchNorm already folded into the weights by the caller, and bias,
// residual and ReLU either inside cudnnConvolutionBiasActivationForward or, where cuDNN refuses
// that for the chosen algorithm (or there is no ReLU), in one small epilogue kernel.
// Per shape (geometry + layout) the descriptors and the algorithm are built once: cuDNN's timed
// search (cudnnFindConvolutionForwardAlgorithmEx, like torch.backends.cudnn.benchmark) picks the
// fastest algorithm allowed by the math mode (FMA only with TF32 off).
#include <algorithm>

#include "../conv2d.h"
#include "context.cuh"

namespace strata {
namespace cuda {

namespace {

using cuda_detail::ConvPlan;

constexpr size_t kMaxSearchWorkspace = size_t(1) << 30;  // 1 GiB: every algorithm gets a chance

// y[i] = relu?(y[i] + bias[o] + residual[i]), o the output channel of element i.
//   y, residual: [n, oc, hw] (NCHW) or [n, hw, oc] (NHWC, kChannelsLast)
template <bool kChannelsLast>
__global__ void epilogue_kernel(float* y, const float* bias, const float* residual, bool relu, int64_t count,
                                int64_t oc, int64_t hw) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
        float v = y[i];
        if (bias) v += bias[kChannelsLast ? i % oc : (i / hw) % oc];
        if (residual) v += residual[i];
        if (relu) v = isnan(v) ? v : (v > 0.0f ? v : 0.0f);
        y[i] = v;
    }
}

int as_int(int64_t v, const char* what) {
    STRATA_CHECK(v >= 0 && v <= INT32_MAX, "cuda conv2d: ", what, " ", v, " exceeds cuDNN's int range");
    return static_cast<int>(v);
}

ConvPlan& plan_for(Context& im, const Conv2dParams& p, bool channels_last, const float* x,
                   const float* weight, float* y) {
    const std::array<int64_t, 15> key{p.n, p.c, p.h, p.w, p.oc, p.kh, p.kw, p.stride_h, p.stride_w,
                                      p.pad_h, p.pad_w, p.dil_h, p.dil_w, p.groups, channels_last ? 1 : 0};
    auto found = im.conv_plans.find(key);
    if (found != im.conv_plans.end()) return *found->second;
    STRATA_CHECK(!im.capturing, "cuda conv2d: a new convolution shape while a CUDA graph is being "
                                "captured; run the call once before capturing");

    auto plan = std::make_unique<ConvPlan>();
    const cudnnTensorFormat_t format = channels_last ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    STRATA_CUDNN_CHECK("conv2d", cudnnCreateTensorDescriptor(&plan->x));
    STRATA_CUDNN_CHECK("conv2d", cudnnCreateTensorDescriptor(&plan->y));
    STRATA_CUDNN_CHECK("conv2d", cudnnCreateTensorDescriptor(&plan->bias));
    STRATA_CUDNN_CHECK("conv2d", cudnnCreateFilterDescriptor(&plan->w));
    STRATA_CUDNN_CHECK("conv2d", cudnnCreateConvolutionDescriptor(&plan->conv));
    STRATA_CUDNN_CHECK("conv2d", cudnnCreateActivationDescriptor(&plan->relu));
    STRATA_CUDNN_CHECK("conv2d", cudnnSetTensor4dDescriptor(plan->x, format, CUDNN_DATA_FLOAT, as_int(p.n, "batch"),
                                                            as_int(p.c, "channels"), as_int(p.h, "height"),
                                                            as_int(p.w, "width")));
    STRATA_CUDNN_CHECK("conv2d", cudnnSetFilter4dDescriptor(plan->w, CUDNN_DATA_FLOAT, format, as_int(p.oc, "oc"),
                                                            as_int(p.c / p.groups, "channels"),
                                                            as_int(p.kh, "kh"), as_int(p.kw, "kw")));
    STRATA_CUDNN_CHECK("conv2d", cudnnSetConvolution2dDescriptor(
                                     plan->conv, as_int(p.pad_h, "pad"), as_int(p.pad_w, "pad"),
                                     as_int(p.stride_h, "stride"), as_int(p.stride_w, "stride"),
                                     as_int(p.dil_h, "dilation"), as_int(p.dil_w, "dilation"),
                                     CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    STRATA_CUDNN_CHECK("conv2d", cudnnSetConvolutionGroupCount(plan->conv, as_int(p.groups, "groups")));
    // TF32 off: FMA kernels only (what torch does with allow_tf32=False). On: cuDNN's default.
    const cudnnMathType_t math = im.tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    STRATA_CUDNN_CHECK("conv2d", cudnnSetConvolutionMathType(plan->conv, math));
    int on = 0, oc = 0, oh = 0, ow = 0;
    STRATA_CUDNN_CHECK("conv2d", cudnnGetConvolution2dForwardOutputDim(plan->conv, plan->x, plan->w, &on, &oc, &oh, &ow));
    STRATA_CHECK(on == p.n && oc == p.oc && oh == p.oh && ow == p.ow, "cuda conv2d: cuDNN computes an output of [",
                 on, ", ", oc, ", ", oh, ", ", ow, "], strata [", p.n, ", ", p.oc, ", ", p.oh, ", ", p.ow, "]");
    STRATA_CUDNN_CHECK("conv2d", cudnnSetTensor4dDescriptor(plan->y, format, CUDNN_DATA_FLOAT, on, oc, oh, ow));
    STRATA_CUDNN_CHECK("conv2d", cudnnSetTensor4dDescriptor(plan->bias, format, CUDNN_DATA_FLOAT, 1, oc, 1, 1));
    STRATA_CUDNN_CHECK("conv2d", cudnnSetActivationDescriptor(plan->relu, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));

    // The timed search, with room for the hungriest algorithm (up to 1 GiB).
    size_t search_workspace = 0;
    for (int a = 0; a < CUDNN_CONVOLUTION_FWD_ALGO_COUNT; ++a) {
        size_t bytes = 0;
        if (cudnnGetConvolutionForwardWorkspaceSize(im.cudnn, plan->x, plan->w, plan->conv, plan->y,
                                                    static_cast<cudnnConvolutionFwdAlgo_t>(a), &bytes) ==
            CUDNN_STATUS_SUCCESS)
            search_workspace = std::max(search_workspace, std::min(bytes, kMaxSearchWorkspace));
    }
    std::shared_ptr<void> workspace = im.scratch(search_workspace);
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int returned = 0;
    STRATA_CUDNN_CHECK("conv2d", cudnnFindConvolutionForwardAlgorithmEx(
                                     im.cudnn, plan->x, x, plan->w, weight, plan->conv, plan->y, y,
                                     CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf, workspace.get(),
                                     search_workspace));
    int best = -1;
    for (int i = 0; i < returned && best < 0; ++i)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && (im.tf32 || perf[i].mathType != CUDNN_TENSOR_OP_MATH))
            best = i;
    STRATA_CHECK(best >= 0, "cuda conv2d: cuDNN found no algorithm for input [", p.n, ", ", p.c, ", ", p.h, ", ",
                 p.w, "], ", p.oc, " output channels, kernel ", p.kh, "x", p.kw, (channels_last ? " (NHWC)" : " (NCHW)"));
    plan->algo = perf[best].algo;
    plan->workspace = perf[best].memory;
    if (im.tf32) STRATA_CUDNN_CHECK("conv2d", cudnnSetConvolutionMathType(plan->conv, perf[best].mathType));
    return *im.conv_plans.emplace(key, std::move(plan)).first->second;
}

}  // namespace

void conv2d(Context& ctx, const Conv2dParams& p, const float* x, const float* weight,
            const Conv2dEpilogue& epilogue, float* y, bool channels_last) {
    Context& im = cuda_detail::use(ctx, "conv2d");
    ConvPlan& plan = plan_for(im, p, channels_last, x, weight, y);
    std::shared_ptr<void> workspace = im.scratch(plan.workspace);
    const float one = 1.0f, zero = 0.0f;
    if (epilogue.bias && epilogue.relu && plan.fused_ok) {
        // y = relu(conv(x) + alpha2 * z + bias), z the residual (alpha2 = 0 without one).
        const float alpha2 = epilogue.residual ? 1.0f : 0.0f;
        const cudnnStatus_t status = cudnnConvolutionBiasActivationForward(
            im.cudnn, &one, plan.x, x, plan.w, weight, plan.conv, plan.algo, workspace.get(), plan.workspace,
            &alpha2, plan.y, epilogue.residual ? epilogue.residual : y, plan.bias, epilogue.bias, plan.relu,
            plan.y, y);
        if (status == CUDNN_STATUS_SUCCESS) {
            plan.fused_used = true;
            return;
        }
        // Refused (cuDNN restricts the fused call by algorithm, layout and mode): the plain
        // convolution + epilogue kernel from now on. Never decided while a graph captures.
        if (plan.fused_used || im.capturing)
            cuda_detail::fail("conv2d", "cudnnConvolutionBiasActivationForward", "cuDNN", cudnnGetErrorString(status));
        cudaGetLastError();
        plan.fused_ok = false;
        plan.fused_refusal = cudnnGetErrorString(status);
    }
    STRATA_CUDNN_CHECK("conv2d", cudnnConvolutionForward(im.cudnn, &one, plan.x, x, plan.w, weight, plan.conv,
                                                         plan.algo, workspace.get(), plan.workspace, &zero,
                                                         plan.y, y));
    if (!epilogue.bias && !epilogue.residual && !epilogue.relu) return;
    const int64_t count = p.n * p.oc * p.oh * p.ow;
    if (channels_last)
        epilogue_kernel<true><<<cuda_detail::blocks_for(count), 256, 0, im.stream>>>(
            y, epilogue.bias, epilogue.residual, epilogue.relu, count, p.oc, p.oh * p.ow);
    else
        epilogue_kernel<false><<<cuda_detail::blocks_for(count), 256, 0, im.stream>>>(
            y, epilogue.bias, epilogue.residual, epilogue.relu, count, p.oc, p.oh * p.ow);
    STRATA_CUDA_LAUNCH_CHECK("conv2d epilogue");
}

}  // namespace cuda
}  // namespace strata
