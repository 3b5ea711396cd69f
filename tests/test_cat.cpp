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

TEST_CASE("cat/split: bad inputs", "[cat][errors]") {
    REQUIRE_ERROR_WITH(cat({}, 0), "cat", "at least one tensor");
    REQUIRE_ERROR_WITH(cat({Tensor::zeros({2, 3}), Tensor::zeros({3, 3})}, 1), "cat", "tensors[1] is (3,3) f32 cpu",
                       "tensors[0] is (2,3) f32 cpu", "except in dim 1");
    REQUIRE_ERROR_WITH(cat({Tensor::zeros({2}), Tensor::zeros({2}, {DType::f64})}, 0), "cat", "same dtype");
    REQUIRE_ERROR_WITH(split(Tensor::zeros({5}), std::vector<int64_t>{2, 2}, 0), "split", "add up to 4", "size 5");
    REQUIRE_ERROR_WITH(split(Tensor::zeros({5}), int64_t(0), 0), "split", "piece size 0");
}
