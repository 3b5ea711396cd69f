// cuda/check.h: every CUDA, cuBLAS and cuFFT call is checked. On failure: mg::Error with
// file:line, the call as written, the library's own error string, and a hint where one helps.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "tensor/error.h"

namespace mg::cuda::detail {
[[noreturn]] void fail(const char* lib, const char* call, const char* file, int line,
                       const std::string& what);
const char* cublas_status_str(int status);
const char* cufft_status_str(int status);
} // namespace mg::cuda::detail

#define CUDA_CHECK(call)                                                                    \
    do {                                                                                    \
        cudaError_t err_ = (call);                                                          \
        if (err_ != cudaSuccess)                                                            \
            ::mg::cuda::detail::fail("CUDA", #call, __FILE__, __LINE__,                     \
                                     cudaGetErrorString(err_));                             \
    } while (0)

// After every kernel launch: catches bad launch configurations at the launch site.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

#define CUBLAS_CHECK(call)                                                                  \
    do {                                                                                    \
        int st_ = int(call);                                                                \
        if (st_ != 0)                                                                       \
            ::mg::cuda::detail::fail("cuBLAS", #call, __FILE__, __LINE__,                   \
                                     ::mg::cuda::detail::cublas_status_str(st_));           \
    } while (0)

#define CUFFT_CHECK(call)                                                                   \
    do {                                                                                    \
        int st_ = int(call);                                                                \
        if (st_ != 0)                                                                       \
            ::mg::cuda::detail::fail("cuFFT", #call, __FILE__, __LINE__,                    \
                                     ::mg::cuda::detail::cufft_status_str(st_));            \
    } while (0)
