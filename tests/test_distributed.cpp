// tests/test_distributed.cpp: data-parallel training (train/distributed.h) on the CPU: the row
// split, the socket communicator (exact, ordered sums; a lost or silent rank named), and the
// launcher with real processes: two ranks give the single-process run's losses, a killed rank
// ends the job with an error naming it, a stop signal leaves rank 0's checkpoint, and a run
// resumes with another number of ranks.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <thread>

#include "tests/helpers.h"
#include "tests/train_helpers.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/process.h"
#include "train/trainer.h"

using namespace mg;
using namespace mg::train;
using mg::test::TempDir;
using json = nlohmann::json;

TEST_CASE("distributed: rank_slice cuts n rows into disjoint contiguous ranges that cover them", "[distributed]") {
    for (int world : {1, 2, 3, 7})
        for (int64_t n : {0, 1, 2, 5, 8, 64, 67}) {
            int64_t next = 0, smallest = n, largest = 0;
            for (int r = 0; r < world; ++r) {
                const RowRange rr = rank_slice(n, r, world);
                INFO("n " << n << ", rank " << r << " of " << world);
                CHECK(rr.lo == next);
                CHECK(rr.hi >= rr.lo);
                next = rr.hi;
                smallest = std::min(smallest, rr.size());
                largest = std::max(largest, rr.size());
            }
            CHECK(next == n);
            CHECK(largest - smallest <= 1);
        }
    CHECK(rank_slice(5, 0, 2).size() == 3); // the first n % world ranks take one more
    REQUIRE_ERROR_WITH(rank_slice(4, 2, 2), "rank_slice", "rank 2 of world 2");
}

namespace {

// Runs body(rank) on `world` threads, each with its own SocketCommunicator over `dir`; returns each
// rank's error message ("" when it finished).
std::vector<std::string> on_ranks(int world, const std::string& dir, double timeout_s,
                                  const std::function<void(SocketCommunicator&)>& body) {
    std::vector<std::string> errors(static_cast<size_t>(world));
    std::vector<std::thread> threads;
    for (int r = 0; r < world; ++r)
        threads.emplace_back([&, r] {
            try {
                SocketCommunicator c(r, world, dir, timeout_s);
                body(c);
            } catch (const std::exception& e) {
                errors[size_t(r)] = e.what();
            }
        });
    for (std::thread& t : threads) t.join();
    return errors;
}

} // namespace

TEST_CASE("distributed: the socket communicator sums in rank order, the same on every rank", "[distributed]") {
    TempDir dir("comm");
    const int world = 3;
    const size_t n = 1001;
    // values whose float sum depends on the order: ((a0 + a1) + a2) is the promised one
    auto data_of = [](int r, size_t i) { return float(std::pow(10.0, 3 * r - 3)) * float(1 + i % 7) + float(i) * 1e-3f; };
    std::vector<std::vector<float>> got(world);
    std::vector<std::vector<double>> got_d(world);
    const auto errors = on_ranks(world, dir.path.string(), 30, [&](SocketCommunicator& c) {
        std::vector<float> v(n);
        for (size_t i = 0; i < n; ++i) v[i] = data_of(c.rank(), i);
        c.all_reduce_sum(std::span<float>(v));
        std::vector<double> d = {double(c.rank()), 0.5};
        c.all_reduce_sum(std::span<double>(d));
        c.barrier();
        got[size_t(c.rank())] = v;
        got_d[size_t(c.rank())] = d;
    });
    for (const std::string& e : errors) CHECK(e.empty());
    for (size_t i = 0; i < n; ++i) {
        const float want = (data_of(0, i) + data_of(1, i)) + data_of(2, i);
        for (int r = 0; r < world; ++r) REQUIRE(got[size_t(r)][i] == want);
    }
    for (int r = 0; r < world; ++r) CHECK(got_d[size_t(r)] == std::vector<double>{3.0, 1.5});
}

TEST_CASE("distributed: a rank that leaves, hangs or disagrees is named by the others", "[distributed]") {
    TempDir dir("comm_bad");
    // rank 2 leaves before the reduction: rank 0 loses it, and rank 1 then loses rank 0
    auto errors = on_ranks(3, dir.path.string(), 30, [](SocketCommunicator& c) {
        if (c.rank() == 2) return;
        std::vector<float> v(4, 1.0f);
        c.all_reduce_sum(std::span<float>(v));
    });
    CHECK(errors[0].find("rank 0: lost rank 2") != std::string::npos);
    CHECK(errors[1].find("rank 1: lost rank 0") != std::string::npos);
    // rank 1 hangs (never reduces) past the timeout: rank 0 says so, naming it, within the bound
    const auto t0 = std::chrono::steady_clock::now();
    errors = on_ranks(2, dir.path.string(), 1, [](SocketCommunicator& c) {
        if (c.rank() == 1) {
            std::this_thread::sleep_for(std::chrono::milliseconds(2500));
            return;
        }
        std::vector<float> v(4, 1.0f);
        c.all_reduce_sum(std::span<float>(v));
    });
    CHECK(errors[0].find("rank 0: rank 1 sent nothing for 1 s") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
    // different lengths: the model or the step differs between the ranks
    errors = on_ranks(2, dir.path.string(), 30, [](SocketCommunicator& c) {
        std::vector<float> v(size_t(4 + c.rank()), 1.0f);
        c.all_reduce_sum(std::span<float>(v));
    });
    CHECK(errors[0].find("rank 1 reduces 5 values where rank 0 has 4") != std::string::npos);
    // nobody at the rendezvous
    errors = on_ranks(1, dir.path.string(), 30, [](SocketCommunicator&) {});
    CHECK(errors[0].empty()); // a world of one needs no peer
    try {
        SocketCommunicator lonely(1, 2, dir.path.string(), 0.5);
        FAIL("rank 1 joined a rank 0 that does not exist");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find("rank 0 did not open") != std::string::npos);
    }
}

namespace {

// Two ranks of a sharded evaluation in one process, one after the other: rank 1 records what it
// would send (and keeps its own share), then rank 0 adds rank 1's buffers to its own, in order.
// (A sequential stand-in works here because the evaluation's reductions depend on nothing reduced
// before them; the gradient test below runs real socket ranks in threads.)
class RecordingRank final : public Communicator {
public:
    int rank() const override { return 1; }
    int world() const override { return 2; }
    void all_reduce_sum(std::span<double> data) override { sent.emplace_back(data.begin(), data.end()); }
    void all_reduce_sum(std::span<float>) override { FAIL("the evaluation reduces doubles only"); }
    void barrier() override {}
    std::vector<std::vector<double>> sent;
};

class ReplayingRank final : public Communicator {
public:
    explicit ReplayingRank(const RecordingRank& other) : other_(other) {}
    int rank() const override { return 0; }
    int world() const override { return 2; }
    void all_reduce_sum(std::span<double> data) override {
        REQUIRE(next_ < other_.sent.size());
        REQUIRE(other_.sent[next_].size() == data.size()); // the same layout on both ranks
        for (size_t i = 0; i < data.size(); ++i) data[i] += other_.sent[next_][i];
        ++next_;
    }
    void all_reduce_sum(std::span<float>) override { FAIL("the evaluation reduces doubles only"); }
    void barrier() override {}
    bool replayed_all() const { return next_ == other_.sent.size(); } // as many reductions on both ranks

private:
    const RecordingRank& other_;
    size_t next_ = 0;
};

int64_t examples_scored(const EvalResult& r) {
    int64_t n = 0;
    for (const auto& s : r.score.subtasks) n += s.examples;
    return n;
}

} // namespace

TEST_CASE("distributed: sharded evaluation scores each rank's share and sums to the single-process result",
          "[distributed]") {
    json j = {{"model", {{"preset", "zoology"}, {"d_model", 16}, {"n_layer", 1}, {"d_state", 4}, {"vocab_size", "auto"}}},
              {"task", {{"grid", "16x2,32x4"}, {"vocab_size", 24}, {"train_examples", 64}, {"valid_examples", 8},
                        {"test_examples", 8}, {"test_variants", json::array()}}},
              {"batch_size", 8}, {"epochs", 6}, {"lr", 1e-2}, {"eval_every", 0}, {"target_accuracy", 0},
              {"device", "cpu"}, {"run_dir", ""}, {"log_every", 1}};
    TrainConfig cfg = TrainConfig::from_json(j);
    Trainer t(cfg, nullptr);
    t.train(); // trained a little, so that some queries are right and the counts are not all zero
    // 13 examples per cell in batches of 5: 3 batches a cell (5, 5, 3), 6 in all, 3 for each rank
    const auto ex = cfg.task.generate(data::MqarVariant::Standard, data::Split::Test, 13).examples;
    const EvalResult one = evaluate_mqar(t.model(), ex, 5);
    REQUIRE(examples_scored(one) == 26);
    REQUIRE(one.score.tokens_correct > 0);
    RecordingRank r1;
    const EvalResult share = evaluate_mqar(t.model(), ex, 5, &r1);
    CHECK(examples_scored(share) > 0);
    CHECK(examples_scored(share) < 26); // rank 1 scored its batches only
    ReplayingRank r0(r1);
    const EvalResult both = evaluate_mqar(t.model(), ex, 5, &r0);
    CHECK(r0.replayed_all());
    REQUIRE(both.score.subtasks.size() == one.score.subtasks.size());
    for (size_t i = 0; i < one.score.subtasks.size(); ++i) {
        const auto &a = one.score.subtasks[i], &b = both.score.subtasks[i];
        INFO("cell " << a.seq_len << "x" << a.num_kv_pairs);
        CHECK(a.seq_len == b.seq_len);
        CHECK(a.num_kv_pairs == b.num_kv_pairs);
        CHECK(a.examples == b.examples);
        CHECK(a.queries == b.queries);
        CHECK(a.queries_correct == b.queries_correct);
        CHECK(a.tokens == b.tokens);
        CHECK(a.tokens_correct == b.tokens_correct);
    }
    CHECK(both.score.query_acc_mean == one.score.query_acc_mean);
    CHECK(both.labelled == one.labelled);
    CHECK(std::abs(both.loss - one.loss) <= 1e-12 * one.loss); // the double sum's order only

    // LM scoring of a token stream: 11 windows of 6 in batches of 3 (the last one short), rank 1
    // takes batches 1 and 3
    std::vector<int32_t> tokens(67);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 7 + i / 5) % 20);
    const EvalResult lm_one = evaluate_lm(t.model(), tokens, 6, 3);
    RecordingRank l1;
    const EvalResult lm_share = evaluate_lm(t.model(), tokens, 6, 3, 0, nullptr, &l1);
    CHECK(lm_share.labelled == (3 + 2) * 6);
    ReplayingRank l0(l1);
    const EvalResult lm_both = evaluate_lm(t.model(), tokens, 6, 3, 0, nullptr, &l0);
    CHECK(l0.replayed_all());
    CHECK(lm_one.labelled == 11 * 6);
    CHECK(lm_both.labelled == lm_one.labelled);
    CHECK(lm_both.bytes == lm_one.bytes);
    CHECK(std::abs(lm_both.loss - lm_one.loss) <= 1e-12 * lm_one.loss);
}

TEST_CASE("distributed: gradient buckets cover every parameter once, last first, within the cap", "[distributed]") {
    nn::NamedTensors params;
    const std::vector<int64_t> sizes = {10, 3, 40, 7, 7, 1, 25, 2};
    for (size_t i = 0; i < sizes.size(); ++i)
        params.push_back({fmt::format("p{}", i), Tensor::zeros({sizes[i]}, {DType::f32, Device::cpu()})});
    const auto plan = plan_gradient_buckets(params, 16 * 4); // 16 floats a bucket
    std::vector<size_t> order;
    for (const GradBucket& b : plan) {
        int64_t n = 0;
        for (size_t i : b.params) {
            order.push_back(i);
            n += sizes[i];
        }
        CHECK(n == b.elements);
        CHECK((b.elements <= 16 || b.params.size() == 1)); // only a parameter larger than the cap exceeds it
    }
    CHECK(order == std::vector<size_t>{7, 6, 5, 4, 3, 2, 1, 0}); // reverse registration order, each once
    CHECK(plan.size() == 5); // {2} {25} {1, 7, 7} {40} {3, 10}: greedy, in order
    CHECK(plan_gradient_buckets(params, 1 << 20).size() == 1);
    REQUIRE_ERROR_WITH(plan_gradient_buckets(params, 3), "plan_gradient_buckets", "cap_bytes is 3");
}

TEST_CASE("distributed: bucketed gradient sums equal one flat sum, bit for bit, whatever the bucket size",
          "[distributed]") {
    TempDir dir("buckets");
    // two ranks' gradients: rank 1 has none for p1 (no rows for it), neither has one for p3
    const std::vector<int64_t> sizes = {30, 5, 17, 4, 64, 9};
    auto make = [&](int rank) {
        nn::NamedTensors params;
        Generator gen(uint64_t(rank) + 1);
        for (size_t i = 0; i < sizes.size(); ++i) {
            Tensor p = Tensor::zeros({sizes[i]}, {DType::f32, Device::cpu()});
            if (i != 3 && !(rank == 1 && i == 1))
                p.impl().grad = Tensor::randn({sizes[i]}, {DType::f32, Device::cpu()}, gen).impl_ptr();
            params.push_back({fmt::format("p{}", i), p});
        }
        return params;
    };
    const nn::NamedTensors g0 = make(0), g1 = make(1);
    std::vector<std::vector<float>> want; // rank 0's + rank 1's, elementwise (rank 1's p1: none)
    for (size_t i = 0; i < sizes.size(); ++i) {
        if (i == 3) continue;
        std::vector<float> a = g0[i].second.grad().to_vector<float>();
        if (i != 1) {
            const std::vector<float> b = g1[i].second.grad().to_vector<float>();
            for (size_t k = 0; k < a.size(); ++k) a[k] += b[k];
        }
        want.push_back(a);
    }
    for (int64_t cap : {int64_t(1) << 20, int64_t(4), int64_t(20 * 4), int64_t(64 * 4)}) {
        INFO("bucket cap " << cap << " bytes");
        std::vector<std::vector<std::vector<float>>> got(2);
        std::vector<double> stats_of(2);
        std::vector<int> has_p3(2);
        const std::string rendezvous = dir.file(fmt::format("cap{}", cap));
        std::filesystem::create_directories(rendezvous);
        const auto errors = on_ranks(2, rendezvous, 30, [&](SocketCommunicator& c) {
            const nn::NamedTensors params = make(c.rank());
            std::vector<double> stats = {double(c.rank()) + 3.0};
            all_reduce_gradients(c, params, stats, cap);
            stats_of[size_t(c.rank())] = stats[0];
            has_p3[size_t(c.rank())] = params[3].second.grad().defined();
            for (size_t i = 0; i < sizes.size(); ++i)
                if (i != 3) got[size_t(c.rank())].push_back(params[i].second.grad().to_vector<float>());
        });
        for (const std::string& e : errors) CHECK(e.empty());
        for (int r = 0; r < 2; ++r) {
            CHECK(stats_of[size_t(r)] == 7.0);
            CHECK(has_p3[size_t(r)] == 0); // no rank had a gradient: none after the sum either
            CHECK(got[size_t(r)] == want);  // bit for bit, on both ranks
        }
    }
}

namespace {

const std::vector<std::string> kRun = {
    "train", "--device", "cpu", "--model.d_model", "16", "--model.n_layer", "2", "--model.d_state", "4",
    "--task.grid", "32x4,16x2", "--task.vocab_size", "32", "--task.train_examples", "96", "--task.valid_examples", "16",
    "--task.test_examples", "7", "--task.test_variants", "[\"standard\", \"shuffle\"]", "--batch_size", "10", "--epochs", "3", "--lr", "1e-2",
    "--log_every", "1", "--eval_every", "0", "--target_accuracy", "0"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& more) {
    a.insert(a.end(), more.begin(), more.end());
    return a;
}

int run_and_wait(const std::vector<std::string>& args, const std::string& log) {
    const pid_t pid = spawn_logged(test::cli_binary(), args, log, false, false);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::vector<nlohmann::json> rows_of(const std::string& metrics, const std::string& kind = "train") {
    std::vector<nlohmann::json> out;
    for (const nlohmann::json& r : test::metrics_rows_without_timing(metrics))
        if (r["kind"] == kind) out.push_back(r);
    return out;
}

// The scores of a sharded evaluation (each rank its share, the counts summed) against the
// single-process run's: the same rows, accuracies equal, losses equal up to float summation order.
void check_same_scores(const std::vector<nlohmann::json>& a, const std::vector<nlohmann::json>& b) {
    REQUIRE(a.size() == b.size());
    REQUIRE(!a.empty());
    for (size_t i = 0; i < a.size(); ++i) {
        INFO("one process " << a[i].dump() << "\nranks " << b[i].dump());
        CHECK(a[i]["step"] == b[i]["step"]);
        CHECK(std::abs(a[i]["loss"].get<double>() - b[i]["loss"].get<double>()) <= 1e-4 * a[i]["loss"].get<double>());
        for (const char* key : {"query_acc", "subtasks", "tokens", "bytes"})
            if (a[i].contains(key)) CHECK(a[i][key] == b[i][key]);
    }
}

} // namespace

TEST_CASE("distributed: train --ranks 2 gives the single-process run's losses, written once by rank 0",
          "[distributed][cli]") {
    TempDir dir("ranks");
    // batch 10 over 2 ranks: 5 rows each; the 16-long cells' last batch of each epoch is partial
    REQUIRE(run_and_wait(with(kRun, {"--run_dir", dir.file("one")}), dir.file("one.log")) == 0);
    const int rc = run_and_wait(with(kRun, {"--run_dir", dir.file("two"), "--ranks", "2"}), dir.file("two.log"));
    const std::string log = test::read_all(dir.file("two.log"));
    INFO(log);
    REQUIRE(rc == 0);
    const auto a = rows_of(dir.file("one/metrics.jsonl")), b = rows_of(dir.file("two/metrics.jsonl"));
    REQUIRE(a.size() == b.size());
    REQUIRE(a.size() >= 20);
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        INFO("step " << a[i]["step"] << ": one process " << a[i]["loss"] << ", two ranks " << b[i]["loss"]);
        REQUIRE(a[i]["step"] == b[i]["step"]);
        const double rel = std::abs(a[i]["loss"].get<double>() - b[i]["loss"].get<double>()) /
                           std::abs(a[i]["loss"].get<double>());
        worst = std::max(worst, rel);
        CHECK(rel <= 1e-4); // float summation order only
        CHECK(a[i]["acc"] == b[i]["acc"]);
    }
    WARN("two ranks vs one process, worst relative loss difference over " << a.size() << " steps: " << worst);
    // the validation and test scores, sharded over the ranks, are the single process's
    check_same_scores(rows_of(dir.file("one/metrics.jsonl"), "eval"), rows_of(dir.file("two/metrics.jsonl"), "eval"));
    check_same_scores(rows_of(dir.file("one/metrics.jsonl"), "test"), rows_of(dir.file("two/metrics.jsonl"), "test"));
    CHECK(rows_of(dir.file("two/metrics.jsonl"), "test").size() == 2);
    CHECK(a.back()["loss"].get<double>() < a.front()["loss"].get<double>());
    // rank 0 alone wrote and printed: one progress stream, one final checkpoint
    CHECK(std::filesystem::exists(dir.file("two/final.safetensors")));
    CHECK(log.find("[rank") == std::string::npos); // no rank had an error
    // the same ranks twice: bit-identical weights
    REQUIRE(run_and_wait(with(kRun, {"--run_dir", dir.file("two_again"), "--ranks", "2"}), dir.file("again.log")) == 0);
    const auto w1 = load_safetensors(dir.file("two/final.safetensors")), w2 = load_safetensors(dir.file("two_again/final.safetensors"));
    REQUIRE(w1.tensors.size() == w2.tensors.size());
    for (size_t i = 0; i < w1.tensors.size(); ++i) {
        CHECK(w1.tensors[i].first == w2.tensors[i].first);
        CHECK(test::same_bits(w1.tensors[i].second, w2.tensors[i].second));
    }
}

TEST_CASE("distributed: an LM run with gradient accumulation over 3 ranks gives the single-process losses",
          "[distributed][cli]") {
    TempDir dir("ranks_lm");
    {
        std::ofstream corpus(dir.file("text.txt"), std::ios::binary);
        for (int i = 0; i < 400; ++i) corpus << "line " << i % 37 << ": the quick brown fox " << (i * 7919) % 101 << "\n";
    }
    // batch 8 over 3 ranks: rows 3, 3, 2; two micro-batches a step
    const std::vector<std::string> lm = {
        "train", "--device", "cpu", "--task.kind", "lm", "--task.corpus", dir.file("text.txt"), "--task.seq_len", "24",
        "--model.d_model", "16", "--model.n_layer", "1", "--model.d_state", "4", "--model.vocab_size", "auto",
        "--batch_size", "8", "--grad_accum_steps", "2", "--max_steps", "12", "--lr", "1e-2", "--log_every", "1",
        "--eval_every", "6"};
    REQUIRE(run_and_wait(with(lm, {"--run_dir", dir.file("one")}), dir.file("one.log")) == 0);
    const int rc = run_and_wait(with(lm, {"--run_dir", dir.file("three"), "--ranks", "3"}), dir.file("three.log"));
    INFO(test::read_all(dir.file("three.log")));
    REQUIRE(rc == 0);
    const auto a = rows_of(dir.file("one/metrics.jsonl")), b = rows_of(dir.file("three/metrics.jsonl"));
    REQUIRE(a.size() == 12);
    REQUIRE(b.size() == 12);
    for (size_t i = 0; i < a.size(); ++i) {
        INFO("step " << a[i]["step"] << ": one process " << a[i]["loss"] << ", three ranks " << b[i]["loss"]);
        CHECK(std::abs(a[i]["loss"].get<double>() - b[i]["loss"].get<double>()) <= 1e-4 * a[i]["loss"].get<double>());
    }
    CHECK(a.back()["loss"].get<double>() < a.front()["loss"].get<double>());
    check_same_scores(rows_of(dir.file("one/metrics.jsonl"), "eval"), rows_of(dir.file("three/metrics.jsonl"), "eval"));
    check_same_scores(rows_of(dir.file("one/metrics.jsonl"), "test"), rows_of(dir.file("three/metrics.jsonl"), "test"));
}

TEST_CASE("distributed: a rank killed mid-run ends the job with an error naming it; a stop signal leaves rank 0's "
          "checkpoint, and the run resumes with one rank",
          "[distributed][cli]") {
    TempDir dir("ranks_fail");
    const std::vector<std::string> long_run = with(kRun, {"--max_steps", "100000", "--checkpoint_every", "0"});
    // SIGKILL one rank: the launcher names it and stops the other
    const pid_t launcher = spawn_logged(test::cli_binary(), with(long_run, {"--run_dir", dir.file("a"), "--ranks", "2"}),
                                        dir.file("a.log"), false, false);
    std::vector<pid_t> ranks;
    for (int i = 0; i < 400 && ranks.size() < 2; ++i) {
        ::usleep(25'000);
        ranks.clear();
        std::ifstream children(fmt::format("/proc/{}/task/{}/children", launcher, launcher));
        for (pid_t p; children >> p;) ranks.push_back(p);
    }
    REQUIRE(ranks.size() == 2);
    for (int i = 0; i < 400 && !std::filesystem::exists(dir.file("a/metrics.jsonl")); ++i) ::usleep(25'000);
    ::usleep(300'000);
    ::kill(ranks[1], SIGKILL);
    int status = 0;
    ::waitpid(launcher, &status, 0);
    const std::string log = test::read_all(dir.file("a.log"));
    INFO(log);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 2);
    CHECK(log.find("error: train --ranks 2: rank 1 ended with signal 9") != std::string::npos);
    for (pid_t p : ranks) CHECK(::kill(p, 0) != 0); // none is left running

    // SIGTERM to the launcher: the ranks agree on the step, rank 0 writes the checkpoint
    const pid_t again = spawn_logged(test::cli_binary(), with(long_run, {"--run_dir", dir.file("b"), "--ranks", "2"}),
                                     dir.file("b.log"), false, false);
    for (int i = 0; i < 400 && !std::filesystem::exists(dir.file("b/metrics.jsonl")); ++i) ::usleep(25'000);
    ::usleep(300'000);
    ::kill(again, SIGTERM);
    ::waitpid(again, &status, 0);
    const std::string log_b = test::read_all(dir.file("b.log"));
    INFO(log_b);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 128 + SIGTERM);
    const std::string said = "interrupted (SIGTERM) after step ";
    const size_t at = log_b.find(said);
    REQUIRE(at != std::string::npos);
    CHECK(log_b.find(said, at + 1) == std::string::npos); // said once, by rank 0
    const int64_t step = std::stoll(log_b.substr(at + said.size()));
    const std::string ckpt = dir.file(fmt::format("b/checkpoints/step_{:07}.safetensors", step));
    REQUIRE(std::filesystem::exists(ckpt));
    // resumed with one rank (a checkpoint holds no rank count), for a few more steps
    REQUIRE(run_and_wait({"train", "--resume", ckpt, "--max_steps", std::to_string(step + 3)}, dir.file("c.log")) == 0);
    CHECK(rows_of(dir.file("b/metrics.jsonl")).back()["step"] == step + 3);
}

TEST_CASE("distributed: bad --ranks values are refused before any rank starts", "[distributed][cli]") {
    test::require_one_error_line(test::run_cli("train --ranks 0 --device cpu"), {"--ranks is 0", "[1, 256]"});
    test::require_one_error_line(test::run_cli("train --ranks 4 --device cpu --batch_size 2"),
                                 {"--ranks 4", "batch_size is 2"});
}
