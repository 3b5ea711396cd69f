// ops/dispatch.h: how an op picks its kernel: by dtype (dispatch_float, dispatch_all), by device
// (MG_CUDA_ONLY around CUDA launcher calls) and by size (kParallelGrain for OpenMP loops). The
// argument checks are ops/checks.h, strided walks ops/strided.h, copy_into ops/copy.h.
#pragma once
#include "tensor/check.h"
#include "tensor/tensor.h"

namespace mg {

// dispatch_float(dtype, "op", [&]<typename T>() { kernel<T>(...); }): T = float or double; i32
// and bf16 (a storage dtype, tensor/dtype.h) are refused naming the op.
template <typename F> void dispatch_float(DType t, const char* op, F&& f) {
    switch (t) {
    case DType::f32: f.template operator()<float>(); return;
    case DType::f64: f.template operator()<double>(); return;
    default:
        throw Error(fmt::format("{}: dtype {} is not supported, expected f32 or f64", op, dtype_name(t)));
    }
}
// Every storage type: float, double, int32_t and bf16. For code that only moves or converts
// elements (copies between dtypes, fills); arithmetic goes through dispatch_float.
template <typename F> void dispatch_all(DType t, F&& f) {
    switch (t) {
    case DType::f32: f.template operator()<float>(); return;
    case DType::f64: f.template operator()<double>(); return;
    case DType::i32: f.template operator()<int32_t>(); return;
    case DType::bf16: f.template operator()<bf16>(); return;
    }
}

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
