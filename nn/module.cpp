// nn/module.cpp: see module.h.
#include "nn/module.h"

#include <set>

#include "autograd/grad_mode.h"
#include "ops/copy.h"
#include "tensor/check.h"

namespace mg::nn {

void Module::check_new_name(const std::string& name, bool allow_dots) const {
    MG_CHECK(!name.empty(), "Module: a parameter, buffer or child needs a non-empty name");
    MG_CHECK(allow_dots || name.find('.') == std::string::npos,
             "Module: parameter/buffer name '{}' contains a dot; register a child module instead", name);
    auto taken = [&](const auto& v) {
        for (const auto& e : v)
            if (e.first == name) return true;
        return false;
    };
    bool dup = taken(children_);
    for (const Slot& s : params_) dup = dup || s.name == name;
    for (const Slot& s : buffers_) dup = dup || s.name == name;
    MG_CHECK(!dup, "Module: the name '{}' is registered twice", name);
}

void Module::register_parameter(const std::string& name, Tensor& slot) {
    check_new_name(name, false);
    MG_CHECK(slot.defined() && is_differentiable(slot.dtype()),
             "Module: parameter '{}' must be a defined f32/f64 tensor, got {}", name,
             slot.defined() ? slot.desc() : std::string("undefined"));
    if (!slot.is_leaf()) slot = slot.detach();
    slot.set_requires_grad(true);
    params_.push_back({name, &slot});
}

void Module::register_buffer(const std::string& name, Tensor& slot) {
    check_new_name(name, false);
    MG_CHECK(slot.defined(), "Module: buffer '{}' is undefined", name);
    buffers_.push_back({name, &slot});
}

void Module::register_module(const std::string& name, Module& child) {
    check_new_name(name, true);
    MG_CHECK(&child != this, "Module: a module cannot be its own child ('{}')", name);
    children_.emplace_back(name, &child);
}

void Module::collect(const std::string& prefix, bool parameters,
                     std::vector<std::pair<std::string, Tensor*>>& out) const {
    for (const Slot& s : parameters ? params_ : buffers_) out.emplace_back(prefix + s.name, s.tensor);
    for (const auto& [name, child] : children_) child->collect(prefix + name + ".", parameters, out);
}

std::vector<std::pair<std::string, Tensor*>> Module::all_slots() const {
    std::vector<std::pair<std::string, Tensor*>> out;
    collect("", true, out);
    collect("", false, out);
    return out;
}

NamedTensors Module::named_parameters() const {
    std::vector<std::pair<std::string, Tensor*>> slots;
    collect("", true, slots);
    NamedTensors out;
    std::set<const TensorImpl*> seen;
    for (const auto& [name, t] : slots)
        if (seen.insert(t->impl_ptr().get()).second) out.emplace_back(name, *t);
    return out;
}

std::vector<Tensor> Module::parameters() const {
    std::vector<Tensor> out;
    for (auto& [name, t] : named_parameters()) out.push_back(t);
    return out;
}

NamedTensors Module::named_buffers() const {
    std::vector<std::pair<std::string, Tensor*>> slots;
    collect("", false, slots);
    NamedTensors out;
    for (const auto& [name, t] : slots) out.emplace_back(name, *t);
    return out;
}

int64_t Module::num_parameters() const {
    int64_t n = 0;
    for (const auto& [name, t] : named_parameters()) n += t.numel();
    return n;
}

namespace {
// Replaces every slot with convert(old), keeping parameters leaves that require grad. A tensor
// registered under two names (tied) is converted once and both slots get the same new tensor.
template <typename F> void convert_slots(const std::vector<std::pair<std::string, Tensor*>>& slots, size_t n_params,
                                         F&& convert) {
    NoGrad ng;
    std::map<const TensorImpl*, Tensor> done;
    for (size_t i = 0; i < slots.size(); ++i) {
        Tensor& t = *slots[i].second;
        auto it = done.find(t.impl_ptr().get());
        if (it != done.end()) {
            t = it->second;
            continue;
        }
        Tensor moved = convert(t.detach());
        if (moved.impl_ptr()->storage == t.impl_ptr()->storage && moved.dtype() == t.dtype()) {
            done.emplace(t.impl_ptr().get(), t); // already there: keep the tensor (and its grad)
            continue;
        }
        if (!moved.is_leaf()) moved = moved.detach();
        if (i < n_params) moved.set_requires_grad(true);
        done.emplace(t.impl_ptr().get(), moved);
        t = moved;
    }
}
} // namespace

Module& Module::to(Device device) {
    std::vector<std::pair<std::string, Tensor*>> p;
    collect("", true, p);
    size_t n_params = p.size();
    collect("", false, p);
    convert_slots(p, n_params, [&](const Tensor& t) { return t.to(device); });
    return *this;
}

Module& Module::to(DType dtype) {
    MG_CHECK(is_differentiable(dtype), "Module::to: dtype {} is not differentiable; parameters are f32 or f64",
             dtype_name(dtype));
    std::vector<std::pair<std::string, Tensor*>> p;
    collect("", true, p);
    size_t n_params = p.size();
    collect("", false, p);
    // Buffers of other types (i32, bf16; none in our models) keep their dtype.
    convert_slots(p, n_params, [&](const Tensor& t) { return is_differentiable(t.dtype()) ? t.to(dtype) : t; });
    return *this;
}

void Module::zero_grad() {
    for (const Tensor& t : parameters()) t.zero_grad();
}

Module& Module::train(bool on) {
    training_ = on;
    for (auto& [name, child] : children_) child->train(on);
    return *this;
}

StateDict Module::state_dict() const {
    StateDict out;
    for (const auto& [name, t] : all_slots()) out.emplace(name, t->detach());
    return out;
}

void Module::load_state_dict(const StateDict& dict) {
    auto slots = all_slots();
    std::vector<std::string> missing, unexpected, mismatched;
    std::set<std::string> known;
    for (const auto& [name, t] : slots) {
        known.insert(name);
        auto it = dict.find(name);
        if (it == dict.end()) {
            missing.push_back(name);
            continue;
        }
        const Tensor& v = it->second;
        if (!v.defined())
            mismatched.push_back(fmt::format("{} is undefined in the state dict, expected {}", name, t->desc()));
        else if (v.shape() != t->shape())
            mismatched.push_back(fmt::format("{} has shape {} in the state dict, expected {} as in the model", name,
                                             shape_str(v.shape()), shape_str(t->shape())));
        else if (v.dtype() != t->dtype())
            mismatched.push_back(fmt::format("{} has dtype {} in the state dict, expected {} as in the model "
                                             "(convert the dict or call to({}) on the model first)",
                                             name, dtype_name(v.dtype()), dtype_name(t->dtype()),
                                             dtype_name(v.dtype())));
    }
    for (const auto& [name, v] : dict)
        if (!known.count(name)) unexpected.push_back(name);
    if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
        std::string msg = "load_state_dict: the state dict does not match the model";
        if (!missing.empty()) msg += fmt::format("; missing keys: {}", fmt::join(missing, ", "));
        if (!unexpected.empty()) msg += fmt::format("; unexpected keys: {}", fmt::join(unexpected, ", "));
        if (!mismatched.empty()) msg += fmt::format("; {}", fmt::join(mismatched, "; "));
        throw Error(msg);
    }
    NoGrad ng;
    for (const auto& [name, t] : slots) {
        const Tensor& v = dict.at(name);
        if (v.impl_ptr()->storage != t->impl_ptr()->storage) {
            copy_into(*t, v);
        } else if (v.offset() != t->offset() || v.strides() != t->strides()) {
            copy_into(*t, v.clone()); // overlaps the model's own storage: copy through a temporary
        } // else: the very same elements (a dict taken from this model), nothing to copy
    }
}

} // namespace mg::nn
