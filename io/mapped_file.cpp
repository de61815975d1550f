#include "mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <atomic>
#include <csignal>
#include <mutex>
#include <random>

#include "../core/error.h"

namespace strata {

namespace {

const char* file_kind(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISLNK(mode)) return "a symbolic link";
    if (S_ISREG(mode)) return "a regular file";
    return "not a regular file";
}

}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
    // Checked before opening: opening a FIFO for reading blocks until a writer appears, and
    // opening a device can have effects of its own. O_NONBLOCK covers a file swapped for a FIFO
    // between the stat and the open; it changes nothing for a regular file.
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
        STRATA_FAIL(path, ": not a regular file (it is ", file_kind(st.st_mode), ")");
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) STRATA_FAIL(path, ": cannot open (", std::strerror(errno), ")");
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        STRATA_FAIL(path, ": cannot stat (", std::strerror(err), ")");
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        STRATA_FAIL(path, ": not a regular file (it is ", file_kind(st.st_mode), ")");
    }
    std::shared_ptr<MappedFile> f(new MappedFile());
    f->path_ = path;
    f->size_ = static_cast<size_t>(st.st_size);
    if (f->size_ > 0) {
        void* p = ::mmap(nullptr, f->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            STRATA_FAIL(path, ": cannot map (", std::strerror(err), ")");
        }
        f->data_ = static_cast<const unsigned char*>(p);
    }
    f->fd_ = fd;  // kept open for check(): it sees this file even if the path is renamed over
    f->mtime_ns_ = static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
    return f;
}

MappedFile::~MappedFile() {
    if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
}

void MappedFile::check() const {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) STRATA_FAIL(path_, ": cannot stat the loaded weight file (", std::strerror(errno), ")");
    const long long mtime_ns = static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
    if (static_cast<size_t>(st.st_size) == size_ && mtime_ns == mtime_ns_) return;
    STRATA_FAIL(path_, ": the weight file changed on disk after it was loaded (",
                static_cast<size_t>(st.st_size) == size_ ? "rewritten in place"
                                                         : "size " + std::to_string(size_) + " -> " +
                                                               std::to_string(st.st_size) + " bytes",
                "); the model's weights are no longer what was loaded: load the file again (replace a weight "
                "file under a running service by renaming a new file over it, which leaves loaded models intact)");
}

size_t release_file_pages(const void* data, size_t size) {
    const long page_size = ::sysconf(_SC_PAGESIZE);
    if (page_size <= 0 || !data || size == 0) return 0;
    const uintptr_t page = static_cast<uintptr_t>(page_size);
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
    const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + size) / page * page;
    if (end <= begin) return 0;
    const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    // One 64-bit entry per page: bit 63 present, bit 61 file page (or shared anonymous).
    constexpr uint64_t kPresent = uint64_t{1} << 63, kFile = uint64_t{1} << 61;
    size_t dropped = 0;
    uintptr_t run = 0;  // start of the current run of droppable pages, 0 when none
    auto flush = [&](uintptr_t at) {
        if (run && at > run && ::madvise(reinterpret_cast<void*>(run), at - run, MADV_DONTNEED) == 0)
            dropped += at - run;
        run = 0;
    };
    uint64_t entries[512];
    uintptr_t addr = begin;  // pages before addr have been looked at
    while (addr < end) {
        const size_t want = std::min<size_t>(512, (end - addr) / page);
        const ssize_t got = ::pread(fd, entries, want * sizeof(uint64_t),
                                    static_cast<off_t>(addr / page * sizeof(uint64_t)));
        if (got <= 0) break;
        const size_t count = static_cast<size_t>(got) / sizeof(uint64_t);
        for (size_t i = 0; i < count; ++i, addr += page) {
            const bool droppable = (entries[i] & kPresent) && (entries[i] & kFile);
            if (droppable && !run) run = addr;
            if (!droppable) flush(addr);
        }
        if (count < want) break;
    }
    flush(addr);
    ::close(fd);
    return dropped;
}

void check_writable(const std::string& path) {
    STRATA_CHECK(!path.empty(), "an empty output path; give a file name");
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) STRATA_FAIL(path, ": cannot write: it is a directory; give a file name");
        if (!S_ISREG(st.st_mode))
            STRATA_FAIL(path, ": cannot write: it is ", file_kind(st.st_mode), ", not a regular file");
    }
    const size_t slash = path.find_last_of('/');
    const std::string folder = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    if (::stat(folder.c_str(), &st) != 0)
        STRATA_FAIL(path, ": cannot write: folder '", folder, "': ", std::strerror(errno));
    if (!S_ISDIR(st.st_mode)) STRATA_FAIL(path, ": cannot write: '", folder, "' is not a folder");
    if (::access(folder.c_str(), W_OK | X_OK) != 0)
        STRATA_FAIL(path, ": cannot write in folder '", folder, "' (", std::strerror(errno), ")");
}

bool same_file(const std::string& a, const std::string& b) {
    struct stat sa {}, sb {};
    if (a.empty() || b.empty() || ::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

namespace {

// Temporary files being written, for the signal handler: a fixed table (no allocation, no lock
// in the handler). A slot is 0 free, 1 being filled, 2 holding a path to remove.
constexpr int kTempSlots = 32;
struct TempSlot {
    std::atomic<int> state{0};
    char path[4096];
};
TempSlot g_temp_slots[kTempSlots];
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs lock-free atomics");

constexpr int kCleanupSignals[] = {SIGINT, SIGTERM, SIGHUP};
struct sigaction g_previous[3];
std::once_flag g_install_once;

void remove_temporaries_and_reraise(int sig) {
    const int saved_errno = errno;
    for (TempSlot& slot : g_temp_slots)
        if (slot.state.load(std::memory_order_acquire) == 2) ::unlink(slot.path);
    for (int i = 0; i < 3; ++i) {
        if (kCleanupSignals[i] != sig) continue;
        // Back to what was there before (the default: terminate), then the same signal again: it
        // is delivered once this handler returns, so the process ends as the signal says.
        ::sigaction(sig, &g_previous[i], nullptr);
        ::raise(sig);
    }
    errno = saved_errno;
}

// Registers `path` for removal on a signal; returns the slot (or -1 when the table is full:
// then the file is only removed on the ordinary error paths).
int register_temporary(const std::string& path) {
    if (path.size() >= sizeof(TempSlot::path)) return -1;
    for (int i = 0; i < kTempSlots; ++i) {
        int expected = 0;
        if (g_temp_slots[i].state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
            std::memcpy(g_temp_slots[i].path, path.c_str(), path.size() + 1);
            g_temp_slots[i].state.store(2, std::memory_order_release);
            return i;
        }
    }
    return -1;
}

void unregister_temporary(int slot) {
    if (slot >= 0) g_temp_slots[slot].state.store(0, std::memory_order_release);
}

// An unpredictable suffix: 64 random bits from the kernel (getrandom via std::random_device).
std::string random_suffix() {
    static std::atomic<uint64_t> counter{0};
    std::random_device rd;
    const uint64_t r = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ counter.fetch_add(0x9e3779b97f4a7c15ull);
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(r));
    return buf;
}

}  // namespace

void remove_temporary_files_on_signals() {
    std::call_once(g_install_once, [] {
        for (int i = 0; i < 3; ++i) {
            struct sigaction previous {};
            if (::sigaction(kCleanupSignals[i], nullptr, &previous) != 0) continue;
            if (previous.sa_handler == SIG_IGN) continue;  // ignored (nohup): leave it so
            g_previous[i] = previous;
            struct sigaction action {};
            action.sa_handler = remove_temporaries_and_reraise;
            sigemptyset(&action.sa_mask);
            ::sigaction(kCleanupSignals[i], &action, nullptr);
        }
    });
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
    write_file_atomically(path, {{bytes.data(), bytes.size()}});
}

void write_file_atomically(const std::string& path, const std::vector<std::pair<const void*, size_t>>& pieces) {
    check_writable(path);
    // The temporary: an unpredictable name in the output's folder, created exclusively and never
    // through a symbolic link, so nothing planted there can redirect the write.
    std::string tmp;
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
        tmp = path + ".tmp-" + random_suffix();
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) STRATA_FAIL(path, ": cannot write (", std::strerror(errno), ")");
    }
    if (fd < 0) STRATA_FAIL(path, ": cannot create a temporary file beside it");
    const int slot = register_temporary(tmp);
    auto fail = [&](const char* what, int err) {
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        unregister_temporary(slot);
        STRATA_FAIL(path, ": ", what, " (", std::strerror(err), ")");
    };
    for (const auto& [data, size] : pieces) {
        const char* bytes = static_cast<const char*>(data);
        for (size_t done = 0; done < size;) {
            const ssize_t n = ::write(fd, bytes + done, size - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) fail("write failed", n < 0 ? errno : EIO);
            done += static_cast<size_t>(n);
        }
    }
    const int closed = ::close(fd);
    fd = -1;
    if (closed != 0) fail("write failed", errno);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot write", errno);
    unregister_temporary(slot);
}

}  // namespace strata
