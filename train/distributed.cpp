// train/distributed.cpp: see distributed.h.
#include "train/distributed.h"

#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "tensor/check.h"
#include "train/process.h"

namespace mg::train {

RowRange rank_slice(int64_t n, int rank, int world) {
    MG_CHECK(world >= 1 && rank >= 0 && rank < world && n >= 0, "rank_slice: rank {} of world {} over {} rows", rank,
             world, n);
    const int64_t base = n / world, extra = n % world;
    const int64_t lo = rank * base + std::min<int64_t>(rank, extra);
    return {lo, lo + base + (rank < extra ? 1 : 0)};
}

// ---- socket I/O with deadlines -------------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point deadline_in(double s) {
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// Waits until fd is ready for `events` or the deadline passes (false).
bool wait_ready(int fd, short events, Clock::time_point deadline) {
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) return false;
        pollfd p{fd, events, 0};
        const int r = ::poll(&p, 1, int(std::min<int64_t>(left, 1000)));
        if (r > 0) return true;
        if (r < 0 && errno != EINTR) return false;
    }
}

// `who` names the peer for messages ("rank 2").
void send_all(int fd, const void* data, size_t n, Clock::time_point deadline, const std::string& me,
              const std::string& who, double timeout_s) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        MG_CHECK(wait_ready(fd, POLLOUT, deadline), "{}: {} did not take data for {} s (hung?)", me, who, timeout_s);
        const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        MG_CHECK(w > 0, "{}: lost {} (its connection closed: did it exit?): {}", me, who, std::strerror(errno));
        p += w;
        n -= size_t(w);
    }
}

void recv_all(int fd, void* data, size_t n, Clock::time_point deadline, const std::string& me, const std::string& who,
              double timeout_s) {
    char* p = static_cast<char*>(data);
    while (n > 0) {
        MG_CHECK(wait_ready(fd, POLLIN, deadline), "{}: {} sent nothing for {} s (hung, or stopped at another step?)",
                 me, who, timeout_s);
        const ssize_t r = ::recv(fd, p, n, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        MG_CHECK(r > 0, "{}: lost {} (its connection closed: did it exit?)", me, who);
        p += r;
        n -= size_t(r);
    }
}

sockaddr_un socket_address(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    MG_CHECK(path.size() < sizeof(a.sun_path), "distributed: the rendezvous socket path '{}' is longer than {} bytes",
             path, sizeof(a.sun_path) - 1);
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    return a;
}

} // namespace

// ---- SocketCommunicator --------------------------------------------------------------------------

SocketCommunicator::SocketCommunicator(int rank, int world, const std::string& rendezvous_dir, double timeout_s)
    : rank_(rank), world_(world), timeout_s_(timeout_s), path_(rendezvous_dir + "/rank0.sock") {
    MG_CHECK(world >= 1 && rank >= 0 && rank < world, "distributed: rank {} of world {} (expected 0 <= rank < world)",
             rank, world);
    MG_CHECK(timeout_s > 0, "distributed: timeout {} s, expected > 0", timeout_s);
    if (world == 1) return;
    const sockaddr_un addr = socket_address(path_);
    const auto deadline = deadline_in(timeout_s);
    const std::string me = fmt::format("rank {}", rank);
    if (rank == 0) {
        listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        MG_CHECK(listen_fd_ >= 0, "rank 0: socket(): {}", std::strerror(errno));
        ::unlink(path_.c_str());
        MG_CHECK(::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0,
                 "rank 0: cannot listen on '{}': {}", path_, std::strerror(errno));
        MG_CHECK(::listen(listen_fd_, world) == 0, "rank 0: listen(): {}", std::strerror(errno));
        peers_.assign(size_t(world), -1);
        for (int k = 1; k < world; ++k) {
            MG_CHECK(wait_ready(listen_fd_, POLLIN, deadline), "rank 0: only {} of {} ranks joined within {} s", k,
                     world, timeout_s);
            const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            MG_CHECK(fd >= 0, "rank 0: accept(): {}", std::strerror(errno));
            int32_t r = -1;
            recv_all(fd, &r, sizeof(r), deadline, me, "a joining rank", timeout_s);
            MG_CHECK(r >= 1 && r < world && peers_[size_t(r)] < 0, "rank 0: a joining process says it is rank {} (world "
                     "{}; ranks joined so far: {})", r, world, k - 1);
            peers_[size_t(r)] = fd;
        }
    } else {
        int fd = -1;
        for (;;) { // rank 0 may not be listening yet
            fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            MG_CHECK(fd >= 0, "{}: socket(): {}", me, std::strerror(errno));
            if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) break;
            ::close(fd);
            MG_CHECK(Clock::now() < deadline, "{}: rank 0 did not open '{}' within {} s", me, path_, timeout_s);
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        peers_ = {fd};
        const int32_t r = rank;
        send_all(fd, &r, sizeof(r), deadline, me, "rank 0", timeout_s);
    }
}

SocketCommunicator::~SocketCommunicator() {
    for (int fd : peers_)
        if (fd >= 0) ::close(fd);
    if (listen_fd_ >= 0) {
        ::close(listen_fd_);
        ::unlink(path_.c_str());
    }
}

// Star reduction: each rank r > 0 sends (length, data) to rank 0; rank 0 adds them to its own in
// rank order and sends the sum back to every rank.
template <typename T> void SocketCommunicator::reduce(std::span<T> data) {
    if (world_ == 1) return;
    const auto deadline = deadline_in(timeout_s_);
    const std::string me = fmt::format("rank {}", rank_);
    const uint64_t n = data.size();
    if (rank_ != 0) {
        send_all(peers_[0], &n, sizeof(n), deadline, me, "rank 0", timeout_s_);
        send_all(peers_[0], data.data(), n * sizeof(T), deadline, me, "rank 0", timeout_s_);
        recv_all(peers_[0], data.data(), n * sizeof(T), deadline, me, "rank 0", timeout_s_);
        return;
    }
    std::vector<T> other(n);
    for (int r = 1; r < world_; ++r) {
        const std::string who = fmt::format("rank {}", r);
        uint64_t m = 0;
        recv_all(peers_[size_t(r)], &m, sizeof(m), deadline, me, who, timeout_s_);
        MG_CHECK(m == n, "rank 0: rank {} reduces {} values where rank 0 has {} (the ranks disagree on the model or "
                 "the step)", r, m, n);
        recv_all(peers_[size_t(r)], other.data(), n * sizeof(T), deadline, me, who, timeout_s_);
        for (uint64_t i = 0; i < n; ++i) data[i] += other[i];
    }
    for (int r = 1; r < world_; ++r)
        send_all(peers_[size_t(r)], data.data(), n * sizeof(T), deadline, me, fmt::format("rank {}", r), timeout_s_);
}

void SocketCommunicator::all_reduce_sum(std::span<double> data) { reduce(data); }
void SocketCommunicator::all_reduce_sum(std::span<float> data) { reduce(data); }

void SocketCommunicator::barrier() {
    double one = 1;
    reduce(std::span<double>(&one, 1));
}

// ---- gradients ------------------------------------------------------------------------------------

std::vector<GradBucket> plan_gradient_buckets(const nn::NamedTensors& params, int64_t cap_bytes) {
    MG_CHECK(cap_bytes >= 4, "plan_gradient_buckets: cap_bytes is {}, expected at least one f32 (4)", cap_bytes);
    const int64_t cap = cap_bytes / int64_t(sizeof(float));
    std::vector<GradBucket> plan;
    for (size_t k = params.size(); k-- > 0;) { // last registered first: the order the backward finishes them
        const int64_t n = params[k].second.numel();
        if (plan.empty() || (plan.back().elements > 0 && plan.back().elements + n > cap)) plan.emplace_back();
        plan.back().params.push_back(k);
        plan.back().elements += n;
    }
    return plan;
}

void all_reduce_gradients(Communicator& comm, const nn::NamedTensors& params, std::vector<double>& stats,
                          int64_t bucket_bytes) {
    // first the stats and one has-a-gradient flag per parameter (a rank with no rows in a step has
    // no gradients), so that the buckets carry only parameters some rank has a gradient for
    const size_t P = params.size(), S = stats.size();
    stats.resize(S + P, 0.0);
    for (size_t i = 0; i < P; ++i)
        if (params[i].second.grad().defined()) stats[S + i] = 1.0;
    comm.all_reduce_sum(std::span<double>(stats));
    std::vector<float> flat;
    for (const GradBucket& bucket : plan_gradient_buckets(params, bucket_bytes)) {
        flat.assign(size_t(bucket.elements), 0.0f);
        size_t at = 0, used = 0;
        for (size_t i : bucket.params) {
            if (stats[S + i] == 0) continue; // no rank has a gradient: it stays without one
            const Tensor& p = params[i].second;
            if (const Tensor g = p.grad(); g.defined()) {
                const std::vector<float> v = g.to(Device::cpu()).to(DType::f32).to_vector<float>();
                std::copy(v.begin(), v.end(), flat.begin() + int64_t(at));
            }
            at += size_t(p.numel());
            ++used;
        }
        if (used == 0) continue; // the same on every rank: the flags are summed
        comm.all_reduce_sum(std::span<float>(flat.data(), at));
        at = 0;
        for (size_t i : bucket.params) {
            if (stats[S + i] == 0) continue;
            const Tensor& p = params[i].second;
            const size_t m = size_t(p.numel());
            const std::vector<float> v(flat.begin() + int64_t(at), flat.begin() + int64_t(at + m));
            p.impl().grad = Tensor::from_vector(v, p.shape(), {DType::f32, p.device()}).to(p.dtype()).impl_ptr();
            at += m;
        }
    }
    stats.resize(S);
}

// ---- from the environment -------------------------------------------------------------------------

namespace {

int64_t env_int(const char* name, const char* value) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(value, &end, 10);
    MG_CHECK(errno == 0 && end != value && *end == '\0', "distributed: {}='{}' is not an integer", name, value);
    return v;
}

} // namespace

std::unique_ptr<Communicator> communicator_from_env() {
    const char* rank = std::getenv("MG_RANK");
    if (!rank) return nullptr;
    const char* world = std::getenv("MG_WORLD");
    const char* dir = std::getenv("MG_RENDEZVOUS");
    MG_CHECK(world && dir, "distributed: MG_RANK is set but MG_WORLD or MG_RENDEZVOUS is not (ranks are started by "
             "`mambagrad train --ranks N`)");
    double timeout = 600;
    if (const char* t = std::getenv("MG_TIMEOUT_S")) timeout = double(env_int("MG_TIMEOUT_S", t));
    return std::make_unique<SocketCommunicator>(int(env_int("MG_RANK", rank)), int(env_int("MG_WORLD", world)), dir,
                                                timeout);
}

// ---- the launcher ---------------------------------------------------------------------------------

namespace {

std::vector<pid_t> g_children; // for the signal handler: forwards SIGINT/SIGTERM
volatile sig_atomic_t g_forwarded = 0;

void forward_signal(int sig) {
    g_forwarded = sig;
    for (pid_t p : g_children)
        if (p > 0) ::kill(p, sig);
}

std::string describe(int status) {
    if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt::format("signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
    return fmt::format("status {}", status);
}

} // namespace

int launch_ranks(const std::string& program, const std::vector<std::string>& args, int world, double timeout_s) {
    MG_CHECK(world >= 2, "train --ranks: {} ranks, expected >= 2 (1 is a plain run)", world);
    char tmpl[] = "/tmp/mg-ranks-XXXXXX";
    MG_CHECK(::mkdtemp(tmpl) != nullptr, "train --ranks: cannot create a rendezvous folder in /tmp: {}",
             std::strerror(errno));
    const std::string dir = tmpl;
    g_children.assign(size_t(world), -1);
    struct sigaction sa{}, old_int{}, old_term{};
    sa.sa_handler = forward_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_int);
    ::sigaction(SIGTERM, &sa, &old_term);
    std::fflush(stdout);
    std::fflush(stderr);
    for (int r = 0; r < world; ++r) {
        SpawnOptions o;
        o.own_group = true; // a terminal's Ctrl-C reaches the launcher alone, which passes it on once
        o.env = {{"MG_RANK", std::to_string(r)}, {"MG_WORLD", std::to_string(world)}, {"MG_RENDEZVOUS", dir},
                 {"MG_TIMEOUT_S", std::to_string(int64_t(timeout_s))}};
        try {
            g_children[size_t(r)] = spawn_process(program, args, o);
        } catch (const Error&) {
            for (pid_t p : g_children)
                if (p > 0) ::kill(p, SIGKILL);
            throw;
        }
    }
    // Wait for every rank. At the first failure (unless the user's stop signal is ending the ranks
    // already, when a second signal would cut rank 0's checkpoint short) stop the others: SIGTERM,
    // then SIGKILL after a grace period, so that no rank is left waiting for one that is gone. The
    // rank blamed is the one that failed on its own: among those that ended within 200 ms of the
    // first failure, one ended by a signal (a crash, a kill) before one that exited with an error
    // (which is how the others report losing it), the lowest rank among equals.
    int failed_rank = -1, failed_status = 0, live = world;
    Clock::time_point blame_until = Clock::time_point::max(), kill_at = Clock::time_point::max();
    while (live > 0) {
        int status = 0;
        const pid_t pid = ::waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == EINTR) continue;
        if (pid < 0) break; // no children left
        const auto now = Clock::now();
        if (pid == 0) {
            if (now >= blame_until) { // the culprit is chosen: stop the rest
                blame_until = Clock::time_point::max();
                if (!g_forwarded) {
                    for (pid_t p : g_children)
                        if (p > 0) ::kill(p, SIGTERM);
                    kill_at = now + std::chrono::seconds(10);
                }
            }
            if (now >= kill_at) {
                for (pid_t p : g_children)
                    if (p > 0) ::kill(p, SIGKILL);
                kill_at = Clock::time_point::max();
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            continue;
        }
        int r = 0;
        while (r < world && g_children[size_t(r)] != pid) ++r;
        if (r == world) continue;
        g_children[size_t(r)] = -1;
        --live;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
        const bool by_signal = WIFSIGNALED(status), first = failed_rank < 0;
        if (first || (now < blame_until && by_signal && !WIFSIGNALED(failed_status))) {
            failed_rank = r;
            failed_status = status;
        }
        if (first) blame_until = now + std::chrono::milliseconds(200);
    }
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGTERM, &old_term, nullptr);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    if (failed_rank < 0) return 0;
    if (g_forwarded) // a stop the user asked for: rank 0 said where the checkpoint is
        return WIFEXITED(failed_status) ? WEXITSTATUS(failed_status) : 128 + int(g_forwarded);
    throw Error(fmt::format("train --ranks {}: rank {} ended with {}; the other ranks were stopped (its error is "
                            "above)", world, failed_rank, describe(failed_status)));
}

} // namespace mg::train
