// common/bf16.h: bfloat16, the storage type of DType::bf16, for the CPU and the CUDA kernels
// alike (MG_HD), so that a conversion gives the same bits on both devices.
//
// A bf16 is the top 16 bits of an IEEE float32: 1 sign, 8 exponent (bias 127, the float's
// range), 7 mantissa bits. So bf16 -> float is exact (append 16 zero bits), and float -> bf16
// rounds away the low 16 bits:
//   - to nearest, ties to even (the IEEE default): add 0x7FFF plus the kept part's last bit,
//     then truncate; a carry out of the mantissa correctly bumps the exponent, and past the
//     largest finite bf16 (0x7F7F, about 3.39e38) it reaches the exponent of Inf, as IEEE
//     overflow under round-to-nearest does;
//   - subnormals, ±0 and ±Inf follow from the same bit arithmetic (the layouts agree);
//   - NaN stays NaN: the sign and the top 7 payload bits are kept and the quiet bit is set, so a
//     payload held only in the low bits cannot round into an Inf.
// Other types convert through float: double -> float -> bf16 rounds twice, as PyTorch's
// tensor.double().to(torch.bfloat16) does (a double just above a bf16 halfway point can round
// to the halfway float, and then to even: at most that one ulp-of-a-tie differs from a single
// rounding). Integers likewise go through float.
//
// bf16 holds no arithmetic: it is a storage type (DType::bf16), converted to float to compute.
#pragma once
#include <bit>
#include <cstdint>
#include <type_traits>

#include "tensor/indexing.h"

namespace mg {

// A float's bits and back (the device intrinsics, or std::bit_cast on the host).
#if defined(__CUDA_ARCH__)
MG_HD uint32_t float_bits(float f) { return __float_as_uint(f); }
MG_HD float float_from_bits(uint32_t u) { return __uint_as_float(u); }
#else
MG_HD uint32_t float_bits(float f) { return std::bit_cast<uint32_t>(f); }
MG_HD float float_from_bits(uint32_t u) { return std::bit_cast<float>(u); }
#endif

// float -> bf16 bits, round to nearest even (see the header comment).
MG_HD uint16_t float_to_bf16_bits(float f) {
    uint32_t u = float_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((u >> 16) | 0x0040u); // NaN: quiet, sign kept
    u += 0x7FFFu + ((u >> 16) & 1u);
    return uint16_t(u >> 16);
}
MG_HD float bf16_bits_to_float(uint16_t b) { return float_from_bits(uint32_t(b) << 16); }

struct bf16 {
    uint16_t bits; // uninitialised by default, like a float; bf16{} is +0

    bf16() = default;
    // From any arithmetic type, through float.
    template <typename U, typename = std::enable_if_t<std::is_arithmetic_v<U>>>
    MG_HD explicit bf16(U v) : bits(float_to_bf16_bits(static_cast<float>(v))) {}
    // To any arithmetic type, through float (exact for float and double).
    template <typename U, typename = std::enable_if_t<std::is_arithmetic_v<U>>>
    MG_HD explicit operator U() const { return static_cast<U>(bf16_bits_to_float(bits)); }

    static MG_HD bf16 from_bits(uint16_t b) {
        bf16 h;
        h.bits = b;
        return h;
    }
};
static_assert(sizeof(bf16) == 2 && alignof(bf16) == 2 && std::is_trivially_copyable_v<bf16>,
              "bf16 must be laid out as its 16 bits");

} // namespace mg
