// tests/train_helpers.h: what the tests of train/'s pieces share (optim, clip, guard, checkpoint,
// metrics): bit equality, host copies, raw file bytes, hostile safetensors files.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mambagrad.h"
#include "nn/mamba.h"

namespace mg::test {

inline void set_grad(const Tensor& p, const Tensor& g) { p.impl().grad = g.impl_ptr(); }

inline std::vector<double> host(const Tensor& t) {
    return t.detach().to(DType::f64).to(Device::cpu()).to_vector<double>();
}

// Bit equality of two tensors' contents (same dtype and shape).
inline bool same_bits(const Tensor& a, const Tensor& b) {
    if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
    Tensor ha = a.detach().to(Device::cpu()).contiguous(), hb = b.detach().to(Device::cpu()).contiguous();
    return std::memcmp(ha.raw_data(), hb.raw_data(), size_t(ha.numel()) * dtype_size(ha.dtype())) == 0;
}

inline std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}
inline void write_all(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}
// The rows of a metrics.jsonl without their timing fields (tokens_per_s, elapsed_s, train_s,
// eval_s, peak_bytes): what an interrupted and resumed run must reproduce exactly.
inline std::vector<nlohmann::json> metrics_rows_without_timing(const std::string& path) {
    std::vector<nlohmann::json> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        nlohmann::json row = nlohmann::json::parse(line);
        for (const char* timing : {"tokens_per_s", "elapsed_s", "train_s", "eval_s", "peak_bytes"}) row.erase(timing);
        out.push_back(row);
    }
    return out;
}

// A safetensors file from a header text and a data section, as a hostile writer would make it.
inline std::string raw_safetensors(const std::string& header, const std::string& data) {
    std::string out(8, '\0');
    uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    return out + header + data;
}

} // namespace mg::test
