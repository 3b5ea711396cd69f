// tests/test_reduce.cpp: sum / mean / max over dims against the double reference, gradcheck on
// each device, CUDA-vs-CPU parity, awkward sizes, bad inputs.
#include "tests/helpers.h"

using namespace mg;
using mg::test::devices;

TEST_CASE("reduce: values against reduce_rows_ref, every dim choice", "[reduce]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator g(21);
            Tensor x = Tensor::randn({3, 5, 7}, {DType::f32, dev}, g);
            auto v = x.to_vector<float>();
            // over dim 1: rows of the permuted (3,7,5) tensor
            Tensor xp = x.permute({0, 2, 1}).contiguous();
            auto vp = xp.to_vector<float>();
            for (ReduceOp op : {ReduceOp::sum, ReduceOp::mean, ReduceOp::max}) {
                std::vector<double> ref(21);
                reduce_rows_ref<float>(ref.data(), vp.data(), 21, 5, op);
                Tensor got = op == ReduceOp::sum ? sum(x, {1}) : op == ReduceOp::mean ? mean(x, {1}) : max(x, {1});
                REQUIRE(got.shape() == Shape{3, 7});
                mg::test::require_close(got, Tensor::from_vector(ref, {3, 7}), 1e-6, 1e-6, "reduce over dim 1");
            }
            CHECK(sum(x, {0, 2}, true).shape() == Shape{1, 5, 1});
            CHECK(sum(x).shape() == Shape{});
            double total = 0;
            for (float f : v) total += f;
            CHECK(sum(x).item() == Approx(total).epsilon(1e-5));
            CHECK(mean(x, {-1}, true).shape() == Shape{3, 5, 1});
            // a long row: the CUDA tree reduction over many threads (inner = 100003, prime)
            Tensor big = Tensor::uniform({2, 100003}, 0, 1, {DType::f64, dev}, g);
            auto vb = big.to_vector<double>();
            std::vector<double> rb(2);
            reduce_rows_ref<double>(rb.data(), vb.data(), 2, 100003, ReduceOp::sum);
            mg::test::require_close(sum(big, {1}), Tensor::from_vector(rb, {2}), 1e-12, 0, "long rows");
            // empty reduced dim: sum is 0
            CHECK(sum(Tensor::zeros({3, 0}, {DType::f32, dev}), {1}).to_vector<float>() == std::vector<float>(3, 0.f));
        }
    }
}

TEST_CASE("reduce: max breaks ties by the lowest index, in both directions", "[reduce]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Tensor x = Tensor::from_vector(std::vector<double>{1, 3, 3, 0, 2, 2}, {2, 3}, {DType::f64, dev, true});
            Tensor m = max(x, {1});
            CHECK(m.to_vector<double>() == std::vector<double>{3, 2});
            sum(m).backward();
            CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 1, 0, 0, 1, 0});
        }
    }
}

TEST_CASE("reduce: bad inputs", "[reduce][errors]") {
    Tensor x = Tensor::zeros({2, 3});
    REQUIRE_ERROR_WITH(sum(x, {2}), "sum", "dim 2 out of range", "2 dims");
    REQUIRE_ERROR_WITH(mean(x, {1, -1}), "mean", "dim 1 appears twice");
    REQUIRE_ERROR_WITH(max(Tensor::zeros({2, 0}), {1}), "max", "(2,0) f32 cpu", "empty");
    REQUIRE_ERROR_WITH(sum(Tensor::zeros({2}, {DType::i32})), "sum", "i32");
}
