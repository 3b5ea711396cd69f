// cuda/embedding.cu: embedding gather (forward) and a deterministic scatter-add (backward).
//
// Backward, dweight[v] = sum of dout[n] over positions n with ids[n] = v, in increasing n:
//   1. sort (id, n) pairs by id with CUB's radix sort (part of the CUDA toolkit). The radix sort
//      is stable, so within one id the positions stay increasing: the sorted list is unique and
//      every run of equal ids is one row's positions in order.
//   2. pass 1, one block per chunk of kChunk sorted slots, a thread per column: walk the chunk
//      in order, summing each run. A run that starts and ends inside the chunk is a complete row:
//      write it to dweight. A run cut by the chunk's start goes to head[chunk], one cut by its
//      end to tail[chunk].
//   3. dweight starts as zeros (one memset): rows never seen stay zero.
//   4. pass 2, one block per chunk: a run that starts in chunk c0 and goes on into later chunks
//      up to c1 is finished by block c0 as tail[c0] + head[c0+1] + ... + head[c1], in that order.
// Every sum has a fixed order, so the result is bit-identical from run to run; no atomics.
// Cost: the sort (over the ids' bits only: 2 radix passes at V <= 65536), a memset of dweight,
// one read of dout, one write of the rows seen, and for a row seen m times ~m / kChunk partial
// reads in pass 2 (balanced even if one id, e.g. padding, fills most positions). Pass 1 loads
// kBatch rows ahead, so each thread has that many loads in flight while it walks its chunk in
// order. For comparison, one block per (vocab chunk, D chunk) scanning all ids would reread the
// ids V/chunk times (~1 GB of L2 traffic at V = 50280, N = 64k).
#include <cub/device/device_radix_sort.cuh>

#include <limits>

#include "cuda/embedding.h"
#include "cuda/index_check.h"
#include "cuda/launch.h"

namespace mg::cuda {

namespace {

constexpr int kChunk = 64;        // sorted slots per pass-1 block
constexpr int kBatch = 8;         // pass 1: rows loaded ahead
constexpr int kRowThreads = 128;  // threads (columns) per block in both passes
constexpr size_t kAlign = 256;

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

size_t sort_temp_bytes(int64_t N) {
    size_t bytes = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const int32_t*>(nullptr),
                                               static_cast<int32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                               static_cast<int32_t*>(nullptr), int(N)));
    return bytes;
}

// Workspace layout: sorted ids (N), sorted positions (N), head (chunks, D), tail (chunks, D),
// the sort's own scratch.
struct Layout {
    size_t sorted_ids = 0, sorted_pos = 0, head = 0, tail = 0, sort_temp = 0, sort_bytes = 0, total = 0;
    Layout(int64_t N, int64_t D, size_t elem) {
        int64_t chunks = ceil_div(N, kChunk);
        size_t at = 0;
        sorted_ids = at; at += align_up(size_t(N) * 4);
        sorted_pos = at; at += align_up(size_t(N) * 4);
        head = at; at += align_up(size_t(chunks * D) * elem);
        tail = at; at += align_up(size_t(chunks * D) * elem);
        sort_temp = at;
        sort_bytes = sort_temp_bytes(N);
        total = at + align_up(sort_bytes);
    }
};

} // namespace

// ---- forward --------------------------------------------------------------------------------
// One block per position: the id is read once and the row copied by the block's threads.
template <typename T>
__global__ void embedding_forward_kernel(T* out, const int32_t* ids, const T* weight, int64_t V, int64_t D,
                                         unsigned long long* error_word) {
    int64_t n = blockIdx.x;
    int32_t id = ids[n];
    T* row = out + n * D;
    if (id >= 0 && id < V) {
        const T* src = weight + int64_t(id) * D;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) row[d] = src[d];
        return;
    }
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) row[d] = std::numeric_limits<T>::quiet_NaN();
    if (threadIdx.x == 0) record_index_error(error_word, n, id);
}

template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* weight, int64_t N, int64_t V, int64_t D,
                       unsigned long long* error_word) {
    if (N == 0) return;
    embedding_forward_kernel<T><<<unsigned(N), kRowThreads>>>(out, ids, weight, V, D, error_word);
    CUDA_CHECK_LAUNCH();
}

// ---- backward -------------------------------------------------------------------------------
size_t embedding_backward_workspace(int64_t N, int64_t D, size_t elem_size) {
    return N == 0 ? 0 : Layout(N, D, elem_size).total;
}

// Pass 1: block c sums the runs of sorted slots [c kChunk, c kChunk + len).
template <typename T>
__global__ void embedding_chunk_kernel(T* dweight, T* head, T* tail, const T* dout, const int32_t* sid,
                                       const int32_t* spos, int64_t N, int64_t V, int64_t D) {
    __shared__ int32_t s_id[kChunk], s_pos[kChunk];
    int64_t c = blockIdx.x, begin = c * kChunk;
    int len = int(N - begin < kChunk ? N - begin : kChunk);
    for (int k = threadIdx.x; k < len; k += blockDim.x) {
        s_id[k] = sid[begin + k];
        s_pos[k] = spos[begin + k];
    }
    __syncthreads();
    bool has_prev = begin > 0, has_next = begin + len < N;
    int32_t prev_id = has_prev ? sid[begin - 1] : 0, next_id = has_next ? sid[begin + len] : 0;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        T acc = T(0);
        int run_start = 0;
        for (int k0 = 0; k0 < len; k0 += kBatch) {
            T v[kBatch];
#pragma unroll
            for (int i = 0; i < kBatch; ++i) v[i] = k0 + i < len ? dout[int64_t(s_pos[k0 + i]) * D + d] : T(0);
#pragma unroll
            for (int i = 0; i < kBatch; ++i) {
                const int k = k0 + i;
                if (k >= len) break;
                acc += v[i];
                if (k + 1 < len && s_id[k + 1] == s_id[k]) continue; // the run goes on
                int32_t id = s_id[k];
                bool from_prev = run_start == 0 && has_prev && prev_id == id;
                bool into_next = k == len - 1 && has_next && next_id == id;
                if (from_prev) head[c * D + d] = acc;
                else if (into_next) tail[c * D + d] = acc;
                else if (id >= 0 && id < V) dweight[int64_t(id) * D + d] = acc;
                acc = T(0);
                run_start = k + 1;
            }
        }
    }
}

// Pass 2: block c finishes the run that starts in chunk c and goes on past its end, if any.
template <typename T>
__global__ void embedding_cross_kernel(T* dweight, const T* head, const T* tail, const int32_t* sid, int64_t N,
                                       int64_t V, int64_t D) {
    const int64_t c = blockIdx.x, begin = c * kChunk, end = begin + kChunk;
    if (end >= N) return; // the last chunk: nothing goes on past it
    const int32_t id = sid[end - 1];
    if (sid[end] != id) return;                                // the last run ends inside the chunk
    if (begin > 0 && sid[begin] == id && sid[begin - 1] == id) return; // started earlier: not ours
    if (id < 0 || id >= V) return;
    int64_t c1 = c + 1; // the chunk where the run ends
    while ((c1 + 1) * kChunk < N && sid[(c1 + 1) * kChunk - 1] == id && sid[(c1 + 1) * kChunk] == id) ++c1;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        T acc = tail[c * D + d];
        for (int64_t cc = c + 1; cc <= c1; ++cc) acc += head[cc * D + d];
        dweight[int64_t(id) * D + d] = acc;
    }
}

template <typename T>
void embedding_backward(T* dweight, const T* dout, const int32_t* ids, const int32_t* positions, void* workspace,
                        int64_t N, int64_t V, int64_t D) {
    if (V == 0 || D == 0) return;
    if (N == 0) {
        CUDA_CHECK(cudaMemsetAsync(dweight, 0, size_t(V * D) * sizeof(T)));
        return;
    }
    Layout lay(N, D, sizeof(T));
    char* ws = static_cast<char*>(workspace);
    auto* sid = reinterpret_cast<int32_t*>(ws + lay.sorted_ids);
    auto* spos = reinterpret_cast<int32_t*>(ws + lay.sorted_pos);
    auto* head = reinterpret_cast<T*>(ws + lay.head);
    auto* tail = reinterpret_cast<T*>(ws + lay.tail);
    size_t temp_bytes = lay.sort_bytes;
    // only the bits an id in [0, V) can have (a stable sort on them orders valid ids exactly;
    // out-of-range ids were reported by the forward and are never written)
    int end_bit = 1;
    while (end_bit < 31 && (int64_t(1) << end_bit) < V) ++end_bit;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(ws + lay.sort_temp, temp_bytes, ids, sid, positions, spos, int(N), 0,
                                               end_bit));
    CUDA_CHECK(cudaMemsetAsync(dweight, 0, size_t(V * D) * sizeof(T)));
    const unsigned chunks = unsigned(ceil_div(N, kChunk));
    embedding_chunk_kernel<T><<<chunks, kRowThreads>>>(dweight, head, tail, dout, sid, spos, N, V, D);
    CUDA_CHECK_LAUNCH();
    embedding_cross_kernel<T><<<chunks, kRowThreads>>>(dweight, head, tail, sid, N, V, D);
    CUDA_CHECK_LAUNCH();
}

#define MG_INST(T)                                                                                       \
    template void embedding_forward<T>(T*, const int32_t*, const T*, int64_t, int64_t, int64_t,          \
                                       unsigned long long*);                                             \
    template void embedding_backward<T>(T*, const T*, const int32_t*, const int32_t*, void*, int64_t,    \
                                        int64_t, int64_t);
MG_INST(float)
MG_INST(double)

} // namespace mg::cuda
