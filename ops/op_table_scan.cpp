// ops/op_table_scan.cpp: op-table cases for the selective scan.
#include "ops/op_table.h"

namespace mg {

void add_scan_cases(std::vector<OpCase>& cases) {
    (void)cases; // cases are added as the ops land
}

} // namespace mg
