// train/cli.cpp: the `mambagrad` command.
//
//   mambagrad info                          build, devices, allocator, BLAS
//   mambagrad gradcheck --op matmul [--device cuda] [--dtype f64]
//   mambagrad gradcheck --list
//
// Every failure prints one `error: ...` line to stderr and exits with status 2.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <omp.h>

#include "mambagrad.h"
#include "ops/op_table.h"

using namespace mg;

namespace {

int cmd_info() {
    fmt::print("mambagrad\n");
    fmt::print("  CUDA:      {}\n", cuda::built_with_cuda() ? "compiled in" : "not compiled (CUDA=0)");
    fmt::print("  devices:   cpu ({} OpenMP threads)", omp_get_max_threads());
    for (int d = 0; d < cuda::device_count(); ++d) fmt::print(", cuda:{} ({})", d, cuda::device_name(d));
    fmt::print("\n");
    fmt::print("  CPU GEMM:  {}\n", gemm_cpu_uses_openblas() ? "OpenBLAS" : "mambagrad blocked kernel");
    for (int d = 0; d < cuda::device_count(); ++d) {
        auto s = cuda::memory_stats(d);
        fmt::print("  cuda:{} allocator: {} B in use, {} B peak, {} B reserved, {} cudaMalloc calls\n", d,
                   s.allocated, s.peak_allocated, s.reserved, s.num_cuda_malloc);
    }
    fmt::print("  ops with gradcheck cases: {}\n", fmt::join(kOpNames, ", "));
    return 0;
}

int cmd_gradcheck(const std::string& op, const std::string& device_str, bool list) {
    if (list) {
        for (const OpCase& c : op_cases()) fmt::print("{:<20} {}\n", c.op, c.label);
        return 0;
    }
    MG_CHECK(!op.empty(), "gradcheck: --op is required; known ops: {}", fmt::join(kOpNames, ", "));
    Device dev = Device::parse(device_str);
    MG_CHECK(dev.is_cpu() || dev.index < cuda::device_count(),
             "gradcheck: --device {}: {} CUDA device(s) are visible{}", device_str, cuda::device_count(),
             cuda::built_with_cuda() ? "" : " (this build has no CUDA)");
    int failed = 0;
    for (const OpCase* c : op_cases_for(op)) {
        Generator gen(0xC0FFEE);
        auto inputs = c->inputs({DType::f64, dev}, gen);
        for (Tensor& t : inputs)
            if (is_floating(t.dtype())) t.set_requires_grad(true); // not ids / targets
        auto r = gradcheck(c->fn, inputs);
        if (r.ok) fmt::print("ok    {} [{}] on {}: {} elements, max |diff| {:.2e}\n", op, c->label, dev.str(),
                             r.num_checked, r.max_abs_error);
        else {
            fmt::print("FAIL  {} [{}] on {}: {}\n", op, c->label, dev.str(), r.message);
            ++failed;
        }
    }
    return failed == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"mambagrad: tensors, autograd and Mamba kernels on CPU and CUDA"};
    app.require_subcommand(1);
    auto* info = app.add_subcommand("info", "build configuration, devices and memory");
    std::string op, device = "cpu";
    bool list = false;
    auto* gc = app.add_subcommand("gradcheck", "finite-difference gradient check of an op (f64)");
    gc->add_option("--op", op, "op name (see --list)");
    gc->add_option("--device", device, "cpu, cuda or cuda:N");
    gc->add_flag("--list", list, "list the ops and their cases");
    if (argc > 1 && argv[1][0] != '-' && std::string(argv[1]) != "info" && std::string(argv[1]) != "gradcheck") {
        fmt::print(stderr, "error: unknown command '{}'; expected one of: info, gradcheck\n", argv[1]);
        return 2;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        fmt::print(stderr, "error: {} (run `mambagrad --help`)\n", e.what());
        return 2;
    }
    try {
        if (*info) return cmd_info();
        if (*gc) return cmd_gradcheck(op, device, list);
    } catch (const mg::Error& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        fmt::print(stderr, "error: internal: {}\n", e.what());
        return 2;
    }
    return 0;
}
