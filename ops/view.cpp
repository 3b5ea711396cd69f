// ops/view.cpp: views that share storage, and their backward passes.
//
//   y = reshape(x)     dx = reshape(dy, x.shape)
//   y = permute(x, p)  dx = permute(dy, p^-1)          (transpose is a permute)
//   y = narrow(x)      dx = zeros(x.shape) with dy written into the narrowed window
//   y = expand(x)      dx = sum_to(dy, x.shape)        (squeeze/unsqueeze are reshapes)
#include <numeric>

#include "autograd/node.h"
#include "ops/copy.h"
#include "ops/reduce.h"
#include "tensor/check.h"
#include "tensor/indexing.h"

namespace mg {

namespace {

struct ReshapeBackward : autograd::Node {
    Shape in_shape;
    std::string name() const override { return "ReshapeBackward"; }
    std::vector<Tensor> apply(std::vector<Tensor>& g) override { return {g[0].reshape(in_shape)}; }
};

struct PermuteBackward : autograd::Node {
    std::vector<int64_t> inverse;
    std::string name() const override { return "PermuteBackward"; }
    std::vector<Tensor> apply(std::vector<Tensor>& g) override { return {g[0].permute(inverse)}; }
};

struct NarrowBackward : autograd::Node {
    Shape in_shape;
    int64_t dim = 0, start = 0;
    std::string name() const override { return "NarrowBackward"; }
    std::vector<Tensor> apply(std::vector<Tensor>& g) override {
        Tensor dx = Tensor::zeros(in_shape, g[0].options());
        copy_into(dx.narrow(dim, start, g[0].size(dim)), g[0]);
        return {dx};
    }
};

struct ExpandBackward : autograd::Node {
    Shape in_shape;
    std::string name() const override { return "ExpandBackward"; }
    std::vector<Tensor> apply(std::vector<Tensor>& g) override { return {sum_to(g[0], in_shape)}; }
};

Tensor reshape_view(const Tensor& x, const Shape& shape) {
    Tensor out = make_view(x, shape, contiguous_strides(shape), x.offset());
    autograd::record<ReshapeBackward>({x}, {out}, [&](ReshapeBackward& n) { n.in_shape = x.shape(); });
    return out;
}

// Resolves one -1 in `shape` against numel; throws naming `op` on any mismatch.
Shape infer_shape(const char* op, const Tensor& x, Shape shape) {
    int64_t known = 1, infer = -1;
    for (size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == -1) {
            MG_CHECK(infer < 0, "{}: shape {} has more than one -1", op, shape_str(shape));
            infer = int64_t(i);
        } else {
            MG_CHECK(shape[i] >= 0, "{}: shape {} has a negative size", op, shape_str(shape));
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        MG_CHECK(known > 0 && x.numel() % known == 0, "{}: cannot reshape {} into {}", op, x.desc(),
                 shape_str(shape));
        shape[size_t(infer)] = x.numel() / known;
    }
    MG_CHECK(numel_of(shape) == x.numel(), "{}: cannot reshape {} ({} elements) into {} ({} elements)",
             op, x.desc(), x.numel(), shape_str(shape), numel_of(shape));
    MG_CHECK(int64_t(shape.size()) <= kMaxDims, "{}: shape {} has more than {} dims", op,
             shape_str(shape), int(kMaxDims));
    return shape;
}

} // namespace

Tensor Tensor::view(const Shape& shape) const {
    Shape s = infer_shape("view", *this, shape);
    MG_CHECK(is_contiguous(), "view: tensor {} is not contiguous, so it cannot be viewed as {}; use "
             "reshape(), which copies", desc(), shape_str(s));
    return reshape_view(*this, s);
}

Tensor Tensor::reshape(const Shape& shape) const {
    Shape s = infer_shape("reshape", *this, shape);
    return reshape_view(contiguous(), s);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
    MG_CHECK(int64_t(dims.size()) == dim(), "permute: {} dims given ({}) for tensor {}", dims.size(),
             fmt::join(dims, ","), desc());
    std::vector<int64_t> p(dims.size()), inverse(dims.size(), -1);
    Shape shape(dims.size()), strides(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) {
        p[i] = wrap_dim(dims[i], dim(), "permute");
        MG_CHECK(inverse[size_t(p[i])] < 0, "permute: dim {} repeats in ({})", p[i], fmt::join(dims, ","));
        inverse[size_t(p[i])] = int64_t(i);
        shape[i] = this->shape()[size_t(p[i])];
        strides[i] = this->strides()[size_t(p[i])];
    }
    Tensor out = make_view(*this, shape, strides, offset());
    autograd::record<PermuteBackward>({*this}, {out}, [&](PermuteBackward& n) { n.inverse = inverse; });
    return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
    std::vector<int64_t> p(static_cast<size_t>(this->dim()));
    std::iota(p.begin(), p.end(), 0);
    std::swap(p[size_t(wrap_dim(d0, dim(), "transpose"))], p[size_t(wrap_dim(d1, dim(), "transpose"))]);
    return permute(p);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
    MG_CHECK(dim() > 0, "narrow: tensor {} is 0-dim", desc());
    d = wrap_dim(d, dim(), "narrow");
    int64_t n = shape()[size_t(d)];
    MG_CHECK(start >= 0 && length >= 0 && start + length <= n,
             "narrow: [{}, {}) is out of range for dim {} of size {} in tensor {}", start,
             start + length, d, n, desc());
    Shape s = shape();
    s[size_t(d)] = length;
    Tensor out = make_view(*this, s, strides(), offset() + start * strides()[size_t(d)]);
    autograd::record<NarrowBackward>({*this}, {out}, [&](NarrowBackward& node) {
        node.in_shape = shape();
        node.dim = d;
        node.start = start;
    });
    return out;
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end) const {
    MG_CHECK(dim() > 0, "slice: tensor {} is 0-dim", desc());
    int64_t n = shape()[size_t(wrap_dim(d, dim(), "slice"))];
    if (start < 0) start += n;
    if (end < 0) end += n;
    MG_CHECK(0 <= start && start <= end && end <= n, "slice: [{}, {}) is out of range for dim {} "
             "of size {} in tensor {}", start, end, d, n, desc());
    return narrow(d, start, end - start);
}

Tensor Tensor::squeeze(int64_t d) const {
    d = wrap_dim(d, dim(), "squeeze");
    MG_CHECK(shape()[size_t(d)] == 1, "squeeze: dim {} of tensor {} has size {}, expected 1", d,
             desc(), shape()[size_t(d)]);
    Shape s = shape(), st = strides();
    s.erase(s.begin() + d);
    st.erase(st.begin() + d);
    Tensor out = make_view(*this, s, st, offset());
    autograd::record<ReshapeBackward>({*this}, {out}, [&](ReshapeBackward& n) { n.in_shape = shape(); });
    return out;
}

Tensor Tensor::unsqueeze(int64_t d) const {
    d = wrap_dim(d, dim() + 1, "unsqueeze");
    MG_CHECK(dim() < kMaxDims, "unsqueeze: tensor {} already has {} dims", desc(), int(kMaxDims));
    Shape s = shape(), st = strides();
    int64_t stride = size_t(d) < st.size() ? st[size_t(d)] * s[size_t(d)] : 1;
    s.insert(s.begin() + d, 1);
    st.insert(st.begin() + d, stride);
    Tensor out = make_view(*this, s, st, offset());
    autograd::record<ReshapeBackward>({*this}, {out}, [&](ReshapeBackward& n) { n.in_shape = shape(); });
    return out;
}

Tensor Tensor::expand(const Shape& target) const {
    MG_CHECK(target.size() >= shape().size() && int64_t(target.size()) <= kMaxDims,
             "expand: cannot expand {} to {}", desc(), shape_str(target));
    Shape s = target;
    size_t lead = target.size() - shape().size();
    for (size_t i = 0; i < target.size(); ++i) {
        if (i >= lead && target[i] == -1) s[i] = shape()[i - lead];
        bool ok = i < lead ? s[i] >= 0 : (shape()[i - lead] == s[i] || shape()[i - lead] == 1);
        MG_CHECK(ok, "expand: cannot expand {} to {} (dim {})", desc(), shape_str(target), i);
    }
    Tensor out = make_view(*this, s, broadcast_strides(shape(), strides(), s), offset());
    autograd::record<ExpandBackward>({*this}, {out}, [&](ExpandBackward& n) { n.in_shape = shape(); });
    return out;
}

} // namespace mg
