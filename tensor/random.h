// tensor/random.h: counter-based random numbers shared by the CPU and CUDA factories.
//
// Element i of a draw with (seed, offset) is a pure function of (seed, offset + i), so the same
// generator state gives the same stream on every device and with any number of threads.
// The mixer is SplitMix64's finaliser applied to a Weyl-sequence key (Steele et al. 2014).
#pragma once
#include <cmath>
#include <cstdint>

#include "tensor/indexing.h"

namespace mg::rng {

MG_HD uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// 64 random bits for counter `c` of stream `seed`; `lane` gives independent sub-streams.
MG_HD uint64_t bits(uint64_t seed, uint64_t c, uint64_t lane = 0) {
    return mix64(mix64(seed * 0x9e3779b97f4a7c15ULL + lane) + c * 0xd1b54a32d192ed03ULL);
}

// Uniform in [0, 1) with 53 random bits.
MG_HD double uniform01(uint64_t seed, uint64_t c, uint64_t lane = 0) {
    return double(bits(seed, c, lane) >> 11) * 0x1.0p-53;
}

// Standard normal by Box-Muller from two independent uniforms (lane 0 and 1); 1 - u keeps the
// logarithm's argument in (0, 1].
MG_HD double normal(uint64_t seed, uint64_t c) {
    double u1 = 1.0 - uniform01(seed, c, 0);
    double u2 = uniform01(seed, c, 1);
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

} // namespace mg::rng
