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
#include <fstream>

#include "../core/error.h"

namespace strata {

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) STRATA_FAIL(path, ": cannot open (", std::strerror(errno), ")");
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        STRATA_FAIL(path, ": cannot stat (", std::strerror(err), ")");
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        STRATA_FAIL(path, ": not a regular file", S_ISDIR(st.st_mode) ? " (it is a directory)" : "");
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
    ::close(fd);
    return f;
}

MappedFile::~MappedFile() {
    if (data_) ::munmap(const_cast<unsigned char*>(data_), size_);
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
    STRATA_CHECK(!path.empty(), "an empty output path");
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        STRATA_FAIL(path, ": cannot write: it is a directory; give a file name");
    const size_t slash = path.find_last_of('/');
    const std::string folder = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    if (::stat(folder.c_str(), &st) != 0)
        STRATA_FAIL(path, ": cannot write: folder '", folder, "': ", std::strerror(errno));
    if (!S_ISDIR(st.st_mode)) STRATA_FAIL(path, ": cannot write: '", folder, "' is not a folder");
    if (::access(folder.c_str(), W_OK | X_OK) != 0)
        STRATA_FAIL(path, ": cannot write in folder '", folder, "' (", std::strerror(errno), ")");
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
    const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) STRATA_FAIL(path, ": cannot write (", std::strerror(errno), ")");
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        out.flush();
        if (!out) {
            std::remove(tmp.c_str());
            STRATA_FAIL(path, ": write failed");
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        std::remove(tmp.c_str());
        STRATA_FAIL(path, ": cannot write (", std::strerror(err), ")");
    }
}

}  // namespace strata
