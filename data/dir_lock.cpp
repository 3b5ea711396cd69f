// data/dir_lock.cpp: see data/dir_lock.h.
#include "data/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "tensor/check.h"

namespace mg::data {

namespace {

// The process id written in the lock file (0 when it is empty or not a number).
long read_pid(int fd) {
    char buf[32] = {};
    const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    char* end = nullptr;
    const long pid = std::strtol(buf, &end, 10);
    return pid > 0 ? pid : 0;
}

} // namespace

DirLock::DirLock(const std::string& dir, const std::string& what) {
    path_ = (std::filesystem::path(dir) / ".lock").string();
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    MG_CHECK(fd_ >= 0, "{} '{}': cannot open its lock file '{}': {}", what, dir, path_, std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const int err = errno;
        const long holder = read_pid(fd_);
        ::close(fd_);
        fd_ = -1;
        if (err == EWOULDBLOCK)
            throw Error(fmt::format("{} '{}' is in use by {} (its lock '{}'); wait for that run to end, or choose "
                                    "another directory",
                                    what, dir, holder ? fmt::format("process {}", holder) : std::string("another process"),
                                    path_));
        throw Error(fmt::format("{} '{}': cannot lock '{}': {}", what, dir, path_, std::strerror(err)));
    }
    previous_ = read_pid(fd_); // the lock was free: a process id left here belongs to a run that died
    const std::string pid = std::to_string(long(::getpid())) + "\n";
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
        const int err = errno;
        release();
        throw Error(fmt::format("{} '{}': cannot write its lock file '{}': {}", what, dir, path_, std::strerror(err)));
    }
}

void DirLock::release() {
    if (fd_ < 0) return;
    (void)!::ftruncate(fd_, 0); // released: no process named (a failure only costs a false report later)
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
    fd_ = -1;
}

DirLock::~DirLock() { release(); }

DirLock::DirLock(DirLock&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)), previous_(o.previous_) { o.fd_ = -1; }

DirLock& DirLock::operator=(DirLock&& o) noexcept {
    if (this != &o) {
        release();
        fd_ = o.fd_;
        path_ = std::move(o.path_);
        previous_ = o.previous_;
        o.fd_ = -1;
    }
    return *this;
}

} // namespace mg::data
