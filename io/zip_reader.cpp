// Stored-entry zip reader (see zip_reader.h). Layouts, all little-endian (APPNOTE.TXT 6.3):
//
//   local file header, 30 bytes + name + extra, then the data (then a data descriptor if bit 3)
//     0 u32 0x04034b50   4 u16 version   6 u16 flags   8 u16 method   10 u16 time  12 u16 date
//    14 u32 crc32       18 u32 compressed size   22 u32 size   26 u16 name len   28 u16 extra len
//   central directory header, 46 bytes + name + extra + comment
//     0 u32 0x02014b50   4 u16 made by   6 u16 version   8 u16 flags   10 u16 method
//    12 u16 time  14 u16 date  16 u32 crc32  20 u32 compressed size  24 u32 size
//    28 u16 name len   30 u16 extra len   32 u16 comment len   34 u16 disk   36 u16 int. attr
//    38 u32 ext. attr   42 u32 local header offset
//   zip64 end of central directory record, 56 bytes (+ extensible data)
//     0 u32 0x06064b50   4 u64 record size - 12   12 u16 made by   14 u16 version
//    16 u32 disk   20 u32 cd disk   24 u64 entries on disk   32 u64 entries   40 u64 cd size
//    48 u64 cd offset
//   zip64 end of central directory locator, 20 bytes, just before the end record
//     0 u32 0x07064b50   4 u32 disk   8 u64 zip64 record offset   16 u32 total disks
//   end of central directory record, 22 bytes + comment, at the end of the file
//     0 u32 0x06054b50   4 u16 disk   6 u16 cd disk   8 u16 entries on disk   10 u16 entries
//    12 u32 cd size   16 u32 cd offset   20 u16 comment len
//
// A 32-bit field of 0xFFFFFFFF (16-bit: 0xFFFF) means "see the zip64 record / extra field".
// The zip64 extra field (id 0x0001) holds, in this order and only for the saturated fields:
// u64 size, u64 compressed size, u64 local header offset, u32 disk.
#include "zip_reader.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "../core/error.h"

namespace strata {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50, kCentralSig = 0x02014b50, kEndSig = 0x06054b50,
                   kZip64EndSig = 0x06064b50, kZip64LocatorSig = 0x07064b50;
constexpr size_t kLocalSize = 30, kCentralSize = 46, kEndSize = 22, kZip64EndSize = 56,
                 kZip64LocatorSize = 20;

uint16_t u16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t u32(const unsigned char* p) {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
           (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t u64(const unsigned char* p) { return u32(p) | (static_cast<uint64_t>(u32(p + 4)) << 32); }

// a + b <= limit, without overflow.
bool fits(uint64_t a, uint64_t b, uint64_t limit) { return a <= limit && b <= limit - a; }

const char* method_name(uint16_t method) {
    switch (method) {
        case 8: return "deflate";
        case 9: return "deflate64";
        case 12: return "bzip2";
        case 14: return "lzma";
        case 93: return "zstd";
        case 95: return "xz";
        default: return "unknown method";
    }
}

// Names can come from a hostile file: print at most 200 bytes of them.
std::string printable(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size() && i < 200; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f) {
            out += static_cast<char>(c);
        } else {
            static const char* hex = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    if (s.size() > 200) out += "...";
    return out;
}

}  // namespace

ZipArchive::ZipArchive(const unsigned char* data, size_t size, std::string name)
    : data_(data), size_(size), name_(std::move(name)) {
    const std::string where = name_ + ": zip archive";
    STRATA_CHECK(size_ >= kEndSize, where, " is ", size_, " bytes, too short to be a zip file");

    // 1. The end record: the last "PK\5\6" whose comment ends inside the file. The comment is
    //    at most 65535 bytes, so the search looks at the last 64 KB only.
    size_t end_pos = 0;
    bool found = false;
    const size_t lowest = size_ - kEndSize > 0xffff ? size_ - kEndSize - 0xffff : 0;
    for (size_t p = size_ - kEndSize + 1; p-- > lowest;) {
        if (u32(data_ + p) == kEndSig && p + kEndSize + u16(data_ + p + 20) <= size_) {
            end_pos = p;
            found = true;
            break;
        }
    }
    STRATA_CHECK(found, where, " has no end-of-central-directory record (the file is truncated "
                 "or not a zip archive)");
    const unsigned char* end = data_ + end_pos;
    uint64_t disk = u16(end + 4), cd_disk = u16(end + 6);
    uint64_t count_on_disk = u16(end + 8), count = u16(end + 10);
    uint64_t cd_size = u32(end + 12), cd_offset = u32(end + 16);
    uint64_t cd_limit = end_pos;  // the central directory ends before this

    // 2. zip64: the locator sits right before the end record and points at the zip64 record.
    if (end_pos >= kZip64LocatorSize && u32(end - kZip64LocatorSize) == kZip64LocatorSig) {
        const unsigned char* loc = end - kZip64LocatorSize;
        const uint64_t rec_pos = u64(loc + 8);
        STRATA_CHECK(u32(loc + 16) <= 1, where, " spans ", u32(loc + 16),
                     " disks; strata reads single-file archives only");
        STRATA_CHECK(fits(rec_pos, kZip64EndSize, end_pos - kZip64LocatorSize), where,
                     " zip64 end record offset ", rec_pos, " lies outside the file");
        const unsigned char* rec = data_ + rec_pos;
        STRATA_CHECK(u32(rec) == kZip64EndSig, where, " has no zip64 end record at offset ",
                     rec_pos, " (bad signature)");
        disk = u32(rec + 16);
        cd_disk = u32(rec + 20);
        count_on_disk = u64(rec + 24);
        count = u64(rec + 32);
        cd_size = u64(rec + 40);
        cd_offset = u64(rec + 48);
        cd_limit = rec_pos;
    } else {
        STRATA_CHECK(count != 0xffff && cd_size != 0xffffffffu && cd_offset != 0xffffffffu, where,
                     " needs a zip64 end record (its sizes are saturated) but has none");
    }
    STRATA_CHECK(disk == 0 && cd_disk == 0 && count_on_disk == count, where,
                 " is split over several disks; strata reads single-file archives only");
    STRATA_CHECK(fits(cd_offset, cd_size, cd_limit), where, " central directory [", cd_offset,
                 ", +", cd_size, ") lies outside the ", size_, "-byte file");
    STRATA_CHECK(count <= cd_size / kCentralSize, where, " claims ", count,
                 " entries but its central directory has room for ", cd_size / kCentralSize);

    // 3. The central directory: one header per entry, then check each local header.
    entries_.reserve(static_cast<size_t>(count));
    const unsigned char* cd_end = data_ + cd_offset + cd_size;
    const unsigned char* p = data_ + cd_offset;
    for (uint64_t i = 0; i < count; ++i) {
        const std::string at = where + " central directory entry " + std::to_string(i);
        STRATA_CHECK(static_cast<size_t>(cd_end - p) >= kCentralSize && u32(p) == kCentralSig, at,
                     " is missing or has a bad signature");
        ZipEntry e;
        e.flags = u16(p + 8);
        e.method = u16(p + 10);
        e.crc32 = u32(p + 16);
        e.compressed_size = u32(p + 20);
        e.size = u32(p + 24);
        const size_t name_len = u16(p + 28), extra_len = u16(p + 30), comment_len = u16(p + 32);
        uint64_t entry_disk = u16(p + 34);
        e.header_offset = u32(p + 42);
        STRATA_CHECK(static_cast<size_t>(cd_end - p) >= kCentralSize + name_len + extra_len + comment_len,
                     at, " runs past the end of the central directory");
        e.name.assign(reinterpret_cast<const char*>(p + kCentralSize), name_len);
        const std::string at_name = where + " entry '" + printable(e.name) + "'";
        STRATA_CHECK(!e.name.empty() && e.name.find('\0') == std::string::npos, at,
                     " has an empty name or a name containing a NUL byte");

        // zip64 extended information: the saturated fields, in the fixed order.
        const unsigned char* x = p + kCentralSize + name_len;
        const unsigned char* x_end = x + extra_len;
        while (x_end - x >= 4) {
            const uint16_t id = u16(x), len = u16(x + 2);
            STRATA_CHECK(x_end - x - 4 >= len, at_name, " has an extra field running past its end");
            if (id == 0x0001) {
                const unsigned char* f = x + 4;
                size_t left = len;
                auto take64 = [&](uint64_t& field) {
                    STRATA_CHECK(left >= 8, at_name, " zip64 extra field is too short");
                    field = u64(f);
                    f += 8;
                    left -= 8;
                };
                if (e.size == 0xffffffffu) take64(e.size);
                if (e.compressed_size == 0xffffffffu) take64(e.compressed_size);
                if (e.header_offset == 0xffffffffu) take64(e.header_offset);
                if (entry_disk == 0xffff) {
                    STRATA_CHECK(left >= 4, at_name, " zip64 extra field is too short");
                    entry_disk = u32(f);
                }
            }
            x += 4 + len;
        }
        STRATA_CHECK(entry_disk == 0, at_name, " lies on disk ", entry_disk,
                     "; strata reads single-file archives only");
        STRATA_CHECK(index_.emplace(e.name, entries_.size()).second, where, " has the entry '",
                     printable(e.name), "' twice");

        // The local header repeats the name; the data follows its own (different) extra field.
        STRATA_CHECK(fits(e.header_offset, kLocalSize, cd_offset), at_name, " local header offset ",
                     e.header_offset, " lies outside the entries' area");
        const unsigned char* local = data_ + e.header_offset;
        STRATA_CHECK(u32(local) == kLocalSig, at_name, " has no local header at offset ",
                     e.header_offset, " (bad signature)");
        const uint64_t local_name_len = u16(local + 26), local_extra_len = u16(local + 28);
        e.data_offset = e.header_offset + kLocalSize + local_name_len + local_extra_len;
        STRATA_CHECK(local_name_len == name_len && e.data_offset <= cd_offset &&
                         std::memcmp(local + kLocalSize, e.name.data(), name_len) == 0,
                     at_name, ": its local header names a different entry");
        STRATA_CHECK(fits(e.data_offset, e.compressed_size, cd_offset), at_name, " data [",
                     e.data_offset, ", +", e.compressed_size, ") runs past the entries' area (",
                     cd_offset, " bytes)");
        STRATA_CHECK(e.method != 0 || e.compressed_size == e.size, at_name, " is stored but its sizes differ (",
                     e.compressed_size, " vs ", e.size, ")");
        entries_.push_back(std::move(e));
        p += kCentralSize + name_len + extra_len + comment_len;
    }
    STRATA_CHECK(p == cd_end, where, " central directory has ", cd_end - p,
                 " bytes after its last entry");

    // 4. No two entries may share bytes (overlapping entries are a classic zip bomb).
    std::vector<const ZipEntry*> by_offset;
    for (const ZipEntry& e : entries_) by_offset.push_back(&e);
    std::sort(by_offset.begin(), by_offset.end(), [](const ZipEntry* a, const ZipEntry* b) {
        return a->header_offset < b->header_offset;
    });
    for (size_t i = 1; i < by_offset.size(); ++i) {
        const ZipEntry& a = *by_offset[i - 1];
        const ZipEntry& b = *by_offset[i];
        STRATA_CHECK(a.data_offset + a.compressed_size <= b.header_offset, where, " entries '",
                     printable(a.name), "' and '", printable(b.name), "' overlap");
    }
}

const ZipEntry* ZipArchive::find(const std::string& entry_name) const {
    const auto it = index_.find(entry_name);
    return it == index_.end() ? nullptr : &entries_[it->second];
}

const unsigned char* ZipArchive::read(const ZipEntry& entry, bool verify_crc) const {
    const std::string at = name_ + ": zip entry '" + printable(entry.name) + "'";
    STRATA_CHECK(!(entry.flags & 1), at, " is encrypted; strata reads unencrypted archives only");
    STRATA_CHECK(entry.method == 0, at, " is compressed (", method_name(entry.method), ", method ",
                 entry.method, "); torch.save writes stored (uncompressed) entries, which strata "
                 "maps without copying. Was the file re-zipped? Load it in Python and save it "
                 "again with torch.save");
    const unsigned char* bytes = data_ + entry.data_offset;
    if (verify_crc) {
        const uint32_t crc = crc32(bytes, static_cast<size_t>(entry.size));
        STRATA_CHECK(crc == entry.crc32, at, " fails its CRC-32 check (stored ", entry.crc32,
                     ", computed ", crc, "): the file is damaged");
    }
    return bytes;
}

// CRC-32 by "slicing by 8": eight 256-entry tables let the loop fold 8 bytes per step, about
// 8x faster than the byte-at-a-time loop (tables[0]), with the same result.
uint32_t crc32(const unsigned char* data, size_t size, uint32_t crc) {
    using Tables = std::array<std::array<uint32_t, 256>, 8>;
    static const Tables tables = [] {
        Tables t{};
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            t[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; ++i)
            for (size_t s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
        return t;
    }();
    crc = ~crc;
    while (size >= 8) {
        const uint32_t lo = crc ^ u32(data), hi = u32(data + 4);
        crc = tables[7][lo & 0xff] ^ tables[6][(lo >> 8) & 0xff] ^ tables[5][(lo >> 16) & 0xff] ^
              tables[4][lo >> 24] ^ tables[3][hi & 0xff] ^ tables[2][(hi >> 8) & 0xff] ^
              tables[1][(hi >> 16) & 0xff] ^ tables[0][hi >> 24];
        data += 8;
        size -= 8;
    }
    while (size--) crc = tables[0][(crc ^ *data++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

}  // namespace strata
