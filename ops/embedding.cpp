// ops/embedding.cpp: see ops/embedding.h for shapes, the derivative and the determinism scheme.
#include "ops/embedding.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "autograd/node.h"
#include "cuda/embedding.h"
#include "cuda/index_check.h"
#include "cuda/runtime.h"
#include "ops/checks.h"
#include "ops/dispatch.h"
#include "tensor/indexing.h"

namespace mg {

// ---- CPU kernels ----------------------------------------------------------------------------
template <typename T>
void embedding_forward_cpu(T* out, const int32_t* ids, const T* weight, int64_t N, int64_t D) {
#pragma omp parallel for if (N * D > kParallelGrain)
    for (int64_t n = 0; n < N; ++n) std::memcpy(out + n * D, weight + int64_t(ids[n]) * D, size_t(D) * sizeof(T));
}

// dweight[v, :] = sum_{n : ids[n] = v} dout[n, :]. Threads own blocks of columns and every
// thread walks the positions in order, so the sums do not depend on the thread count.
template <typename T>
void embedding_backward_cpu(T* dweight, const T* dout, const int32_t* ids, int64_t N, int64_t V, int64_t D) {
    std::fill_n(dweight, V * D, T(0));
    constexpr int64_t kCols = 64;
    int64_t blocks = (D + kCols - 1) / kCols;
#pragma omp parallel for if (N * D > kParallelGrain)
    for (int64_t blk = 0; blk < blocks; ++blk) {
        int64_t d0 = blk * kCols, d1 = std::min(D, d0 + kCols);
        for (int64_t n = 0; n < N; ++n) {
            T* row = dweight + int64_t(ids[n]) * D;
            const T* g = dout + n * D;
            for (int64_t d = d0; d < d1; ++d) row[d] += g[d];
        }
    }
}

template <typename T>
void embedding_ref(double* out, const int32_t* ids, const T* weight, int64_t N, int64_t D) {
    for (int64_t n = 0; n < N; ++n)
        for (int64_t d = 0; d < D; ++d) out[n * D + d] = double(weight[int64_t(ids[n]) * D + d]);
}

template <typename T>
void embedding_backward_ref(double* dweight, const T* dout, const int32_t* ids, int64_t N, int64_t V, int64_t D) {
    for (int64_t i = 0; i < V * D; ++i) dweight[i] = 0;
    for (int64_t n = 0; n < N; ++n)
        for (int64_t d = 0; d < D; ++d) dweight[int64_t(ids[n]) * D + d] += double(dout[n * D + d]);
}

namespace {

// Raises the error a CUDA embedding kernel recorded since the last check on this device.
void raise_pending_cuda_error([[maybe_unused]] Device dev) {
    MG_CUDA_ONLY(int64_t pos = 0; int64_t id = 0;
                 if (!cuda::take_index_error(dev.index, cuda::IndexCheck::embedding, &pos, &id)) return;
                 throw Error(fmt::format(
                     "embedding: an earlier embedding call on {} read id {} at flat position {} of its ids, "
                     "outside [0, V) for its weight (V rows); that call's output row was NaN. (On CUDA the "
                     "ids are checked by the kernel without synchronising the host, so the error is raised "
                     "by the next embedding call on the device.)", dev.str(), id, pos)));
}

// Host check of CPU ids: names the first id outside [0, V).
void check_ids_cpu(const Tensor& ids, const Tensor& weight) {
    const int32_t* p = ids.data<int32_t>();
    int64_t V = weight.size(0);
    for (int64_t n = 0; n < ids.numel(); ++n)
        MG_CHECK(p[n] >= 0 && p[n] < V, "embedding: ids {} holds {} at flat position {}, outside [0, V) = [0, {}) "
                 "for weight {}", ids.desc(), p[n], n, V, weight.desc());
}

struct EmbeddingBackward : autograd::Node {
    Tensor ids; // contiguous (N)
    int64_t V = 0, D = 0;
    DType dtype = DType::f32;
    std::string name() const override { return "EmbeddingBackward"; }
    void release() override { ids = Tensor(); }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        Tensor dout = grads[0].contiguous();
        Device dev = dout.device();
        Tensor dweight = Tensor::empty({V, D}, dout.options());
        int64_t N = ids.numel();
        dispatch_float(dtype, "embedding", [&]<typename T>() {
            if (dev.is_cpu()) {
                embedding_backward_cpu<T>(dweight.data<T>(), dout.data<T>(), ids.data<int32_t>(), N, V, D);
            } else {
                MG_CUDA_ONLY(
                    raise_pending_cuda_error(dev);
                    cuda::DeviceGuard g(dev.index);
                    Tensor positions = Tensor::arange(N, {DType::i32, dev});
                    size_t bytes = cuda::embedding_backward_workspace(N, D, sizeof(T));
                    Tensor ws = Tensor::empty({int64_t((bytes + 7) / 8)}, {DType::f64, dev});
                    cuda::embedding_backward<T>(dweight.data<T>(), dout.data<T>(), ids.data<int32_t>(),
                                                positions.data<int32_t>(), ws.raw_data(), N, V, D));
            }
        });
        return {Tensor(), dweight};
    }
};

} // namespace

Tensor embedding(const Tensor& ids_in, const Tensor& weight) {
    check_defined("embedding", "ids", ids_in);
    check_float("embedding", "weight", weight);
    MG_CHECK(ids_in.dtype() == DType::i32, "embedding: ids is {}, expected dtype i32 (token ids)", ids_in.desc());
    MG_CHECK(weight.dim() == 2, "embedding: weight is {}, expected a 2-D (V, D) table", weight.desc());
    MG_CHECK(ids_in.device() == weight.device(), "embedding: ids is {} but weight is {}; expected both on the "
             "same device", ids_in.desc(), weight.desc());
    MG_CHECK(ids_in.dim() < kMaxDims, "embedding: ids {} has {} dims; the output adds one, at most {} are supported",
             ids_in.desc(), ids_in.dim(), int(kMaxDims));
    int64_t N = ids_in.numel(), V = weight.size(0), D = weight.size(1);
    MG_CHECK(N < std::numeric_limits<int32_t>::max() && V < std::numeric_limits<int32_t>::max(),
             "embedding: ids {} and weight {} exceed the 2^31 limit on positions and rows", ids_in.desc(), weight.desc());
    Tensor ids = ids_in.contiguous();
    Tensor w = weight.detach().contiguous();
    Device dev = w.device();
    Shape out_shape = ids.shape();
    out_shape.push_back(D);
    Tensor out = Tensor::empty(out_shape, w.options());
    if (dev.is_cpu()) check_ids_cpu(ids, w);
    else raise_pending_cuda_error(dev);
    dispatch_float(w.dtype(), "embedding", [&]<typename T>() {
        if (dev.is_cpu()) {
            embedding_forward_cpu<T>(out.data<T>(), ids.data<int32_t>(), w.data<T>(), N, D);
        } else {
            MG_CUDA_ONLY(cuda::DeviceGuard g(dev.index);
                         cuda::embedding_forward<T>(out.data<T>(), ids.data<int32_t>(), w.data<T>(), N, V, D,
                                                    cuda::index_error_word(dev.index, cuda::IndexCheck::embedding)));
        }
    });
    autograd::record<EmbeddingBackward>({ids_in, weight}, {out}, [&](EmbeddingBackward& n) {
        n.ids = ids;
        n.V = V;
        n.D = D;
        n.dtype = w.dtype();
    });
    return out;
}

#define MG_INST(T)                                                                                    \
    template void embedding_forward_cpu<T>(T*, const int32_t*, const T*, int64_t, int64_t);           \
    template void embedding_backward_cpu<T>(T*, const T*, const int32_t*, int64_t, int64_t, int64_t); \
    template void embedding_ref<T>(double*, const int32_t*, const T*, int64_t, int64_t);              \
    template void embedding_backward_ref<T>(double*, const T*, const int32_t*, int64_t, int64_t, int64_t);
MG_INST(float)
MG_INST(double)

} // namespace mg
