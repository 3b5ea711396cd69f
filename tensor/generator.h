// tensor/generator.h: a seeded random stream. Each draw consumes numel counters, so two draws
// never overlap, and the values depend only on (seed, counter): the same on CPU and CUDA.
#pragma once
#include <cstdint>

namespace mg {

class Generator {
public:
    explicit Generator(uint64_t seed = 0) : seed_(seed) {}
    uint64_t seed() const { return seed_; }
    uint64_t offset() const { return offset_; }
    void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }
    // Reserves n counters and returns the first.
    uint64_t take(uint64_t n) { uint64_t o = offset_; offset_ += n; return o; }

private:
    uint64_t seed_ = 0;
    uint64_t offset_ = 0;
};

// The process-wide generator used when a factory is given none.
Generator& default_generator();
void manual_seed(uint64_t seed);

} // namespace mg
