// train/distributed.h: data-parallel training, one process per rank.
//
// ---- The model ---------------------------------------------------------------------------------
// N ranks run the same config from the same seed, so they build the same model and walk the same
// plan of global batches. Every global batch (each micro-batch of a step) is cut by rank_slice
// into N contiguous, disjoint row ranges; rank r computes the forward and backward of its rows
// only, its loss weighted by its share of the step's labelled positions (the same weighting the
// trainer gives micro-batches), and the gradients are summed over the ranks (all_reduce_sum) before
// clipping and AdamW. The sum of the ranks' weighted gradients is the single-process gradient of
// the same global batch, up to float summation order: the learning-rate schedule, the steps and
// the result are those of the single-process run. Every rank holds the same weights after each
// step; evaluation is sharded (train/evaluate.h: rank r scores batches r, r + N, ... and the counts
// and loss sums are summed over the ranks), so every rank gets the same whole result and decides
// early stopping alike; only rank 0 writes the run directory (config, metrics, checkpoints) and
// prints. A checkpoint holds no rank count: a run may resume with another N.
//
// Each step's all-reduce also carries the step's loss, the correct-prediction count of a logged
// step and a stop vote (a rank that received SIGINT/SIGTERM): so the ranks agree on the loss they
// log and stop after the same step (rank 0 then writes the checkpoint).
//
// ---- Communicators -----------------------------------------------------------------------------
// Communicator is what a rank needs: its rank, the world size, a sum of a host buffer over every
// rank in a fixed order (bit-identical results run after run) and a barrier. SocketCommunicator is
// the stand-in over Unix-domain sockets (rank 0 gathers the buffers in rank order, sums them and
// sends the sum back): it runs on any machine, CPU ranks included, and is how the launcher, the
// sharding and the reduction are tested without GPUs. Every wait is bounded (timeout_s): a rank
// that dies or hangs ends the others with an error naming it, never a silent hang.
//
// ---- The launcher ------------------------------------------------------------------------------
// `mambagrad train --ranks N ...` starts N copies of itself (MG_RANK, MG_WORLD and
// MG_RENDEZVOUS in their environment), forwards SIGINT/SIGTERM to them, and waits; when a rank
// exits with an error the others are stopped (SIGTERM, then SIGKILL after a grace period) and
// the launcher ends with one error line naming the rank. NCCL (`--gpus N`, one GPU per rank) is
// not built yet: the GPU machines with several cards are not lent.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "nn/module.h"

namespace mg::train {

// Rows [lo, hi) of a batch of n rows that rank `rank` of `world` takes: contiguous, disjoint,
// covering [0, n), sizes differing by at most one (the first n % world ranks take one more).
struct RowRange {
    int64_t lo = 0, hi = 0;
    int64_t size() const { return hi - lo; }
};
RowRange rank_slice(int64_t n, int rank, int world);

class Communicator {
public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int world() const = 0;
    // In place: data becomes the sum over ranks of every rank's data (same length on every rank),
    // added in rank order ((d0 + d1) + d2 ...), so the result is the same run after run and on
    // every rank.
    virtual void all_reduce_sum(std::span<double> data) = 0;
    virtual void all_reduce_sum(std::span<float> data) = 0;
    virtual void barrier() = 0;
};

// Unix-domain sockets under `rendezvous_dir` (rank 0 listens on rendezvous_dir/rank0.sock; the
// others connect, retrying until timeout_s). Throws mg::Error naming the rank on a lost or silent
// peer, a mismatched length, or a rendezvous that does not complete in time.
class SocketCommunicator final : public Communicator {
public:
    SocketCommunicator(int rank, int world, const std::string& rendezvous_dir, double timeout_s = 600);
    ~SocketCommunicator() override;
    SocketCommunicator(const SocketCommunicator&) = delete;
    SocketCommunicator& operator=(const SocketCommunicator&) = delete;
    int rank() const override { return rank_; }
    int world() const override { return world_; }
    void all_reduce_sum(std::span<double> data) override;
    void all_reduce_sum(std::span<float> data) override;
    void barrier() override;

private:
    template <typename T> void reduce(std::span<T> data);
    int rank_, world_;
    double timeout_s_;
    int listen_fd_ = -1;
    std::vector<int> peers_; // rank 0: the socket of rank r at r (index 0 unused); others: [rank 0's]
    std::string path_;
};

// The fixed plan of gradient buckets: the parameters in reverse registration order (the order in
// which the backward finishes them, roughly: the last layers first), cut into buckets of at most
// cap_bytes of f32 gradients; a parameter larger than the cap is a bucket of its own. Every rank
// builds the same plan, so the ranks reduce the same buckets in the same order.
struct GradBucket {
    std::vector<size_t> params; // indices into the parameter list
    int64_t elements = 0;
};
constexpr int64_t kGradBucketBytes = int64_t(25) << 20; // 25 MiB, DDP's default
std::vector<GradBucket> plan_gradient_buckets(const nn::NamedTensors& params, int64_t cap_bytes = kGradBucketBytes);

// Sums every parameter's gradient over the ranks, in place (each becomes the sum; a parameter
// that has a gradient on any rank gets one: a rank with no rows in a step has none), and `stats`
// with them (doubles: counts stay exact). One reduction of doubles (the stats and a
// has-a-gradient flag per parameter), then one of floats per bucket of plan_gradient_buckets, in
// plan order, each carrying the parameters some rank has a gradient for; the host buffer is one
// bucket, not the whole model. The sums are elementwise in rank order, so the result does not
// depend on the bucket size. The gradients travel through host memory (the socket stand-in's
// way); overlapping the buckets with the backward is for NCCL, still to come.
void all_reduce_gradients(Communicator& comm, const nn::NamedTensors& params, std::vector<double>& stats,
                          int64_t bucket_bytes = kGradBucketBytes);

// The communicator this process was started with by the launcher (MG_RANK, MG_WORLD,
// MG_RENDEZVOUS, MG_TIMEOUT_S), or null when it was not (a single-process run).
std::unique_ptr<Communicator> communicator_from_env();

// The launcher: runs `program args...` as `world` ranks and returns 0 when every rank succeeded;
// after a stop signal it forwarded, the ranks' exit status; otherwise throws mg::Error naming the
// first rank that failed (the others stopped, each rank's own error printed above it).
int launch_ranks(const std::string& program, const std::vector<std::string>& args, int world, double timeout_s = 600);

} // namespace mg::train
