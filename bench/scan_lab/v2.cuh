// bench/scan_lab/v2.cuh: versions 2 and 3 of the GPU selective scan, kept for the lab. One body
// (v2_body.inc, which says what the kernels do) compiled twice with the two settings that v3
// changed:
//   v2 (commit bb283fe): 4 lanes per channel, 32-step tiles, softplus gradient staged.
//        Lost to v3: the backward's 115 KB of shared memory per block fits 2 blocks per SM, so
//        the 384 blocks of B = 8, D = 1536 take 1.45 waves.
//   v3 (commit a5b6044): 16-step tiles, the softplus gradient recomputed as −expm1(−Δ):
//        55 KB per block, 4 blocks per SM, one wave. Lost to v4: about 280 warp instructions per
//        time step in the backward, from the shared state history and per-step shuffles.
#pragma once
#include "bench/scan_lab/common.cuh"

namespace mg::scanlab::v2 {
constexpr int kTile = 32;
constexpr bool kStageSoftplusGrad = true;
MG_HD int64_t n_chunks_of(int64_t L) { return (L + kTile - 1) / kTile; }
#include "bench/scan_lab/v2_body.inc"
} // namespace mg::scanlab::v2

namespace mg::scanlab::v3 {
constexpr int kTile = 16;
constexpr bool kStageSoftplusGrad = false;
MG_HD int64_t n_chunks_of(int64_t L) { return (L + kTile - 1) / kTile; }
#include "bench/scan_lab/v2_body.inc"
} // namespace mg::scanlab::v3
