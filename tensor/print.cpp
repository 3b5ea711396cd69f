// tensor/print.cpp: PyTorch-like printing. Tensors over 1000 elements show the first and last
// three entries of each dim with "..." between.
#include <algorithm>
#include <cmath>

#include "tensor/check.h"
#include "tensor/tensor.h"

namespace mg {

namespace {

constexpr int64_t kSummariseAbove = 1000;
constexpr int64_t kEdge = 3;

struct Printer {
    std::vector<double> v;
    Shape shape, strides;
    bool integer = false, summarise = false, sci = false;
    int width = 0;

    std::string fmt1(double x) const {
        if (integer) return fmt::format("{}", int64_t(x));
        if (sci) return fmt::format("{:.4e}", x);
        return fmt::format("{:.4f}", x);
    }

    // Indices of dim d that are printed (-1 marks the "..." gap).
    std::vector<int64_t> shown(size_t d) const {
        std::vector<int64_t> idx;
        int64_t n = shape[d];
        if (summarise && n > 2 * kEdge) {
            for (int64_t i = 0; i < kEdge; ++i) idx.push_back(i);
            idx.push_back(-1);
            for (int64_t i = n - kEdge; i < n; ++i) idx.push_back(i);
        } else {
            for (int64_t i = 0; i < n; ++i) idx.push_back(i);
        }
        return idx;
    }

    void rec(std::string& out, size_t d, int64_t off, int indent) const {
        if (d == shape.size()) {
            out += fmt::format("{:>{}}", fmt1(v[size_t(off)]), width);
            return;
        }
        out += "[";
        auto idx = shown(d);
        for (size_t k = 0; k < idx.size(); ++k) {
            if (k > 0) {
                out += ",";
                if (d + 1 == shape.size()) out += " ";
                else out += std::string(shape.size() - d - 1, '\n') + std::string(size_t(indent + 1), ' ');
            }
            if (idx[k] < 0) { out += "..."; continue; }
            rec(out, d + 1, off + idx[k] * strides[d], indent + 1);
        }
        out += "]";
    }
};

} // namespace

std::string Tensor::str() const {
    if (!defined()) return "tensor(undefined)";
    Printer p;
    Tensor h = detach().to(Device::cpu()).to(DType::f64).contiguous();
    p.v = h.to_vector<double>();
    p.shape = shape();
    p.strides = contiguous_strides(shape());
    p.integer = dtype() == DType::i32;
    p.summarise = numel() > kSummariseAbove;
    double amax = 0, amin_nz = INFINITY;
    for (double x : p.v)
        if (std::isfinite(x)) {
            amax = std::max(amax, std::abs(x));
            if (x != 0) amin_nz = std::min(amin_nz, std::abs(x));
        }
    p.sci = !p.integer && (amax >= 1e8 || (amin_nz < 1e-4 && amin_nz > 0));
    for (double x : p.v) p.width = std::max(p.width, int(p.fmt1(x).size()));

    std::string out = "tensor(";
    if (numel() == 0) out += "[]";
    else p.rec(out, 0, 0, 7);
    if (numel() == 0 || p.summarise) out += fmt::format(", size={}", shape_str(shape()));
    if (device().is_cuda()) out += fmt::format(", device='{}'", device().str());
    if (dtype() != DType::f32) out += fmt::format(", dtype={}", dtype_name(dtype()));
    if (grad_fn()) out += fmt::format(", grad_fn=<{}>", grad_fn_name());
    else if (requires_grad()) out += ", requires_grad=True";
    out += ")";
    return out;
}

} // namespace mg
