// ops/op_table_nn.cpp: op-table cases for activations (silu, softplus, sigmoid, gelu, dropout) and layers (embedding, linear, rmsnorm, cross_entropy).
#include "ops/op_table.h"

namespace mg {

void add_nn_cases(std::vector<OpCase>& cases) {
    (void)cases; // cases are added as the ops land
}

} // namespace mg
