// nn/module.h: Module, the container of named parameters and buffers that every layer and model
// derives from.
//
// A Module owns its tensors in member fields (Linear::weight, MambaMixer::A_log, ...) and
// registers each one under a name; child modules are registered under a name too, so a model's
// parameters have hierarchical dotted names that follow mamba_ssm / PyTorch exactly:
//   backbone.layers.3.mixer.in_proj.weight
// Order is PyTorch's: a module's own tensors in registration order, then each child's, in the
// order the children were registered (depth first). named_parameters() lists each parameter
// once even when it is registered twice (tied weights): its first name wins.
//
// The registry points at the member fields (Tensor* slots), so to(Device) / to(DType) replace
// the tensors in place and the module's own code sees the moved ones. A Module is therefore
// neither copyable nor movable (the slots would dangle); hold models by unique_ptr or build them
// in place.
//
// State dict: name -> tensor for every parameter and buffer. state_dict() returns handles that
// share the module's storage (clone() them to keep a snapshot). load_state_dict() checks the
// whole dict first (every key known, none missing, shapes and dtypes equal) and only then copies,
// so a failed load leaves the module unchanged; the error names every offending key.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace mg::nn {

using StateDict = std::map<std::string, Tensor>;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
public:
    Module() = default;
    virtual ~Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;
    Module(Module&&) = delete;
    Module& operator=(Module&&) = delete;

    // ---- parameters and buffers --------------------------------------------------------------
    NamedTensors named_parameters() const; // hierarchical names, registration order, no duplicates
    std::vector<Tensor> parameters() const;
    NamedTensors named_buffers() const;
    // Number of parameter elements, each (tied) parameter counted once.
    int64_t num_parameters() const;

    // Moves (or converts) every parameter and buffer; parameters stay leaves that require grad.
    // Gradients are dropped (a fresh optimizer state is expected after a move).
    Module& to(Device device);
    Module& to(DType dtype);

    void zero_grad(); // every parameter's .grad set to undefined

    // train/eval flag, set recursively (dropout reads it).
    Module& train(bool on = true);
    Module& eval() { return train(false); }
    bool is_training() const { return training_; }

    // ---- state dict ----------------------------------------------------------------------------
    StateDict state_dict() const;
    // Copies values into the module's tensors (on the module's device). Every model key must be
    // present and every dict key known; shapes and dtypes must match exactly. Throws mg::Error
    // naming the missing / unexpected / mismatched keys; nothing is copied when it throws.
    virtual void load_state_dict(const StateDict& dict);

protected:
    // Registers `slot` (a member of the derived class, holding the initial value) as a parameter:
    // it becomes a leaf that requires grad. Names are one segment (no dots), unique in the module.
    void register_parameter(const std::string& name, Tensor& slot);
    // A non-trainable tensor that travels with the module and its state dict.
    void register_buffer(const std::string& name, Tensor& slot);
    // A child module (a member of the derived class, or owned by it through a unique_ptr);
    // `name` may contain dots ("layers.0").
    void register_module(const std::string& name, Module& child);

private:
    struct Slot {
        std::string name;
        Tensor* tensor;
    };
    void check_new_name(const std::string& name, bool allow_dots) const;
    // Every slot of this module and its descendants, with full names, in order.
    void collect(const std::string& prefix, bool parameters, std::vector<std::pair<std::string, Tensor*>>& out) const;
    std::vector<std::pair<std::string, Tensor*>> all_slots() const; // parameters, then buffers

    std::vector<Slot> params_, buffers_;
    std::vector<std::pair<std::string, Module*>> children_;
    bool training_ = true;
};

// Eval mode for a scope: the module (recursively) in eval() from construction, its previous
// train/eval flag restored on destruction, also when an exception leaves the scope. Evaluation
// code takes one so that dropout is off whatever mode the caller left the model in.
class EvalScope {
public:
    explicit EvalScope(Module& m) : m_(m), was_training_(m.is_training()) { m_.eval(); }
    ~EvalScope() { m_.train(was_training_); }
    EvalScope(const EvalScope&) = delete;
    EvalScope& operator=(const EvalScope&) = delete;

private:
    Module& m_;
    bool was_training_;
};

} // namespace mg::nn
