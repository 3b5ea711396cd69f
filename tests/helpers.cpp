// tests/helpers.cpp: see tests/helpers.h.
#include "tests/helpers.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

#include "ops/op_table.h"

namespace mg::test {

std::string& detail::skip_reason() {
    static std::string s;
    return s;
}

std::vector<Device> devices() {
    std::vector<Device> d = {Device::cpu()};
    if (cuda::available()) d.push_back(Device::cuda(0));
    return d;
}

void require_close(const Tensor& a, const Tensor& b, double rtol, double atol, const std::string& what) {
    INFO(what);
    REQUIRE(a.defined());
    REQUIRE(b.defined());
    REQUIRE(a.shape() == b.shape());
    auto va = a.detach().to(DType::f64).to_vector<double>();
    auto vb = b.detach().to(DType::f64).to_vector<double>();
    int64_t worst = -1;
    double worst_excess = 0;
    int64_t bad = 0;
    for (size_t i = 0; i < va.size(); ++i) {
        double err = std::abs(va[i] - vb[i]), tol = atol + rtol * std::abs(vb[i]);
        if (!(err <= tol)) {
            ++bad;
            double ex = std::isnan(err) ? INFINITY : err - tol;
            if (worst < 0 || ex > worst_excess) { worst = int64_t(i); worst_excess = ex; }
        }
    }
    if (bad > 0) {
        FAIL(fmt::format("{}: {} of {} elements differ; worst at flat index {}: {} vs {} (rtol {}, atol {})",
                         what, bad, va.size(), worst, va[size_t(worst)], vb[size_t(worst)], rtol, atol));
    }
}

void gradcheck_op(const std::string& op, Device device) {
    for (const OpCase* c : op_cases_for(op)) {
        SECTION(fmt::format("{}: {} on {} f64", op, c->label, device.str())) {
            Generator gen(0xC0FFEE);
            auto inputs = c->inputs({DType::f64, device}, gen);
            // Integer inputs (ids, targets, positions) are not differentiable: only floating
            // inputs are perturbed.
            for (Tensor& t : inputs)
                if (is_differentiable(t.dtype())) t.set_requires_grad(true);
            auto r = gradcheck(c->fn, inputs);
            INFO(r.message);
            REQUIRE(r.ok);
        }
    }
}

void parity_op(const std::string& op) {
    for (const OpCase* c : op_cases_for(op)) {
        SECTION(fmt::format("{}: {} cpu vs cuda f32", op, c->label)) {
            Generator gen(0xBEEF);
            auto cpu_in = c->inputs({DType::f32, Device::cpu()}, gen);
            std::vector<Tensor> gpu_in;
            for (Tensor& t : cpu_in) {
                gpu_in.push_back(t.to(Device::cuda(0)));
                if (!is_differentiable(t.dtype())) continue; // integer inputs carry no gradient
                gpu_in.back().set_requires_grad(true);
                t.set_requires_grad(true);
            }
            Tensor y_cpu = c->fn(cpu_in), y_gpu = c->fn(gpu_in);
            // f32 kernels on two devices sum in different orders: differences of a few ulp
            // times the reduction length. The op-table sizes keep that under 1e-5.
            require_close(y_gpu, y_cpu, 1e-5, 1e-5, "forward output");
            Generator g2(7);
            Tensor dy = Tensor::randn(y_cpu.shape(), {DType::f32, Device::cpu()}, g2);
            y_cpu.backward(dy);
            y_gpu.backward(dy.to(Device::cuda(0)));
            for (size_t i = 0; i < cpu_in.size(); ++i)
                if (is_differentiable(cpu_in[i].dtype()))
                    require_close(gpu_in[i].grad(), cpu_in[i].grad(), 1e-5, 1e-5, fmt::format("grad of input {}", i));
        }
    }
}

TempDir::TempDir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() / fmt::format("mg_test_{}_{}", tag, ::getpid());
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
}

std::vector<std::string> TempDir::listing() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

std::string cli_binary() {
    return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "mambagrad").string();
}

Run run_cli(const std::string& args) {
    const std::string bin = cli_binary();
    REQUIRE(std::filesystem::exists(bin));
    Run r;
    FILE* p = popen((bin + " " + args + " 2>&1").c_str(), "r");
    REQUIRE(p);
    std::array<char, 4096> buf;
    while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
    int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

void require_one_error_line(const Run& r, const std::vector<std::string>& must_contain) {
    INFO(r.out);
    CHECK(r.status == 2);
    CHECK(r.out.rfind("error: ", 0) == 0);
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);
    for (const auto& s : must_contain) CHECK(r.out.find(s) != std::string::npos);
}

} // namespace mg::test
