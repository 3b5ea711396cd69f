// mambagrad.h: the whole public API in one include.
#pragma once
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "cuda/runtime.h"
#include "ops/cat.h"
#include "ops/elementwise.h"
#include "ops/matmul.h"
#include "ops/reduce.h"
#include "ops/selective_scan.h"
#include "tensor/check.h"
#include "tensor/tensor.h"
