// tensor/tensor.h: the Tensor handle.
//
// A Tensor is a cheap shared handle to a TensorImpl: storage + shape + strides + offset + dtype
// + device, plus autograd metadata (requires_grad, grad, grad_fn). Copying a Tensor copies the
// handle, not the data. Views (reshape, transpose, permute, narrow, squeeze, unsqueeze, expand)
// share storage. Kernels take contiguous inputs; contiguous() copies when needed.
//
// Dependency note: the differentiable methods (views, to(), arithmetic operators) are declared
// here for convenience but implemented in ops/, which records their autograd nodes.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/generator.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace mg {

namespace autograd { struct Node; }

struct Options {
    DType dtype = DType::f32;
    Device device = Device::cpu();
    bool requires_grad = false;
};

struct TensorImpl {
    std::shared_ptr<Storage> storage;
    Shape shape;
    Shape strides;
    int64_t offset = 0; // in elements
    DType dtype = DType::f32;
    Device device;

    // autograd
    bool requires_grad = false;
    std::shared_ptr<TensorImpl> grad;
    std::shared_ptr<autograd::Node> grad_fn; // null for leaves
    uint32_t output_nr = 0;                  // which output of grad_fn this is
    std::weak_ptr<autograd::Node> grad_accumulator; // leaves: their AccumulateGrad node
};

class Tensor {
public:
    Tensor() = default;
    explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

    // ---- factories -------------------------------------------------------------------------
    static Tensor empty(const Shape& shape, Options o = {});
    static Tensor zeros(const Shape& shape, Options o = {});
    static Tensor ones(const Shape& shape, Options o = {});
    static Tensor full(const Shape& shape, double value, Options o = {});
    static Tensor arange(int64_t n, Options o = {}); // 0, 1, ..., n-1
    static Tensor uniform(const Shape& shape, double lo, double hi, Options o = {},
                          Generator& gen = default_generator());
    static Tensor randn(const Shape& shape, Options o = {}, Generator& gen = default_generator());
    // From host values. Without options the dtype is T's (f32 for float, f64 for double, i32).
    template <typename T>
    static Tensor from_vector(const std::vector<T>& values, const Shape& shape, Options o);
    template <typename T>
    static Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
        return from_vector(values, shape, Options{dtype_of<T>});
    }
    // A 0-dim tensor holding v.
    static Tensor scalar(double v, Options o = {});

    // ---- metadata --------------------------------------------------------------------------
    bool defined() const { return impl_ != nullptr; }
    const Shape& shape() const { return impl().shape; }
    const Shape& strides() const { return impl().strides; }
    int64_t dim() const { return int64_t(impl().shape.size()); }
    int64_t size(int64_t d) const;
    int64_t numel() const { return numel_of(impl().shape); }
    int64_t offset() const { return impl().offset; }
    DType dtype() const { return impl().dtype; }
    Device device() const { return impl().device; }
    bool is_cuda() const { return impl().device.is_cuda(); }
    bool is_contiguous() const;
    Options options() const { return {dtype(), device(), false}; }
    // "(2,3) f32 cpu": used in every error message.
    std::string desc() const;

    // Raw pointer to the first element (storage + offset). T must match dtype.
    template <typename T> T* data() const;
    void* raw_data() const;

    // ---- host access (synchronises with the device) ----------------------------------------
    template <typename T> std::vector<T> to_vector() const; // row-major; T must match dtype
    double item() const;                                   // one-element tensors only
    std::string str() const;                               // PyTorch-like printing

    // ---- differentiable views and conversions (ops/view.cpp, ops/copy.cpp) -----------------
    Tensor reshape(const Shape& shape) const; // view when possible, else copy; one dim may be -1
    Tensor view(const Shape& shape) const;    // view only; throws if strides do not allow it
    Tensor transpose(int64_t d0, int64_t d1) const;
    Tensor permute(const std::vector<int64_t>& dims) const;
    Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
    Tensor slice(int64_t dim, int64_t start, int64_t end) const; // [start, end)
    Tensor squeeze(int64_t dim) const;
    Tensor unsqueeze(int64_t dim) const;
    Tensor expand(const Shape& shape) const; // -1 keeps a dim
    Tensor contiguous() const;
    Tensor to(Device device) const;
    Tensor to(DType dtype) const;
    Tensor clone() const;

    // ---- autograd (autograd/) --------------------------------------------------------------
    bool requires_grad() const { return impl().requires_grad; }
    // Leaves only (tensors with no grad_fn), floating dtypes only.
    Tensor& set_requires_grad(bool r = true);
    Tensor grad() const { return Tensor(impl().grad); }
    void zero_grad() const { impl().grad.reset(); } // sets .grad to undefined (set_to_none)
    const std::shared_ptr<autograd::Node>& grad_fn() const { return impl().grad_fn; }
    // The name of the op that made this tensor ("MatmulBackward"), or "" for a leaf; defined in
    // autograd/engine.cpp, where Node is, so that printing needs nothing above tensor/.
    std::string grad_fn_name() const;
    bool is_leaf() const { return impl().grad_fn == nullptr; }
    // Same data, no autograd history.
    Tensor detach() const;
    // Reverse-mode differentiation from this tensor. With no gradient the tensor must hold one
    // element. retain_graph keeps saved tensors for a second backward.
    void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;

    TensorImpl& impl() const;
    const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
    bool same(const Tensor& o) const { return impl_ == o.impl_; }

private:
    std::shared_ptr<TensorImpl> impl_;
};

// A new TensorImpl that aliases `base`'s storage with the given geometry (no autograd).
Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset);

// Arithmetic operators (ops/elementwise.cpp). Scalars broadcast as 0-dim tensors.
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double s);
Tensor operator-(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator/(const Tensor& a, double s);
Tensor operator*(double s, const Tensor& a);

} // namespace mg

