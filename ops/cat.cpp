// ops/cat.cpp: see ops/cat.h. The copies go through copy_into, the one strided-copy kernel.
#include "ops/cat.h"

#include "autograd/node.h"
#include "ops/checks.h"
#include "ops/copy.h"

namespace mg {

namespace {

struct CatBackward : autograd::Node {
    int64_t dim = 0;
    std::vector<int64_t> sizes;
    std::string name() const override { return "CatBackward"; }
    std::vector<Tensor> apply(std::vector<Tensor>& g) override {
        std::vector<Tensor> dx;
        int64_t start = 0;
        for (int64_t s : sizes) {
            dx.push_back(g[0].narrow(dim, start, s));
            start += s;
        }
        return dx;
    }
};

// One node for all the pieces: their gradients (zeros for a piece that got none, filled by the
// engine) concatenated back. Recording one narrow per piece instead would make each piece's
// backward a zero tensor of x's full size plus a copy, and the engine would then add the k
// full-size gradients: k times the memory traffic and 3k - 1 kernels instead of k copies.
struct SplitBackward : autograd::Node {
    int64_t dim = 0;
    std::string name() const override { return "SplitBackward"; }
    std::vector<Tensor> apply(std::vector<Tensor>& g) override { return {cat(g, dim)}; }
};

struct FlipBackward : autograd::Node {
    int64_t dim = 0;
    std::string name() const override { return "FlipBackward"; }
    std::vector<Tensor> apply(std::vector<Tensor>& g) override { return {flip(g[0], dim)}; }
};

} // namespace

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
    MG_CHECK(!xs.empty(), "cat: expected at least one tensor, got none");
    const Tensor& x0 = xs[0];
    check_defined("cat", "tensors[0]", x0);
    MG_CHECK(x0.dim() > 0, "cat: tensors[0] is {}; cannot concatenate 0-dim tensors", x0.desc());
    dim = wrap_dim(dim, x0.dim(), "cat");
    Shape out_shape = x0.shape();
    out_shape[size_t(dim)] = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
        const Tensor& x = xs[i];
        std::string name = fmt::format("tensors[{}]", i);
        check_same("cat", "tensors[0]", x0, name.c_str(), x);
        bool ok = x.dim() == x0.dim();
        for (int64_t d = 0; ok && d < x.dim(); ++d)
            ok = d == dim || x.shape()[size_t(d)] == x0.shape()[size_t(d)];
        MG_CHECK(ok, "cat: {} is {} but tensors[0] is {}; expected equal shapes except in dim {}",
                 name, x.desc(), x0.desc(), dim);
        out_shape[size_t(dim)] += x.shape()[size_t(dim)];
    }
    Tensor out = Tensor::empty(out_shape, x0.options());
    int64_t start = 0;
    std::vector<int64_t> sizes;
    for (const Tensor& x : xs) {
        int64_t s = x.shape()[size_t(dim)];
        copy_into(out.detach().narrow(dim, start, s), x.detach());
        sizes.push_back(s);
        start += s;
    }
    autograd::record<CatBackward>(xs, {out}, [&](CatBackward& n) {
        n.dim = dim;
        n.sizes = sizes;
    });
    return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
    check_defined("split", "x", x);
    MG_CHECK(x.dim() > 0, "split: x is {}; cannot split a 0-dim tensor", x.desc());
    dim = wrap_dim(dim, x.dim(), "split");
    int64_t total = 0;
    for (int64_t s : sizes) {
        MG_CHECK(s >= 0, "split: negative size in ({})", fmt::join(sizes, ","));
        total += s;
    }
    MG_CHECK(total == x.size(dim), "split: sizes ({}) add up to {}, but dim {} of x {} has size {}",
             fmt::join(sizes, ","), total, dim, x.desc(), x.size(dim));
    std::vector<Tensor> out;
    int64_t start = 0;
    for (int64_t s : sizes) {
        Shape shape = x.shape();
        shape[size_t(dim)] = s;
        out.push_back(make_view(x, shape, x.strides(), x.offset() + start * x.strides()[size_t(dim)]));
        start += s;
    }
    autograd::record<SplitBackward>({x}, out, [&](SplitBackward& n) { n.dim = dim; });
    return out;
}

std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim) {
    check_defined("split", "x", x);
    MG_CHECK(size > 0, "split: piece size {} for x {}, expected > 0", size, x.desc());
    MG_CHECK(x.dim() > 0, "split: x is {}; cannot split a 0-dim tensor", x.desc());
    int64_t n = x.size(dim);
    std::vector<int64_t> sizes;
    for (int64_t s = 0; s < n; s += size) sizes.push_back(std::min(size, n - s));
    return split(x, sizes, dim);
}

Tensor flip(const Tensor& x, int64_t dim) {
    check_defined("flip", "x", x);
    MG_CHECK(x.dim() > 0, "flip: x is {}; cannot flip a 0-dim tensor", x.desc());
    dim = wrap_dim(dim, x.dim(), "flip");
    Tensor out = Tensor::empty(x.shape(), x.options());
    if (x.numel() > 0) {
        // x read backwards along dim: start at its last slice and step by the negated stride
        Shape strides = x.strides();
        int64_t offset = x.offset() + (x.size(dim) - 1) * strides[size_t(dim)];
        strides[size_t(dim)] = -strides[size_t(dim)];
        copy_into(out, make_view(x, x.shape(), strides, offset));
    }
    autograd::record<FlipBackward>({x}, {out}, [&](FlipBackward& n) { n.dim = dim; });
    return out;
}

} // namespace mg
