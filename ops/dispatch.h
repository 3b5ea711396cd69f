// ops/dispatch.h: dtype dispatch and the argument checks every op shares.
#pragma once
#include <initializer_list>

#include "tensor/check.h"
#include "tensor/indexing.h"
#include "tensor/tensor.h"

namespace mg {

// dispatch_float(dtype, "op", [&]<typename T>() { kernel<T>(...); }): T = float or double.
template <typename F> void dispatch_float(DType t, const char* op, F&& f) {
    switch (t) {
    case DType::f32: f.template operator()<float>(); return;
    case DType::f64: f.template operator()<double>(); return;
    default:
        throw Error(fmt::format("{}: dtype {} is not supported, expected f32 or f64", op, dtype_name(t)));
    }
}
// As dispatch_float, with int32_t admitted too.
template <typename F> void dispatch_all(DType t, F&& f) {
    switch (t) {
    case DType::f32: f.template operator()<float>(); return;
    case DType::f64: f.template operator()<double>(); return;
    case DType::i32: f.template operator()<int32_t>(); return;
    }
}

// `op: <name> is <desc>, expected ...` checks used at op boundaries.
void check_defined(const char* op, const char* name, const Tensor& t);
void check_float(const char* op, const char* name, const Tensor& t);
// a and b must share dtype and device; the message names both tensors.
void check_same(const char* op, const char* na, const Tensor& a, const char* nb, const Tensor& b);
void check_dim(const char* op, const char* name, const Tensor& t, int64_t ndim);

StridedIndexer make_indexer(const Shape& shape, const Shape& strides);
// Rewrites a walk over `shape` by several operands (each with its own strides, same rank) as an
// equivalent walk over fewer dims: drops size-1 dims and merges dim d into d+1 wherever every
// operand has stride[d] == stride[d+1] * shape[d+1]. The row-major order of the elements is
// unchanged, so a strided kernel given the result touches the same elements in the same order,
// with fewer index divisions (a contiguous operand collapses to one dim).
void coalesce_dims(Shape& shape, std::initializer_list<Shape*> strides);
inline StridedIndexer make_indexer(const Tensor& t) { return make_indexer(t.shape(), t.strides()); }

// ---- non-differentiable primitives other ops build on (ops/copy.cpp) ------------------------
// dst = src elementwise (shapes equal; strides arbitrary; dtypes may differ; src is moved to
// dst's device first if needed). Writes into dst's storage.
void copy_into(const Tensor& dst, const Tensor& src);

} // namespace mg

// CUDA launcher calls compile only in CUDA builds. A CPU-only build cannot create CUDA tensors,
// so the other branch is unreachable.
#ifdef MG_CUDA
#define MG_CUDA_ONLY(...) __VA_ARGS__
#else
#define MG_CUDA_ONLY(...) throw ::mg::Error("internal error: a CUDA tensor reached a CPU-only build")
#endif

namespace mg {
// Below this many elements a CPU loop runs on one thread (OpenMP start-up costs more).
constexpr int64_t kParallelGrain = 1 << 15;
}
