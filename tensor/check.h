// tensor/check.h: MG_CHECK, the argument check used at every public boundary.
#pragma once
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "tensor/error.h"

// MG_CHECK(cond, "op: x has shape {}, expected {}", ...): throws mg::Error with the formatted
// message when cond is false. The message is only formatted on failure.
#define MG_CHECK(cond, ...)                                                   \
    do {                                                                      \
        if (!(cond)) throw ::mg::Error(::fmt::format(__VA_ARGS__));          \
    } while (0)

// Internal invariant (a bug in mambagrad, not in the caller's input).
#define MG_ASSERT(cond)                                                       \
    do {                                                                      \
        if (!(cond))                                                          \
            throw ::mg::Error(::fmt::format("internal error: {} failed at {}:{}", #cond, \
                                            __FILE__, __LINE__));             \
    } while (0)

#include "tensor/tensor.h"

// fmt::format("{}", tensor) prints like PyTorch (Tensor::str).
template <> struct fmt::formatter<mg::Tensor> : fmt::formatter<std::string> {
    auto format(const mg::Tensor& t, fmt::format_context& ctx) const {
        return fmt::formatter<std::string>::format(t.str(), ctx);
    }
};
