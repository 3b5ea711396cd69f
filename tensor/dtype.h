// tensor/dtype.h: element types.
//   f32, f64   floating, differentiable: every op computes in them, autograd differentiates them
//   bf16       floating, storage only (2 bytes, common/bf16.h): converts to and from the others
//              (.to(), copies, fills, safetensors "BF16") and feeds matmul_bf16 (ops/matmul.h:
//              bf16 inputs, fp32 accumulation and output). No other op takes it (each says so),
//              and it cannot require grad: autocast, which will make bf16 differentiable, is the
//              next step.
//   i32        indices and labels
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/bf16.h"

namespace mg {

enum class DType : uint8_t { f32, f64, i32, bf16 };

constexpr size_t dtype_size(DType t) {
    switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i32: return 4;
    case DType::bf16: return 2;
    }
    return 0;
}
constexpr std::string_view dtype_name(DType t) {
    switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::i32: return "i32";
    case DType::bf16: return "bf16";
    }
    return "?";
}
// Holds real numbers (f32, f64, bf16): what converts as a float, is printed as one and is
// checked for NaN/Inf in files.
constexpr bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; }
// The dtypes ops compute in and autograd differentiates (f32, f64); what check_float and
// dispatch_float accept and set_requires_grad requires.
constexpr bool is_differentiable(DType t) { return t == DType::f32 || t == DType::f64; }

template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::f32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::f64; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::i32; };
template <> struct DTypeOf<bf16> { static constexpr DType value = DType::bf16; };
template <typename T> constexpr DType dtype_of = DTypeOf<T>::value;

// dispatch_float(t, op, [&]<typename T>() { ... }): calls the lambda with T = float or double;
// throws naming `op` for i32 and bf16. dispatch_all also admits int32_t and bf16 (copies, fills).
DType parse_dtype(std::string_view s); // "f32" | "f64" | "i32" | "bf16"; throws otherwise

} // namespace mg
