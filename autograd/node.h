// autograd/node.h: the define-by-run graph.
//
// Each differentiable op that sees an input requiring grad records a Node: what its backward
// needs (saved tensors, sizes) and one Edge per input to the node that produced that input
// (or to the input's AccumulateGrad node if it is a leaf). backward() walks the nodes in reverse
// topological order (autograd/engine.cpp).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mg::autograd {

struct Node;

struct Edge {
    std::shared_ptr<Node> fn; // null when that input needs no gradient
    uint32_t output_nr = 0;   // which output of fn the input was
};

// Shape/dtype/device of one output, so the engine can materialise a zero gradient for an output
// that received none (e.g. an unused piece of a split).
struct OutputMeta {
    Shape shape;
    DType dtype;
    Device device;
};

struct Node {
    virtual ~Node() = default;
    // grads[i] is dL/d(output i) (never undefined: the engine fills zeros). Returns dL/d(input j)
    // for each input j, in order; an undefined Tensor for inputs that need none.
    virtual std::vector<Tensor> apply(std::vector<Tensor>& grads) = 0;
    virtual std::string name() const = 0;
    // Frees the saved tensors once backward has used them (unless retain_graph).
    virtual void release() {}

    std::vector<Edge> next;
    std::vector<OutputMeta> outputs;
    bool released = false;
    // AccumulateGrad nodes live as long as their leaf and are never released.
    virtual bool is_accumulator() const { return false; }
};

// True when grad mode is on and any input requires grad: the op must record a node.
bool needs_grad(std::initializer_list<const Tensor*> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Wires `node` between `inputs` and `outputs`: sets node->next from the inputs, and makes the
// outputs non-leaf tensors requiring grad whose grad_fn is node.
void connect(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
             const std::vector<Tensor>& outputs);

// record<Node>(inputs, outputs, init): if needs_grad(inputs), creates the node, lets init fill
// its saved state, and connects it. The common form used by every op.
template <typename N, typename Init>
void record(const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs, Init&& init) {
    if (!needs_grad(inputs)) return;
    auto node = std::make_shared<N>();
    init(*node);
    connect(node, inputs, outputs);
}

// For profilers (bench/bench_step.cpp): called around every Node::apply of a backward pass.
// At most one is installed; null (the default) costs one branch per node.
struct NodeObserver {
    virtual ~NodeObserver() = default;
    virtual void before(const Node& n) = 0;
    virtual void after(const Node& n) = 0;
};
void set_node_observer(NodeObserver* observer);

// Runs backward from `roots` with the given gradients (engine.cpp).
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph);

} // namespace mg::autograd
