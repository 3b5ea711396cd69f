// autograd/engine.cpp: grad mode, graph wiring, leaf accumulation and the backward engine.
#include <unordered_map>
#include <unordered_set>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "tensor/check.h"

namespace mg::autograd {

// ---- grad mode ------------------------------------------------------------------------------
static thread_local bool g_grad_enabled = true;
bool grad_enabled() { return g_grad_enabled; }
void set_grad_enabled(bool on) { g_grad_enabled = on; }

// ---- leaves ---------------------------------------------------------------------------------
// The node at the end of every path into a leaf: adds the incoming gradient into leaf.grad.
// The first gradient is copied, so .grad never aliases another tensor's memory.
struct AccumulateGrad : Node {
    std::weak_ptr<TensorImpl> leaf;
    std::string name() const override { return "AccumulateGrad"; }
    bool is_accumulator() const override { return true; }
    std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
        auto impl = leaf.lock();
        if (!impl) return {};
        Tensor g = std::move(grads[0]);
        // The first gradient becomes .grad. A fresh contiguous buffer nothing else holds (the
        // usual case: a kernel's output) is taken as is; anything shared (a gradient handed to
        // several inputs, a view of another tensor, a caller's tensor) is copied, so .grad never
        // aliases another tensor.
        const bool sole_owner = g.impl_ptr().use_count() == 1 && g.impl().storage.use_count() == 1;
        if (!impl->grad) impl->grad = (sole_owner && g.is_contiguous() ? g : g.clone()).impl_ptr();
        else impl->grad = (Tensor(impl->grad) + g).impl_ptr();
        return {};
    }
};

static std::shared_ptr<Node> accumulator_of(const Tensor& t) {
    TensorImpl& impl = t.impl();
    if (auto n = impl.grad_accumulator.lock()) return n;
    auto n = std::make_shared<AccumulateGrad>();
    n->leaf = t.impl_ptr();
    n->outputs.push_back({t.shape(), t.dtype(), t.device()});
    impl.grad_accumulator = n;
    return n;
}

// ---- recording ------------------------------------------------------------------------------
bool needs_grad(std::initializer_list<const Tensor*> inputs) {
    if (!grad_enabled()) return false;
    for (const Tensor* t : inputs)
        if (t && t->defined() && t->requires_grad()) return true;
    return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
    if (!grad_enabled()) return false;
    for (const Tensor& t : inputs)
        if (t.defined() && t.requires_grad()) return true;
    return false;
}

void connect(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
             const std::vector<Tensor>& outputs) {
    node->next.clear();
    for (const Tensor& t : inputs) {
        if (!t.defined() || !t.requires_grad()) node->next.push_back({});
        else if (t.grad_fn()) node->next.push_back({t.grad_fn(), t.impl().output_nr});
        else node->next.push_back({accumulator_of(t), 0});
    }
    node->outputs.clear();
    for (size_t i = 0; i < outputs.size(); ++i) {
        TensorImpl& o = outputs[i].impl();
        o.grad_fn = node;
        o.output_nr = uint32_t(i);
        o.requires_grad = true;
        node->outputs.push_back({o.shape, o.dtype, o.device});
    }
}

// ---- the engine -----------------------------------------------------------------------------
static std::shared_ptr<Node> node_of(const Tensor& t) {
    return t.grad_fn() ? t.grad_fn() : accumulator_of(t);
}

static NodeObserver* g_observer = nullptr;
void set_node_observer(NodeObserver* observer) { g_observer = observer; }

static void accumulate(std::vector<Tensor>& slot_vec, uint32_t slot, const Tensor& g) {
    Tensor& s = slot_vec[slot];
    s = s.defined() ? s + g : g;
}

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph) {
    MG_ASSERT(roots.size() == grads.size());
    NoGrad no_grad; // gradients are computed without recording a graph of their own

    // 1. Seed gradients.
    std::unordered_map<Node*, std::vector<Tensor>> buffers;
    std::vector<std::shared_ptr<Node>> root_nodes;
    for (size_t i = 0; i < roots.size(); ++i) {
        const Tensor& r = roots[i];
        MG_CHECK(r.requires_grad(), "backward: tensor {} does not require grad and has no grad_fn "
                 "(no input it was computed from has requires_grad set)", r.desc());
        Tensor g = grads[i];
        if (!g.defined()) {
            MG_CHECK(r.numel() == 1, "backward: output {} has {} elements; a gradient must be given "
                     "for a non-scalar output (backward(gradient))", r.desc(), r.numel());
            g = Tensor::ones(r.shape(), r.options());
        }
        MG_CHECK(g.shape() == r.shape() && g.dtype() == r.dtype() && g.device() == r.device(),
                 "backward: gradient {} does not match output {}", g.desc(), r.desc());
        auto n = node_of(r);
        auto& buf = buffers[n.get()];
        buf.resize(n->outputs.size());
        accumulate(buf, r.grad_fn() ? r.impl().output_nr : 0, g);
        root_nodes.push_back(n);
    }

    // 2. Count, for every reachable node, how many edges point into it.
    std::unordered_map<Node*, int> deps;
    std::unordered_set<Node*> seen;
    std::vector<Node*> stack;
    std::vector<std::shared_ptr<Node>> keep_alive;
    for (auto& n : root_nodes)
        if (seen.insert(n.get()).second) stack.push_back(n.get());
    while (!stack.empty()) {
        Node* n = stack.back();
        stack.pop_back();
        for (const Edge& e : n->next) {
            if (!e.fn) continue;
            deps[e.fn.get()]++;
            if (seen.insert(e.fn.get()).second) {
                keep_alive.push_back(e.fn);
                stack.push_back(e.fn.get());
            }
        }
    }

    // 3. Kahn's algorithm: a node runs once every consumer of its outputs has run.
    std::vector<Node*> ready;
    for (auto& n : root_nodes)
        if (deps[n.get()] == 0 && std::find(ready.begin(), ready.end(), n.get()) == ready.end())
            ready.push_back(n.get());
    while (!ready.empty()) {
        Node* n = ready.back();
        ready.pop_back();
        auto it = buffers.find(n);
        std::vector<Tensor> in_grads;
        if (it != buffers.end()) { // a node no gradient reached contributes nothing
            MG_CHECK(!n->released, "backward: tried to backward through {} a second time, but its "
                     "saved tensors were freed by the first backward(); pass retain_graph=true to "
                     "the first backward() to go through the graph twice", n->name());
            std::vector<Tensor> out_grads = std::move(it->second);
            buffers.erase(it);
            for (size_t k = 0; k < out_grads.size(); ++k)
                if (!out_grads[k].defined()) {
                    const OutputMeta& m = n->outputs[k];
                    out_grads[k] = Tensor::zeros(m.shape, {m.dtype, m.device});
                }
            if (g_observer) g_observer->before(*n);
            in_grads = n->apply(out_grads);
            if (g_observer) g_observer->after(*n);
            if (!n->is_accumulator()) {
                MG_ASSERT(in_grads.size() == n->next.size());
                if (!retain_graph) {
                    n->release();
                    n->released = true;
                }
            }
        }
        for (size_t j = 0; j < n->next.size(); ++j) {
            const Edge& e = n->next[j];
            if (!e.fn) continue;
            if (j < in_grads.size() && in_grads[j].defined()) {
                const OutputMeta& m = e.fn->outputs[e.output_nr];
                MG_CHECK(in_grads[j].shape() == m.shape,
                         "internal error: {} returned a gradient of shape {} for input {}, "
                         "expected {}", n->name(), shape_str(in_grads[j].shape()), j,
                         shape_str(m.shape));
                auto& buf = buffers[e.fn.get()];
                buf.resize(e.fn->outputs.size());
                accumulate(buf, e.output_nr, in_grads[j]);
            }
            if (--deps[e.fn.get()] == 0) ready.push_back(e.fn.get());
        }
    }
}

} // namespace mg::autograd

namespace mg {
std::string Tensor::grad_fn_name() const { return grad_fn() ? std::string(grad_fn()->name()) : std::string(); }

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
    autograd::run_backward({*this}, {gradient}, retain_graph);
}
} // namespace mg
