// tests/nn_helpers.h: what the tests of nn/ share: a small config, random token ids, parameter
// names.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include "mambagrad.h"
#include "nn/config.h"
#include "nn/module.h"

namespace mg::test {

// A small config: d_model 16 (D 32, R 1), 2 layers, vocab 13 (padded to 16), d_state 4.
inline nn::MambaConfig small_config(bool global_selection, int64_t k_long = 5,
                                    CausalConvMode mode = CausalConvMode::direct) {
    nn::MambaConfig c;
    c.d_model = 16;
    c.n_layer = 2;
    c.vocab_size = 13;
    c.d_state = 4;
    c.global_selection.enabled = global_selection;
    c.global_selection.k_long = k_long;
    c.global_selection.mode = mode;
    return c;
}

inline Tensor random_ids(int64_t B, int64_t L, int64_t V, uint64_t seed) {
    Generator g(seed);
    std::vector<double> u = Tensor::uniform({B * L}, 0.0, double(V), {DType::f64}, g).to_vector<double>();
    std::vector<int32_t> ids(u.size());
    for (size_t i = 0; i < u.size(); ++i) ids[i] = std::min<int32_t>(int32_t(u[i]), int32_t(V - 1));
    return Tensor::from_vector(ids, {B, L});
}

inline std::vector<std::string> names_of(const nn::NamedTensors& nt) {
    std::vector<std::string> out;
    for (const auto& [n, t] : nt) out.push_back(n);
    return out;
}

} // namespace mg::test
