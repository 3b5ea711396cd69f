// autograd/grad_mode.h: whether ops record the graph. NoGrad turns recording off in a scope
// (evaluation, optimiser steps, and the backward pass itself).
#pragma once

namespace mg::autograd {

bool grad_enabled();
void set_grad_enabled(bool on);

class NoGrad {
public:
    NoGrad() : prev_(grad_enabled()) { set_grad_enabled(false); }
    ~NoGrad() { set_grad_enabled(prev_); }
    NoGrad(const NoGrad&) = delete;
    NoGrad& operator=(const NoGrad&) = delete;
private:
    bool prev_;
};

} // namespace mg::autograd

namespace mg { using NoGrad = autograd::NoGrad; }
