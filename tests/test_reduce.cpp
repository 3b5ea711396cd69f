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

TEST_CASE("reduce: argmax is the first maximum along a dim, on every device", "[reduce]") {
    for (Device dev : devices()) {
        SECTION(dev.str()) {
            Generator g(77);
            // few distinct values, so rows have ties; odd sizes, and a row longer than a CUDA block
            for (Shape shape : {Shape{5, 7}, Shape{3, 1000, 2}, Shape{1, 1}}) {
                Tensor x = (Tensor::uniform(shape, 0, 4, {DType::f32}, g).to(DType::i32).to(DType::f32)).to(dev);
                const std::vector<float> v = x.to(Device::cpu()).to_vector<float>();
                for (int64_t dim = 0; dim < int64_t(shape.size()); ++dim) {
                    INFO("shape " << shape_str(shape) << " dim " << dim);
                    Tensor a = argmax(x, dim);
                    REQUIRE(a.dtype() == DType::i32);
                    Shape want_shape = shape;
                    want_shape.erase(want_shape.begin() + dim);
                    CHECK(a.shape() == want_shape);
                    CHECK(argmax(x, dim, true).shape()[size_t(dim)] == 1);
                    // naive: walk each group in order, keep the first strictly larger value
                    const std::vector<int32_t> got = a.to(Device::cpu()).to_vector<int32_t>();
                    const Shape st = contiguous_strides(shape);
                    int64_t outer = 1, inner = 1;
                    for (int64_t d = 0; d < dim; ++d) outer *= shape[size_t(d)];
                    for (int64_t d = dim + 1; d < int64_t(shape.size()); ++d) inner *= shape[size_t(d)];
                    for (int64_t o = 0; o < outer; ++o)
                        for (int64_t i = 0; i < inner; ++i) {
                            const int64_t base = o * shape[size_t(dim)] * inner + i;
                            int32_t best = 0;
                            for (int64_t k = 1; k < shape[size_t(dim)]; ++k)
                                if (v[size_t(base + k * st[size_t(dim)])] > v[size_t(base + best * st[size_t(dim)])])
                                    best = int32_t(k);
                            CHECK(got[size_t(o * inner + i)] == best);
                        }
                }
            }
        }
    }
    REQUIRE_ERROR_WITH(argmax(Tensor::zeros({2, 0}), 1), "argmax", "(2,0) f32 cpu", "empty");
    REQUIRE_ERROR_WITH(argmax(Tensor::zeros({2, 3}), 2), "argmax", "dim 2 out of range");
}

TEST_CASE("reduce: bad inputs", "[reduce][errors]") {
    Tensor x = Tensor::zeros({2, 3});
    REQUIRE_ERROR_WITH(sum(x, {2}), "sum", "dim 2 out of range", "2 dims");
    REQUIRE_ERROR_WITH(mean(x, {1, -1}), "mean", "dim 1 appears twice");
    REQUIRE_ERROR_WITH(max(Tensor::zeros({2, 0}), {1}), "max", "(2,0) f32 cpu", "empty");
    REQUIRE_ERROR_WITH(sum(Tensor::zeros({2}, {DType::i32})), "sum", "i32");
}
