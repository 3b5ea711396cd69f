// tensor/dtype.h: element types. f32 and f64 are differentiable; i32 holds indices and labels.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mg {

enum class DType : uint8_t { f32, f64, i32 };

constexpr size_t dtype_size(DType t) { return t == DType::f64 ? 8 : 4; }
constexpr std::string_view dtype_name(DType t) {
    return t == DType::f32 ? "f32" : t == DType::f64 ? "f64" : "i32";
}
constexpr bool is_floating(DType t) { return t != DType::i32; }

template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::f32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::f64; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::i32; };
template <typename T> constexpr DType dtype_of = DTypeOf<T>::value;

// dispatch_float(t, op, [&]<typename T>() { ... }): calls the lambda with T = float or double;
// throws naming `op` for i32. dispatch_all also admits int32_t.
DType parse_dtype(std::string_view s); // "f32" | "f64" | "i32"; throws otherwise

} // namespace mg
