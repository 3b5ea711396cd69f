// tensor/tensor.cpp: storage, shapes, and the non-differentiable parts of Tensor.
#include "tensor/tensor.h"

#include <cstdlib>
#include <cstring>

#include "cuda/runtime.h"
#include "tensor/check.h"
#include "tensor/indexing.h"

namespace mg {

// ---- dtype / device parsing -----------------------------------------------------------------
DType parse_dtype(std::string_view s) {
    if (s == "f32" || s == "float32") return DType::f32;
    if (s == "f64" || s == "float64") return DType::f64;
    if (s == "i32" || s == "int32") return DType::i32;
    if (s == "bf16" || s == "bfloat16") return DType::bf16;
    throw Error(fmt::format("dtype: unknown dtype '{}', expected one of f32, f64, i32, bf16", s));
}

Device Device::parse(std::string_view s) {
    if (s == "cpu") return cpu();
    if (s == "cuda") return cuda(0);
    if (s.starts_with("cuda:") && s.size() > 5) {
        int idx = 0;
        for (char c : s.substr(5)) {
            MG_CHECK(c >= '0' && c <= '9', "device: bad device '{}', expected cpu, cuda or cuda:N", s);
            idx = idx * 10 + (c - '0');
        }
        return cuda(idx);
    }
    throw Error(fmt::format("device: unknown device '{}', expected cpu, cuda or cuda:N", s));
}

// ---- shapes ---------------------------------------------------------------------------------
int64_t numel_of(const Shape& shape) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
}

Shape contiguous_strides(const Shape& shape) {
    Shape st(shape.size());
    int64_t s = 1;
    for (size_t i = shape.size(); i-- > 0;) {
        st[i] = s;
        s *= shape[i];
    }
    return st;
}

std::string shape_str(const Shape& shape) { return fmt::format("({})", fmt::join(shape, ",")); }

std::vector<int64_t> unravel_index(int64_t flat, const Shape& shape) {
    std::vector<int64_t> idx(shape.size());
    for (size_t d = shape.size(); d-- > 0;) {
        idx[d] = flat % shape[d];
        flat /= shape[d];
    }
    return idx;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
    int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
    MG_CHECK(dim >= lo && dim <= hi, "{}: dim {} out of range for a tensor of {} dims (expected {}..{})",
             op, dim, ndim, lo, hi);
    return dim < 0 ? dim + (ndim == 0 ? 1 : ndim) : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
    size_t n = std::max(a.size(), b.size());
    Shape out(n);
    for (size_t i = 0; i < n; ++i) {
        int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
        int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
        MG_CHECK(da == db || da == 1 || db == 1,
                 "{}: shapes {} and {} cannot be broadcast (dim {}: {} vs {})", op, shape_str(a),
                 shape_str(b), i, da, db);
        out[i] = da == 1 ? db : da;
    }
    return out;
}

Shape broadcast_strides(const Shape& shape, const Shape& strides, const Shape& target) {
    Shape out(target.size(), 0);
    size_t lead = target.size() - shape.size();
    for (size_t i = 0; i < shape.size(); ++i)
        out[lead + i] = shape[i] == 1 && target[lead + i] != 1 ? 0 : strides[i];
    return out;
}

// ---- storage --------------------------------------------------------------------------------
std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
    auto s = std::make_shared<Storage>();
    s->nbytes = nbytes;
    s->device = device;
    if (device.is_cpu()) {
        size_t n = (std::max<size_t>(nbytes, 1) + 63) / 64 * 64;
        s->data = std::aligned_alloc(64, n);
        MG_CHECK(s->data, "cpu: out of memory allocating {} bytes", nbytes);
    } else {
        s->data = cuda::alloc(nbytes, device.index);
    }
    return s;
}

Storage::~Storage() {
    if (!data) return;
    if (device.is_cpu()) std::free(data);
    else cuda::free(data, device.index);
}

// ---- generator ------------------------------------------------------------------------------
Generator& default_generator() {
    static Generator g(0x6d616d6261ULL); // "mamba"
    return g;
}
void manual_seed(uint64_t seed) { default_generator().set_state(seed, 0); }

// ---- Tensor ---------------------------------------------------------------------------------
TensorImpl& Tensor::impl() const {
    MG_CHECK(impl_, "tensor: use of an undefined tensor (default-constructed, or a gradient "
                    "that was never computed)");
    return *impl_;
}

int64_t Tensor::size(int64_t d) const { return shape()[size_t(wrap_dim(d, dim(), "size"))]; }

bool Tensor::is_contiguous() const {
    int64_t expect = 1;
    for (size_t i = shape().size(); i-- > 0;) {
        if (shape()[i] == 1) continue;
        if (strides()[i] != expect) return false;
        expect *= shape()[i];
    }
    return true;
}

std::string Tensor::desc() const {
    if (!defined()) return "undefined";
    return fmt::format("{} {} {}", shape_str(shape()), dtype_name(dtype()), device().str());
}

void* Tensor::raw_data() const {
    return static_cast<char*>(impl().storage->data) + offset() * int64_t(dtype_size(dtype()));
}

template <typename T> T* Tensor::data() const {
    MG_CHECK(dtype() == dtype_of<T>, "data: tensor is {}, but data<{}>() was asked for", desc(),
             dtype_name(dtype_of<T>));
    return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int32_t* Tensor::data<int32_t>() const;
template bf16* Tensor::data<bf16>() const;

Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = base.impl().storage;
    impl->shape = shape;
    impl->strides = strides;
    impl->offset = offset;
    impl->dtype = base.dtype();
    impl->device = base.device();
    return Tensor(std::move(impl));
}

Tensor Tensor::empty(const Shape& shape, Options o) {
    for (int64_t s : shape)
        MG_CHECK(s >= 0, "empty: negative size in shape {}", shape_str(shape));
    MG_CHECK(int64_t(shape.size()) <= kMaxDims, "empty: shape {} has {} dims, at most {} are supported",
             shape_str(shape), shape.size(), int(kMaxDims));
    if (o.device.is_cuda())
        MG_CHECK(o.device.index < cuda::device_count(),
                 "empty: device {} requested, but {} CUDA device(s) are visible{}", o.device.str(),
                 cuda::device_count(), cuda::built_with_cuda() ? "" : " (built with CUDA=0)");
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = Storage::allocate(size_t(numel_of(shape)) * dtype_size(o.dtype), o.device);
    impl->shape = shape;
    impl->strides = contiguous_strides(shape);
    impl->dtype = o.dtype;
    impl->device = o.device;
    Tensor t(std::move(impl));
    if (o.requires_grad) t.set_requires_grad(true);
    return t;
}

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Options o) {
    MG_CHECK(int64_t(values.size()) == numel_of(shape),
             "from_vector: {} values given for shape {} ({} elements)", values.size(),
             shape_str(shape), numel_of(shape));
    bool rg = o.requires_grad;
    Options host{dtype_of<T>, Device::cpu(), false};
    Tensor t = empty(shape, host);
    if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
    if (o.dtype != dtype_of<T>) t = t.to(o.dtype);
    if (o.device != Device::cpu()) t = t.to(o.device);
    if (rg) t.set_requires_grad(true);
    return t;
}
template Tensor Tensor::from_vector<float>(const std::vector<float>&, const Shape&, Options);
template Tensor Tensor::from_vector<double>(const std::vector<double>&, const Shape&, Options);
template Tensor Tensor::from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Options);
template Tensor Tensor::from_vector<bf16>(const std::vector<bf16>&, const Shape&, Options);

template <typename T> std::vector<T> Tensor::to_vector() const {
    MG_CHECK(dtype() == dtype_of<T>, "to_vector: tensor is {}, but to_vector<{}>() was asked for; "
             "convert with .to(dtype) first", desc(), dtype_name(dtype_of<T>));
    Tensor c = detach().contiguous();
    std::vector<T> out(size_t(c.numel()));
    if (out.empty()) return out;
    if (c.device().is_cpu()) std::memcpy(out.data(), c.raw_data(), out.size() * sizeof(T));
    else cuda::copy_d2h(out.data(), c.raw_data(), out.size() * sizeof(T), c.device().index);
    return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<bf16> Tensor::to_vector<bf16>() const;

double Tensor::item() const {
    MG_CHECK(numel() == 1, "item: tensor {} has {} elements, expected exactly 1", desc(), numel());
    switch (dtype()) {
    case DType::f32: return to_vector<float>()[0];
    case DType::f64: return to_vector<double>()[0];
    case DType::bf16: return double(to_vector<bf16>()[0]);
    case DType::i32: return to_vector<int32_t>()[0];
    }
    return 0;
}

Tensor& Tensor::set_requires_grad(bool r) {
    MG_CHECK(is_leaf(), "set_requires_grad: tensor {} is not a leaf (it was computed by {}); "
             "detach() it first", desc(), "an op");
    MG_CHECK(!r || is_differentiable(dtype()), "set_requires_grad: tensor {} has dtype {}; only f32 "
             "and f64 tensors can require grad{}", desc(), dtype_name(dtype()),
             dtype() == DType::bf16 ? " (bf16 is a storage dtype; autocast will make it differentiable)" : "");
    impl().requires_grad = r;
    return *this;
}

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

} // namespace mg
