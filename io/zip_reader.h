// A reader for zip archives of *stored* (uncompressed) entries, the container torch.save uses
// since PyTorch 1.6. It parses the central directory of an archive already in memory (an mmap)
// and hands out each entry's bytes in place, so 64-byte-aligned tensor data is never copied.
// Written here rather than taken from minizip because torch never compresses, and minizip's
// stream API would copy every byte; see README "Dependencies, and why".
//
// Trusts nothing: every offset and size is checked against the file before it is used, entries
// may not overlap or lie outside the file, and compressed or encrypted entries are refused by
// name. Handles zip64 (archives and entries over 4 GB) and data descriptors (flag bit 3, which
// torch's writer always sets).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace strata {

// One entry as the central directory describes it.
struct ZipEntry {
    std::string name;
    uint16_t method = 0;        // 0 stored, 8 deflate, ...
    uint16_t flags = 0;         // general purpose bit flags
    uint32_t crc32 = 0;         // CRC-32 of the uncompressed bytes
    uint64_t compressed_size = 0;
    uint64_t size = 0;          // uncompressed size
    uint64_t header_offset = 0; // of the local file header
    uint64_t data_offset = 0;   // first byte of the entry's data in the file
};

class ZipArchive {
public:
    // Parses the archive held in data[0, size). `name` (the file path) starts every error.
    // Throws strata::Error for anything malformed.
    ZipArchive(const unsigned char* data, size_t size, std::string name);

    const std::vector<ZipEntry>& entries() const { return entries_; }
    // nullptr when there is no entry of that name.
    const ZipEntry* find(const std::string& entry_name) const;

    // The bytes of a stored entry, in place. Throws naming the entry when it is compressed or
    // encrypted, or (with verify_crc) when its CRC-32 does not match.
    const unsigned char* read(const ZipEntry& entry, bool verify_crc) const;

    const std::string& name() const { return name_; }

private:
    const unsigned char* data_;
    size_t size_;
    std::string name_;
    std::vector<ZipEntry> entries_;
    std::unordered_map<std::string, size_t> index_;
};

// CRC-32 (IEEE 802.3, the zip and PNG checksum) of `size` bytes, continuing from `crc`.
uint32_t crc32(const unsigned char* data, size_t size, uint32_t crc = 0);

}  // namespace strata
