#include "device_options.h"

namespace strata_cli {

void DeviceOptions::add_to(CLI::App* command, bool bench) {
    command->add_option("--device", device_, "where to run: cpu or cuda")
        ->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
    command->add_option("--backend", backend_, "which kernels: cpu (the fast CPU kernels, default with --device cpu), "
                        "reference (kernels/reference/: the plain loops, for reading and checking; slow) or cuda "
                        "(same as --device cuda)")
        ->check(CLI::IsMember({"cpu", "reference", "cuda"}));
    command->add_flag("--tf32", tf32_, "cuda: allow TF32 tensor-core math (default: off, plain fp32)");
    command->add_option("--layout", layout_, "cuda: activation layout between layers: auto (NHWC with --tf32, "
                        "else NCHW), nchw or nhwc")
        ->check(CLI::IsMember({"auto", "nchw", "nhwc"}))->capture_default_str();
    if (bench)
        command->add_flag("--graph", graph_, "cuda: capture the forward call once and time CUDA graph replays");
}

void DeviceOptions::configure(strata::RunOptions& options) {
    if (backend_ == "cuda") device_ = "cuda";
    STRATA_CHECK(!cuda() || backend_.empty() || backend_ == "cuda", "--backend ", backend_,
                 " runs on the cpu; it cannot be combined with --device cuda");
    if (!cuda()) {
        options.backend = backend_ == "reference" ? strata::Backend::Reference : strata::Backend::Cpu;
        STRATA_CHECK(!tf32_ && !graph_ && layout_ == "auto", "--tf32, --graph and --layout need --device cuda");
        return;
    }
    strata::CudaOptions cuda_options;
    cuda_options.tf32 = tf32_;
    cuda_options.channels_last = layout_ == "auto" ? -1 : layout_ == "nhwc" ? 1 : 0;
    ctx_ = strata::CudaContext::create(cuda_options);
    options.backend = strata::Backend::Cuda;
    options.cuda = ctx_;
}

void DeviceOptions::move(strata::Module& model) const {
    if (cuda()) model.to(strata::Device::CUDA);
}

strata::Tensor DeviceOptions::input(const strata::Tensor& x) const {
    return cuda() ? x.to(strata::Device::CUDA) : x;
}

strata::OrderedDict<strata::Tensor> DeviceOptions::to_host(const strata::OrderedDict<strata::Tensor>& out) const {
    if (!cuda()) return out;
    strata::OrderedDict<strata::Tensor> host;
    for (const auto& [name, t] : out) host.insert(name, t.to(strata::Device::CPU));
    return host;
}

std::function<void()> DeviceOptions::timed(std::function<void()> call) {
    if (!cuda()) return call;
    auto ctx = ctx_;
    if (!graph_)
        return [call, ctx] {
            call();
            ctx->synchronize();
        };
    captured_ = strata::CudaGraph::capture(*ctx_, call);  // runs `call` once eagerly first
    auto graph = captured_;
    return [graph, ctx] {
        graph->replay();
        ctx->synchronize();
    };
}

std::string DeviceOptions::note() const {
    if (!cuda()) return "";
    return "note: cuda: " + ctx_->device_name() + (graph_ ? ", CUDA graph replay" : ", eager launches") + "; " +
           ctx_->summary() + "\n";
}

}  // namespace strata_cli
