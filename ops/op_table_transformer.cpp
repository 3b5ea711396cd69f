// ops/op_table_transformer.cpp: op-table cases for the Transformer's ops (layernorm, softmax, rope,
// attention).
#include <limits>

#include "ops/attention.h"
#include "ops/layernorm.h"
#include "ops/op_table.h"
#include "ops/rope.h"
#include "ops/softmax.h"

namespace mg {

namespace {

using Inputs = std::vector<Tensor>;

} // namespace

void add_transformer_cases(std::vector<OpCase>& c) {
    auto add = [&](std::string op, std::string label, auto inputs, auto fn) {
        c.push_back({std::move(op), std::move(label), inputs, fn});
    };

    // ---- layernorm, softmax ----
    add("layernorm", "x (2,3,7) around 3, weight (7), bias (7), eps 1e-5", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({2, 3, 7}, o, g) + 3.0, Tensor::randn({7}, o, g), Tensor::randn({7}, o, g)};
    }, [](const Inputs& x) { return layer_norm(x[0], x[1], x[2]); });
    add("layernorm", "x (1,1), weight (1), bias (1), eps 0.1: y = bias, dx = 0", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({1, 1}, o, g), Tensor::randn({1}, o, g), Tensor::randn({1}, o, g)};
    }, [](const Inputs& x) { return layer_norm(x[0], x[1], x[2], 0.1); });
    add("layernorm", "x (1,5), one row, weight (5), bias (5)", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({1, 5}, o, g), Tensor::randn({5}, o, g), Tensor::randn({5}, o, g)};
    }, [](const Inputs& x) { return layer_norm(x[0], x[1], x[2]); });
    add("layernorm", "x (5,4)^T transposed view, weight (5), bias (5)", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({5, 4}, o, g), Tensor::randn({5}, o, g), Tensor::randn({5}, o, g)};
    }, [](const Inputs& x) { return layer_norm(x[0].transpose(0, 1), x[1], x[2]); });
    add("layernorm", "x (3,2,6), weight (6), no bias, eps 1e-3", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({3, 2, 6}, o, g), Tensor::randn({6}, o, g)};
    }, [](const Inputs& x) { return layer_norm(x[0], x[1], Tensor(), 1e-3); });
    add("softmax", "x (2,3,7), |x| up to ~6", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({2, 3, 7}, o, g) * 2.0};
    }, [](const Inputs& x) { return softmax(x[0]); });
    add("softmax", "x (1,1): y = 1, dx = 0", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({1, 1}, o, g)};
    }, [](const Inputs& x) { return softmax(x[0]); });
    add("softmax", "x (5,4)^T transposed view", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({5, 4}, o, g)};
    }, [](const Inputs& x) { return softmax(x[0].transpose(0, 1)); });
    add("softmax", "x (2,6) + 1000: no overflow", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({2, 6}, o, g) + 1000.0};
    }, [](const Inputs& x) { return softmax(x[0]); });
    add("softmax", "x (3,5): row 0 with two -inf, row 2 all -inf (zeros, zero gradient)", [](Options o, Generator& g) {
        const double inf = std::numeric_limits<double>::infinity();
        std::vector<double> mask(15, 0.0);
        mask[1] = mask[3] = -inf;
        for (int j = 10; j < 15; ++j) mask[size_t(j)] = -inf;
        Tensor m = Tensor::from_vector(mask, {3, 5}).to(o.dtype).to(o.device);
        return Inputs{Tensor::randn({3, 5}, o, g) + m};
    }, [](const Inputs& x) { return softmax(x[0]); });

    // ---- rope, attention ----
    add("rope", "x (2,3,5,8), all 8 dims rotate", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({2, 3, 5, 8}, o, g)};
    }, [](const Inputs& x) { return rope(x[0], 8); });
    add("rope", "x (3,6) of a (6,3)^T view, rotary_dims 2 of 6, base 100, positions from 4", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({6, 3}, o, g)};
    }, [](const Inputs& x) { return rope(x[0].transpose(0, 1), 2, 100.0, 4); });
    add("attention", "causal q, k, v (2,2,9,5), scale 1/sqrt 5", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({2, 2, 9, 5}, o, g), Tensor::randn({2, 2, 9, 5}, o, g), Tensor::randn({2, 2, 9, 5}, o, g)};
    }, [](const Inputs& x) { return attention(x[0], x[1], x[2]); });
    add("attention", "causal q (1,3,4) against a cache k, v (1,11,4), scale 0.7", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({1, 3, 4}, o, g), Tensor::randn({1, 11, 4}, o, g), Tensor::randn({1, 11, 4}, o, g)};
    }, [](const Inputs& x) { return attention(x[0], x[1], x[2], true, 0.7); });
    add("attention", "full (not causal) q (2,7,3), k, v (2,5,3); q a transposed view", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({2, 3, 7}, o, g), Tensor::randn({2, 5, 3}, o, g), Tensor::randn({2, 5, 3}, o, g)};
    }, [](const Inputs& x) { return attention(x[0].transpose(1, 2), x[1], x[2], false); });
    add("attention", "causal q, k, v (1,1,1,1)", [](Options o, Generator& g) {
        return Inputs{Tensor::randn({1, 1, 1, 1}, o, g), Tensor::randn({1, 1, 1, 1}, o, g), Tensor::randn({1, 1, 1, 1}, o, g)};
    }, [](const Inputs& x) { return attention(x[0], x[1], x[2]); });
}

} // namespace mg
