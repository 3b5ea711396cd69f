// tests/test_cat.cpp: cat and split: values, gradcheck on each device, parity, bad inputs.
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

TEST_CASE("cat/split: values and round trip", "[cat]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Tensor a = Tensor::arange(6, {DType::i32, dev}).reshape({2, 3});
            Tensor b = (Tensor::arange(2, {DType::f32, dev}) + 100.0).reshape({2, 1}).to(DType::i32);
            Tensor c = cat({a, b}, 1);
            CHECK(c.to_vector<int32_t>() == std::vector<int32_t>{0, 1, 2, 100, 3, 4, 5, 101});
            Generator g(41);
            Tensor x = Tensor::randn({4, 7, 3}, {DType::f32, dev}, g);
            auto parts = split(x, 3, 1);
            REQUIRE(parts.size() == 3);
            CHECK(parts[2].shape() == Shape{4, 1, 3});
            CHECK(parts[0].impl().storage == x.impl().storage); // views
            CHECK(cat(parts, 1).to_vector<float>() == x.to_vector<float>());
            auto p2 = split(x, {1, 3}, 0);
            CHECK(p2[1].shape() == Shape{3, 7, 3});
        }
    }
}

TEST_CASE("flip: values against index arithmetic, on views and every dtype", "[cat]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator g(42);
            Tensor x = Tensor::randn({3, 5, 4}, {DType::f32, dev}, g);
            auto v = x.to_vector<float>();
            for (int64_t dim = 0; dim < 3; ++dim) {
                Tensor y = flip(x, dim);
                REQUIRE(y.shape() == x.shape());
                CHECK(y.is_contiguous());
                auto f = y.to_vector<float>();
                for (int64_t i = 0; i < 3; ++i)
                    for (int64_t j = 0; j < 5; ++j)
                        for (int64_t k = 0; k < 4; ++k) {
                            int64_t s[3] = {i, j, k};
                            s[dim] = x.size(dim) - 1 - s[dim];
                            INFO("dim " << dim << " at (" << i << "," << j << "," << k << ")");
                            CHECK(f[size_t((i * 5 + j) * 4 + k)] == v[size_t((s[0] * 5 + s[1]) * 4 + s[2])]);
                        }
            }
            // a non-contiguous view in, flipping twice is the identity
            Tensor t = x.transpose(0, 2).narrow(1, 1, 3);
            CHECK(flip(flip(t, 2), 2).to_vector<float>() == t.contiguous().to_vector<float>());
            // integers flip too (no gradient)
            Tensor ints = Tensor::arange(5, {DType::i32, dev});
            CHECK(flip(ints, 0).to_vector<int32_t>() == std::vector<int32_t>{4, 3, 2, 1, 0});
            CHECK(flip(Tensor::zeros({2, 0}, {DType::f32, dev}), 1).shape() == Shape{2, 0});
        }
    }
}

TEST_CASE("cat/split: bad inputs", "[cat][errors]") {
    REQUIRE_ERROR_WITH(flip(Tensor::zeros({2, 3}), 2), "flip", "dim");
    REQUIRE_ERROR_WITH(flip(Tensor::scalar(1.0, {}), 0), "flip", "0-dim");
    REQUIRE_ERROR_WITH(flip(Tensor(), 0), "flip", "undefined");
    REQUIRE_ERROR_WITH(cat({}, 0), "cat", "at least one tensor");
    REQUIRE_ERROR_WITH(cat({Tensor::zeros({2, 3}), Tensor::zeros({3, 3})}, 1), "cat", "tensors[1] is (3,3) f32 cpu",
                       "tensors[0] is (2,3) f32 cpu", "except in dim 1");
    REQUIRE_ERROR_WITH(cat({Tensor::zeros({2}), Tensor::zeros({2}, {DType::f64})}, 0), "cat", "same dtype");
    REQUIRE_ERROR_WITH(split(Tensor::zeros({5}), std::vector<int64_t>{2, 2}, 0), "split", "add up to 4", "size 5");
    REQUIRE_ERROR_WITH(split(Tensor::zeros({5}), int64_t(0), 0), "split", "piece size 0");
}
