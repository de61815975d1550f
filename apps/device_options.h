// The CLI's device choice: `--device cpu|cuda` (features, bench), `--backend cpu|reference|cuda`
// (reference: the plain loops of kernels/reference/, to step through), `--tf32` and `--layout` (CUDA
// math and activation layout), `--graph` (bench: replay the timed call as one CUDA graph).
// Kept apart from main.cpp so that each subcommand only asks "configure, move, run, bring back".
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>

#include "strata.h"
#include "kernels/cuda_context.h"

namespace strata_cli {

class DeviceOptions {
public:
    // Adds --device, --backend, --tf32, --layout to `command`, and --graph when `bench`.
    void add_to(CLI::App* command, bool bench);

    // Sets options.backend (and, for cuda, creates the context: a clear error when the build or
    // the machine has no CUDA). Call once, before the others.
    void configure(strata::RunOptions& options);
    bool cuda() const { return device_ == "cuda"; }

    // No-ops on the cpu: the model's weights, an input, returned outputs across the bus.
    void move(strata::Module& model) const;
    strata::Tensor input(const strata::Tensor& x) const;
    strata::OrderedDict<strata::Tensor> to_host(const strata::OrderedDict<strata::Tensor>& out) const;

    // What bench times per iteration: `call` itself on the cpu; on cuda `call` then a stream
    // synchronisation (so the time is the work's, not the launch's), or with --graph a replay of
    // the call captured once as a CUDA graph, then the synchronisation.
    std::function<void()> timed(std::function<void()> call);

    // "note: cuda: NVIDIA H200 (...), graph on\n" for stderr; "" on the cpu.
    std::string note() const;

private:
    std::string device_ = "cpu", backend_, layout_ = "auto";
    bool tf32_ = false, graph_ = false;
    std::shared_ptr<strata::CudaContext> ctx_;
    std::shared_ptr<strata::CudaGraph> captured_;
};

}  // namespace strata_cli
