// bench/lab.cuh: what every kernel lab (bench/*_lab.cu, STYLE.md #11) shares: a checked CUDA call
// that exits with one `error:` line, a median timer on CUDA events, a download, the parsing of
// "512,2048" lists and of `--flag value` pairs, and the copy bandwidth of the machine measured in
// the same run (the ceiling every lab's GB/s is read against).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#define LAB_CHECK(x)                                                                                     \
    do {                                                                                                 \
        cudaError_t e_ = (x);                                                                            \
        if (e_ != cudaSuccess) {                                                                         \
            std::fprintf(stderr, "error: %s: %s (%s:%d)\n", #x, cudaGetErrorString(e_), __FILE__, __LINE__); \
            std::exit(2);                                                                                \
        }                                                                                                \
    } while (0)

namespace mg::lab {

// Median of `reps` timed runs of f (after two untimed ones), in ms, by CUDA events on the default stream.
template <typename F> float time_ms(int reps, F&& f) {
    cudaEvent_t a, b;
    LAB_CHECK(cudaEventCreate(&a));
    LAB_CHECK(cudaEventCreate(&b));
    f();
    f();
    std::vector<float> ts;
    for (int r = 0; r < reps; ++r) {
        LAB_CHECK(cudaEventRecord(a));
        f();
        LAB_CHECK(cudaEventRecord(b));
        LAB_CHECK(cudaEventSynchronize(b));
        float ms = 0;
        LAB_CHECK(cudaEventElapsedTime(&ms, a, b));
        ts.push_back(ms);
    }
    LAB_CHECK(cudaEventDestroy(a));
    LAB_CHECK(cudaEventDestroy(b));
    std::sort(ts.begin(), ts.end());
    return ts[ts.size() / 2];
}

template <typename T> std::vector<T> download(const T* p, size_t n) {
    std::vector<T> h(n);
    LAB_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

// "512,2048,8192" -> {512, 2048, 8192}; anything else is an `error:` and exit 2.
inline std::vector<int64_t> parse_list(const std::string& flag, const std::string& s) {
    std::vector<int64_t> v;
    size_t at = 0;
    while (at <= s.size()) {
        size_t comma = s.find(',', at);
        if (comma == std::string::npos) comma = s.size();
        const std::string item = s.substr(at, comma - at);
        char* end = nullptr;
        const long long x = std::strtoll(item.c_str(), &end, 10);
        if (item.empty() || *end != '\0' || x < 1) {
            std::fprintf(stderr, "error: %s wants a comma-separated list of positive integers, got '%s'\n", flag.c_str(),
                         s.c_str());
            std::exit(2);
        }
        v.push_back(x);
        at = comma + 1;
    }
    return v;
}

// Walks argv as `--flag value` pairs: on(flag, value) returns false for a flag it does not know.
template <typename F> void parse_args(int argc, char** argv, const char* known, F&& on) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (i + 1 >= argc) {
            std::fprintf(stderr, "error: %s needs a value (known: %s)\n", a.c_str(), known);
            std::exit(2);
        }
        if (!on(a, std::string(argv[++i]))) {
            std::fprintf(stderr, "error: unknown option %s (known: %s)\n", a.c_str(), known);
            std::exit(2);
        }
    }
}

// The device's copy bandwidth, bytes read plus bytes written per second (GB/s): the median of a
// 1 GiB device-to-device copy. Every lab prints its kernels' floor bytes against this figure.
inline double copy_bandwidth_gbs() {
    const size_t bytes = size_t(1) << 30;
    void *src = nullptr, *dst = nullptr;
    LAB_CHECK(cudaMalloc(&src, bytes));
    LAB_CHECK(cudaMalloc(&dst, bytes));
    LAB_CHECK(cudaMemset(src, 1, bytes));
    const float ms = time_ms(10, [&] { LAB_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice)); });
    LAB_CHECK(cudaFree(src));
    LAB_CHECK(cudaFree(dst));
    return 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
}

} // namespace mg::lab
