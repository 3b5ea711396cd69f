// data/atomic_file.cpp: see data/atomic_file.h.
#include "data/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "tensor/check.h"

namespace mg::data {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
    tmp_ = fmt::format("{}.tmp.{}", path_, ::getpid());
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("open", tmp_);
}

AtomicFile::~AtomicFile() {
    if (fd_ >= 0) {
        ::close(fd_);
        ::unlink(tmp_.c_str());
    }
}

void AtomicFile::fail(const char* call, const std::string& what) {
    const std::string why = std::strerror(errno);
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    ::unlink(tmp_.c_str());
    MG_CHECK(false, "AtomicFile: {} failed for '{}' (writing '{}'): {}", call, what, path_, why);
    std::abort(); // not reached
}

void AtomicFile::write(std::string_view bytes) {
    MG_CHECK(fd_ >= 0, "AtomicFile: write to '{}' after commit", path_);
    while (!bytes.empty()) {
        ssize_t n = ::write(fd_, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) fail("write", tmp_);
        bytes.remove_prefix(size_t(n));
    }
}

void AtomicFile::commit() {
    MG_CHECK(fd_ >= 0, "AtomicFile: '{}' committed twice", path_);
    if (::fsync(fd_) != 0) fail("fsync", tmp_);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("close", tmp_);
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("rename", path_);
    const size_t slash = path_.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { // makes the rename durable; not every file system allows it
        (void)::fsync(dfd);
        ::close(dfd);
    }
}

void write_file_atomic(const std::string& path, std::string_view content) {
    AtomicFile f(path);
    f.write(content);
    f.commit();
}

int remove_stale_temp_files(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return 0;
    int removed = 0;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        const std::string name = entry.path().filename().string();
        const size_t at = name.rfind(".tmp.");
        if (at == std::string::npos || at + 5 >= name.size()) continue;
        const std::string digits = name.substr(at + 5);
        if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
        const pid_t pid = pid_t(std::stol(digits));
        const bool alive = pid != ::getpid() && pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
        if (!alive && fs::remove(entry.path(), ec)) ++removed;
    }
    return removed;
}

} // namespace mg::data
