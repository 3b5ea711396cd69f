// tensor/device.h: where a tensor lives: cpu, or cuda:N.
#pragma once
#include <string>
#include <string_view>

namespace mg {

struct Device {
    enum Kind : uint8_t { CPU, CUDA };
    Kind kind = CPU;
    int index = 0;

    static constexpr Device cpu() { return {CPU, 0}; }
    static constexpr Device cuda(int i = 0) { return {CUDA, i}; }
    bool is_cpu() const { return kind == CPU; }
    bool is_cuda() const { return kind == CUDA; }
    bool operator==(const Device&) const = default;
    std::string str() const { return kind == CPU ? "cpu" : "cuda:" + std::to_string(index); }
    // "cpu", "cuda" (= cuda:0) or "cuda:N"; throws mg::Error naming the text otherwise.
    static Device parse(std::string_view s);
};

} // namespace mg
