// ops/copy.cpp: copies between layouts, dtypes and devices: contiguous(), to(), clone(), and
// the copy_into primitive that cat and the view backwards use.
#include <cstring>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "cuda/copy.h"
#include "cuda/runtime.h"
#include "ops/checks.h"
#include "ops/copy.h"
#include "ops/dispatch.h"
#include "ops/strided.h"

namespace mg {

// ---- shared checks --------------------------------------------------------------------------
void check_defined(const char* op, const char* name, const Tensor& t) {
    MG_CHECK(t.defined(), "{}: {} is an undefined tensor", op, name);
}
void check_float(const char* op, const char* name, const Tensor& t) {
    check_defined(op, name, t);
    MG_CHECK(is_differentiable(t.dtype()), "{}: {} is {}, expected dtype f32 or f64{}", op, name, t.desc(),
             t.dtype() == DType::bf16 ? " (bf16 is a storage dtype: convert with .to(DType::f32); bf16 GEMMs "
                                        "are matmul_bf16)" : "");
}
void check_same(const char* op, const char* na, const Tensor& a, const char* nb, const Tensor& b) {
    check_defined(op, na, a);
    check_defined(op, nb, b);
    MG_CHECK(a.device() == b.device(), "{}: {} is {} but {} is {}; expected both on the same device",
             op, na, a.desc(), nb, b.desc());
    MG_CHECK(a.dtype() == b.dtype(), "{}: {} is {} but {} is {}; expected the same dtype", op, na,
             a.desc(), nb, b.desc());
}
void check_dim(const char* op, const char* name, const Tensor& t, int64_t ndim) {
    check_defined(op, name, t);
    MG_CHECK(t.dim() == ndim, "{}: {} is {}, expected a {}-D tensor", op, name, t.desc(), ndim);
}

StridedIndexer make_indexer(const Shape& shape, const Shape& strides) {
    MG_ASSERT(shape.size() <= size_t(kMaxDims));
    StridedIndexer ix;
    ix.ndim = int(shape.size());
    for (size_t d = 0; d < shape.size(); ++d) {
        ix.sizes[d] = shape[d];
        ix.strides[d] = strides[d];
    }
    return ix;
}

void coalesce_dims(Shape& shape, std::initializer_list<Shape*> strides) {
    Shape out_shape;
    std::vector<Shape> out(strides.size());
    for (size_t d = 0; d < shape.size(); ++d) {
        if (shape[d] == 1) continue;
        bool merge = !out_shape.empty();
        size_t k = 0;
        for (const Shape* st : strides) merge = merge && out[k++].back() == (*st)[d] * shape[d];
        if (merge) {
            out_shape.back() *= shape[d];
            k = 0;
            for (const Shape* st : strides) out[k++].back() = (*st)[d];
        } else {
            out_shape.push_back(shape[d]);
            k = 0;
            for (const Shape* st : strides) out[k++].push_back((*st)[d]);
        }
    }
    shape = out_shape;
    size_t k = 0;
    for (Shape* st : strides) *st = out[k++];
}

// ---- copy_into ------------------------------------------------------------------------------
template <typename D, typename S>
static void copy_strided_cpu(D* dst, const StridedIndexer& di, const S* src, const StridedIndexer& si,
                             int64_t n, bool both_contiguous) {
    if (both_contiguous) {
#pragma omp parallel for if (n > kParallelGrain)
        for (int64_t i = 0; i < n; ++i) dst[i] = D(src[i]);
        return;
    }
    const int64_t ds = di.inner_stride(), ss = si.inner_stride();
    for_each_row(n, di.row_length(), kParallelGrain, [&](int64_t first, int64_t len) {
        D* d = dst + di.offset(first);
        const S* s = src + si.offset(first);
        if (ds == 1 && ss == 1)
            for (int64_t j = 0; j < len; ++j) d[j] = D(s[j]);
        else
            for (int64_t j = 0; j < len; ++j) d[j * ds] = D(s[j * ss]);
    });
}

// Moves a tensor's data to another device as a contiguous tensor of the same dtype.
static Tensor move_to_device(const Tensor& src, Device device) {
    Tensor s = src.detach().contiguous();
    Tensor out = Tensor::empty(s.shape(), {s.dtype(), device});
    size_t nbytes = size_t(s.numel()) * dtype_size(s.dtype());
    if (s.device().is_cpu() && device.is_cpu()) std::memcpy(out.raw_data(), s.raw_data(), nbytes);
    else if (s.device().is_cpu()) cuda::copy_h2d(out.raw_data(), s.raw_data(), nbytes, device.index);
    else if (device.is_cpu()) cuda::copy_d2h(out.raw_data(), s.raw_data(), nbytes, s.device().index);
    else cuda::copy_d2d(out.raw_data(), device.index, s.raw_data(), s.device().index, nbytes);
    return out;
}

void copy_into(const Tensor& dst, const Tensor& src) {
    check_defined("copy", "dst", dst);
    check_defined("copy", "src", src);
    MG_CHECK(dst.shape() == src.shape(), "copy: dst is {} but src is {}; expected equal shapes",
             dst.desc(), src.desc());
    Tensor s = src.device() == dst.device() ? src : move_to_device(src, dst.device());
    int64_t n = dst.numel();
    if (n == 0) return;
    Shape shape = dst.shape(), ds = dst.strides(), ss = s.strides();
    coalesce_dims(shape, {&ds, &ss});
    StridedIndexer di = make_indexer(shape, ds), si = make_indexer(shape, ss);
    bool contig = dst.is_contiguous() && s.is_contiguous();
    dispatch_all(dst.dtype(), [&]<typename D>() {
        dispatch_all(s.dtype(), [&]<typename S>() {
            if (dst.device().is_cpu()) {
                copy_strided_cpu(dst.data<D>(), di, s.data<S>(), si, n, contig);
            } else {
                MG_CUDA_ONLY(cuda::DeviceGuard g(dst.device().index);
                             cuda::copy_strided(dst.data<D>(), di, s.data<S>(), si, n));
            }
        });
    });
}

// ---- differentiable copies ------------------------------------------------------------------
// contiguous / clone:  y = x          dx = dy
// to(device):          y = x on d     dx = dy moved back to x's device
// to(dtype):           y = T(x)       dx = dy converted back to x's dtype
struct CopyBackward : autograd::Node {
    Device device;
    DType dtype;
    std::string op;
    std::string name() const override { return op; }
    std::vector<Tensor> apply(std::vector<Tensor>& g) override {
        Tensor dx = g[0];
        if (dx.device() != device) dx = move_to_device(dx, device);
        if (dx.dtype() != dtype) dx = dx.to(dtype);
        return {dx};
    }
};

static Tensor recorded_copy(const Tensor& x, Tensor out, const char* op) {
    autograd::record<CopyBackward>({x}, {out}, [&](CopyBackward& n) {
        n.device = x.device();
        n.dtype = x.dtype();
        n.op = op;
    });
    return out;
}

Tensor Tensor::clone() const {
    Tensor out = Tensor::empty(shape(), options());
    copy_into(out, *this);
    return recorded_copy(*this, out, "CloneBackward");
}

Tensor Tensor::contiguous() const {
    if (is_contiguous()) return *this;
    return clone();
}

Tensor Tensor::to(Device device) const {
    if (device == this->device()) return *this;
    return recorded_copy(*this, move_to_device(*this, device), "ToDeviceBackward");
}

Tensor Tensor::to(DType dtype) const {
    if (dtype == this->dtype()) return *this;
    Tensor out = Tensor::empty(shape(), {dtype, device()});
    copy_into(out, *this);
    // bf16 is not differentiable yet (tensor/dtype.h): rather than drop a gradient silently, refuse.
    MG_CHECK(dtype != DType::bf16 || !requires_grad() || !autograd::grad_enabled(),
             "to: x is {} and requires grad, but bf16 is not differentiable yet (autocast will add its "
             "backward); detach() it or convert under NoGrad", desc());
    if (!is_differentiable(dtype)) return out; // integers (and bf16) carry no gradient
    return recorded_copy(*this, out, "ToDTypeBackward");
}

} // namespace mg
