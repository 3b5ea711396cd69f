// ops/op_table_conv.cpp: op-table cases for causal depthwise conv1d and the FFT long convolution.
#include "ops/op_table.h"

namespace mg {

void add_conv_cases(std::vector<OpCase>& cases) {
    (void)cases; // cases are added as the ops land
}

} // namespace mg
