// tensor/error.h: the one exception type mambagrad throws.
// Kept free of fmt so CUDA translation units can include it.
#pragma once
#include <stdexcept>
#include <string>

namespace mg {

// Every error the library raises is an mg::Error whose message names the op (or config key),
// every shape/dtype/device involved, and what was expected. The CLI prints it as one
// `error:` line and exits with status 2.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

} // namespace mg
