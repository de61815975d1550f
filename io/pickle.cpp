// The pickle machine (see pickle.h). A pickle is a program for a stack machine: each opcode
// byte pushes a value, pops some to build a container, or stores/fetches the top of the stack
// in the "memo" so later opcodes can refer to a value again. MARK opens a frame on the stack
// whose items a later TUPLE/LIST/DICT/APPENDS/SETITEMS consumes. STOP returns the top value.
// Opcodes and their layouts are Python's (Lib/pickletools.py documents every one).
//
// Why nothing here can be driven out of bounds: every opcode consumes at least one input byte
// and pushes at most one value, so the stack, the memo, the number of values and all container
// items together stay below a small multiple of the input size; lengths are checked against
// the bytes that remain before anything is read; nothing recurses.
#include "pickle.h"

#include <charconv>
#include <cstring>
#include <limits>

#include "../core/error.h"

namespace strata {
namespace pickle {

const char* kind_name(Kind kind) {
    switch (kind) {
        case Kind::None: return "None";
        case Kind::Bool: return "bool";
        case Kind::Int: return "int";
        case Kind::BigInt: return "int";
        case Kind::Float: return "float";
        case Kind::Str: return "str";
        case Kind::Bytes: return "bytes";
        case Kind::Tuple: return "tuple";
        case Kind::List: return "list";
        case Kind::Dict: return "dict";
        case Kind::Set: return "set";
        case Kind::Global: return "global";
        case Kind::Object: return "object";
    }
    return "?";
}

std::string printable(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size() && i < 200; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
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

std::string describe(const Graph& graph, Id id) {
    const Value& v = graph[id];
    switch (v.kind) {
        case Kind::None: return "None";
        case Kind::Bool: return v.i ? "True" : "False";
        case Kind::Int: return "int " + std::to_string(v.i);
        case Kind::BigInt: return "int of " + std::to_string(v.s.size()) + " bytes";
        case Kind::Float: return "float " + std::to_string(v.f);
        case Kind::Str: return "str '" + printable(v.s) + "'";
        case Kind::Bytes: return "bytes (" + std::to_string(v.s.size()) + ")";
        case Kind::Tuple:
        case Kind::List:
        case Kind::Set:
            return std::string(kind_name(v.kind)) + " of " + std::to_string(v.items.size()) +
                   " items";
        case Kind::Dict: return "dict of " + std::to_string(v.items.size() / 2) + " items";
        case Kind::Global: return "global " + printable(v.s) + "." + printable(v.name);
        case Kind::Object: return "object";
    }
    return "?";
}

size_t memory_budget(size_t input_size) {
    return 16 * input_size + (size_t(64) << 20);
}

namespace {

// Limits: data.pkl of ResNet-152 is about 100 KB; a gigabyte is far beyond any state_dict.
constexpr size_t kMaxPickleBytes = size_t(1) << 30;
constexpr size_t kMaxLine = 4096;  // a text-opcode line (GLOBAL's module, INT's digits)

// RFC 3629 UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool valid_utf8(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const unsigned char* end = p + s.size();
    while (p < end) {
        const unsigned char c = *p;
        if (c < 0x80) {
            ++p;
            continue;
        }
        int n;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0) n = 1, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0) n = 2, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0) n = 3, cp = c & 0x07;
        else return false;
        if (end - p <= n) return false;
        for (int k = 1; k <= n; ++k) {
            if ((p[k] & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (p[k] & 0x3f);
        }
        static const uint32_t min_for_length[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_for_length[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        p += n + 1;
    }
    return true;
}

class Machine {
public:
    Machine(const unsigned char* data, size_t size, Hooks& hooks, const std::string& where)
        : data_(data), size_(size), hooks_(hooks), where_(where),
          max_values_(2 * size + 64), budget_(memory_budget(size)) {}

    Unpickled run() {
        STRATA_CHECK(size_ <= kMaxPickleBytes, where_, ": the pickle is ", size_,
                     " bytes; strata reads pickles up to 1 GB");
        while (pos_ < size_) {
            op_pos_ = pos_;
            const unsigned char op = data_[pos_++];
            if (op == '.') {  // STOP
                const Id root = pop();
                return Unpickled{std::move(graph_), root, pos_};
            }
            step(op);
            if (graph_.size() > max_values_)
                fail("the pickle builds more values than its size allows (", graph_.size(), ")");
            const size_t used = memory_used();
            if (used > budget_)
                fail("the pickle's values take more than ", budget_, " bytes of memory, the limit for a ", size_,
                     "-byte pickle (16x its size + 64 MB); strata refuses such amplification");
        }
        pos_ = op_pos_ = size_;
        fail("truncated: the pickle ends without a STOP opcode");
    }

private:
    template <typename... Parts>
    [[noreturn]] void fail(const Parts&... parts) const {
        throw Error(where_ + " at byte " + std::to_string(op_pos_) + ": " +
                    detail::error_message(parts...));
    }

    // ---- reading the input -------------------------------------------------------------
    void need(uint64_t n) const {
        if (n > size_ - pos_)
            fail("truncated: opcode 0x", hex(data_[op_pos_]), " needs ", n, " more bytes but ",
                 size_ - pos_, " remain");
    }
    static std::string hex(unsigned char c) {
        static const char* digits = "0123456789abcdef";
        return {digits[c >> 4], digits[c & 15]};
    }
    uint64_t read_le(int n) {
        need(static_cast<uint64_t>(n));
        uint64_t v = 0;
        for (int i = n - 1; i >= 0; --i) v = (v << 8) | data_[pos_ + static_cast<size_t>(i)];
        pos_ += static_cast<size_t>(n);
        return v;
    }
    int32_t read_i32() { return static_cast<int32_t>(static_cast<uint32_t>(read_le(4))); }
    std::string_view read_bytes(uint64_t n) {
        need(n);
        std::string_view s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
        pos_ += static_cast<size_t>(n);
        return s;
    }
    // A text line up to '\n' (not included), for the protocol-0 opcodes and GLOBAL.
    std::string_view read_line() {
        const size_t limit = std::min(size_, pos_ + kMaxLine + 1);
        for (size_t i = pos_; i < limit; ++i) {
            if (data_[i] == '\n') {
                std::string_view s(reinterpret_cast<const char*>(data_ + pos_), i - pos_);
                pos_ = i + 1;
                return s;
            }
        }
        fail(limit == size_ ? "truncated: a text line has no end" : "a text line is longer than 4096 bytes");
    }
    int64_t parse_int(std::string_view s) const {
        int64_t v = 0;
        const char* b = s.data();
        const char* e = s.data() + s.size();
        if (b != e && *b == '+') ++b;
        const auto r = std::from_chars(b, e, v);
        if (b == e || r.ec != std::errc() || r.ptr != e)
            fail("'", printable(s), "' is not an integer that fits in 64 bits");
        return v;
    }

    // ---- the stack ---------------------------------------------------------------------
    size_t frame_start() const { return marks_.empty() ? 0 : marks_.back(); }
    void push(Id id) { stack_.push_back(id); }
    Id pop() {
        if (stack_.size() <= frame_start())
            fail("stack underflow: opcode 0x", hex(data_[op_pos_]), " needs a value");
        const Id id = stack_.back();
        stack_.pop_back();
        return id;
    }
    Id top() const {
        if (stack_.size() <= frame_start())
            fail("stack underflow: opcode 0x", hex(data_[op_pos_]), " needs a value");
        return stack_.back();
    }
    // The items pushed since the last MARK; closes that frame.
    std::vector<Id> pop_mark() {
        if (marks_.empty()) fail("opcode 0x", hex(data_[op_pos_]), " needs a MARK but there is none");
        const size_t start = marks_.back();
        marks_.pop_back();
        std::vector<Id> items(stack_.begin() + static_cast<std::ptrdiff_t>(start), stack_.end());
        stack_.resize(start);
        return items;
    }
    Id add(Kind kind) {
        Value v;
        v.kind = kind;
        return graph_.add(std::move(v));
    }
    Id add_int(int64_t i) {
        Value v;
        v.kind = Kind::Int;
        v.i = i;
        return graph_.add(std::move(v));
    }
    Id add_str(Kind kind, std::string_view s) {
        if (kind == Kind::Str && !valid_utf8(s)) fail("a string is not valid UTF-8: '", printable(s), "'");
        Value v;
        v.kind = kind;
        v.s = s;
        return graph_.add(std::move(v));
    }
    Id add_container(Kind kind, std::vector<Id> items) {
        Value v;
        v.kind = kind;
        items_grew(0, items.capacity());
        v.items = std::move(items);
        return graph_.add(std::move(v));
    }
    // Python refuses unhashable dict keys and set items; so do we.
    void check_hashable(Id id) const {
        const Kind k = graph_[id].kind;
        if (k == Kind::List || k == Kind::Dict || k == Kind::Set)
            fail("a ", kind_name(k), " cannot be a dict key or set item (unhashable)");
    }
    Value& expect(Id id, Kind kind, const char* what) {
        Value& v = graph_[id];
        if (v.kind != kind) fail(what, " expects a ", kind_name(kind), ", got ", describe(graph_, id));
        return v;
    }
    // dict[key] = value for each pair, as Python: a key already there keeps its position and
    // takes the new value (the last assignment wins).
    void set_items(Id dict, const std::vector<Id>& pairs) {
        if (pairs.size() % 2) fail("SETITEMS/DICT with an odd number of items (", pairs.size(), ")");
        for (size_t i = 0; i < pairs.size(); i += 2) check_hashable(pairs[i]);
        expect(dict, Kind::Dict, "SETITEM");
        for (size_t i = 0; i < pairs.size(); i += 2) {
            const uint32_t cls = key_class(pairs[i]);
            std::vector<Id>& items = graph_[dict].items;
            const uint64_t slot = (static_cast<uint64_t>(dict) << 32) | cls;
            const auto it = dict_slots_.find(slot);
            if (it != dict_slots_.end()) {
                items[it->second + 1] = pairs[i + 1];
                continue;
            }
            dict_slots_.emplace(slot, static_cast<uint32_t>(items.size()));
            const size_t before = items.capacity();
            items.push_back(pairs[i]);
            items.push_back(pairs[i + 1]);
            items_grew(before, items.capacity());
        }
    }
    Id global(std::string_view module, std::string_view name) {
        Value v;
        v.kind = Kind::Global;
        v.s = module;
        v.name = name;
        v.tag = hooks_.find_class(module, name);
        return graph_.add(std::move(v));
    }
    Id call(Id callable, Id args) {
        expect(callable, Kind::Global, "a call");
        expect(args, Kind::Tuple, "a call's arguments");
        return hooks_.call(graph_, callable, args);
    }
    Id memo_get(uint64_t index) const {
        const auto it = memo_.find(index);
        if (it == memo_.end()) fail("memo entry ", index, " is used before it is set");
        return it->second;
    }

    void step(unsigned char op);

    // ---- memory ------------------------------------------------------------------------------
    // What the machine holds, in bytes: the value arena, container items, stack, marks, memo,
    // the dict key index, and what the hooks charged for their records.
    size_t memory_used() const {
        constexpr size_t kNode = 48;  // an unordered_map node with its bucket, roughly
        return graph_.arena_bytes() + items_bytes_ + stack_.capacity() * sizeof(Id) +
               marks_.capacity() * sizeof(size_t) + memo_.size() * kNode +
               (key_class_.size() + dict_slots_.size() + classes_.size()) * kNode + class_bytes_ + graph_.charged();
    }
    // Container items changed size: count their capacity.
    void items_grew(size_t before, size_t after) {
        if (after > before) items_bytes_ += (after - before) * sizeof(Id);
    }

    // ---- dict keys as Python compares them ---------------------------------------------------
    uint32_t intern(std::string encoding) {
        const auto it = classes_.find(encoding);
        if (it != classes_.end()) return it->second;
        class_bytes_ += encoding.size();
        const uint32_t id = static_cast<uint32_t>(classes_.size());
        classes_.emplace(std::move(encoding), id);
        return id;
    }
    static void put_u64(std::string& out, uint64_t v) {
        for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
    }
    static std::string int_key(int64_t v) {
        std::string out = "i";
        put_u64(out, static_cast<uint64_t>(v));
        return out;
    }
    // The encoding of a hashable value whose tuple items (if any) have their classes already.
    std::string encode_key(Id id) const {
        const Value& v = graph_[id];
        std::string out;
        switch (v.kind) {
            case Kind::None: return "N";
            case Kind::Bool:
            case Kind::Int: return int_key(v.i);
            case Kind::Float:
                // 1.0 == 1 in Python: integral floats are ints; NaN equals nothing but itself.
                if (v.f != v.f) break;
                if (v.f == static_cast<double>(static_cast<int64_t>(v.f)) && v.f >= -9.2e18 && v.f <= 9.2e18)
                    return int_key(static_cast<int64_t>(v.f));
                out = "f";
                uint64_t bits;
                std::memcpy(&bits, &v.f, 8);
                put_u64(out, bits);
                return out;
            case Kind::BigInt: {
                // Little-endian two's complement; redundant sign bytes removed. It never fits 8
                // bytes here (LONG1/LONG4 of 8 bytes or fewer are Ints), unless padded.
                std::string_view b = v.s;
                while (b.size() > 1) {
                    const unsigned char top = static_cast<unsigned char>(b.back());
                    const unsigned char next = static_cast<unsigned char>(b[b.size() - 2]);
                    if ((top == 0 && !(next & 0x80)) || (top == 0xff && (next & 0x80))) b.remove_suffix(1);
                    else break;
                }
                if (b.size() <= 8) {
                    uint64_t u = 0;
                    for (size_t i = b.size(); i-- > 0;) u = (u << 8) | static_cast<unsigned char>(b[i]);
                    if (!b.empty() && b.size() < 8 && (static_cast<unsigned char>(b.back()) & 0x80))
                        u |= ~uint64_t(0) << (8 * b.size());
                    return int_key(static_cast<int64_t>(u));
                }
                return "I" + std::string(b);
            }
            case Kind::Str: return "s" + std::string(v.s);
            case Kind::Bytes: return "b" + std::string(v.s);
            case Kind::Global: return "g" + std::string(v.s) + '\n' + std::string(v.name);
            case Kind::Tuple:
                out = "t";
                for (Id item : v.items) {
                    const uint32_t c = key_class_.at(item);
                    out.append(reinterpret_cast<const char*>(&c), sizeof c);
                }
                return out;
            default:
                break;
        }
        out = "@";  // by identity: objects, frozensets, NaN
        put_u64(out, id);
        return out;
    }
    // The class of a dict key: equal classes, equal keys. Tuples are resolved without recursion.
    uint32_t key_class(Id root) {
        const auto found = key_class_.find(root);
        if (found != key_class_.end()) return found->second;
        std::vector<Id> todo{root};
        while (!todo.empty()) {
            const Id id = todo.back();
            if (key_class_.count(id)) {
                todo.pop_back();
                continue;
            }
            const Value& v = graph_[id];
            if (v.kind == Kind::List || v.kind == Kind::Dict || (v.kind == Kind::Set && id != root))
                fail("a ", kind_name(v.kind), " inside a dict key is unhashable");
            if (v.kind == Kind::Tuple) {
                bool ready = true;
                for (Id item : v.items)
                    if (!key_class_.count(item)) {
                        todo.push_back(item);
                        ready = false;
                    }
                if (!ready) continue;
            }
            key_class_.emplace(id, intern(encode_key(id)));
            todo.pop_back();
        }
        return key_class_.at(root);
    }

    const unsigned char* data_;
    size_t size_;
    Hooks& hooks_;
    const std::string& where_;
    size_t max_values_;
    size_t budget_;
    size_t items_bytes_ = 0;
    size_t pos_ = 0, op_pos_ = 0;
    Graph graph_;
    std::vector<Id> stack_;
    std::vector<size_t> marks_;  // stack sizes at each open MARK
    std::unordered_map<uint64_t, Id> memo_;
    std::unordered_map<Id, uint32_t> key_class_;          // dict key -> its class
    std::unordered_map<std::string, uint32_t> classes_;   // encoding -> class
    size_t class_bytes_ = 0;
    std::unordered_map<uint64_t, uint32_t> dict_slots_;   // (dict, key class) -> index in items
};

void Machine::step(unsigned char op) {
    switch (op) {
        // ---- framing and protocol -------------------------------------------------------
        case 0x80: {  // PROTO <u8>
            const uint64_t version = read_le(1);
            if (version > 5) fail("pickle protocol ", version, " is newer than 5, the latest strata reads");
            return;
        }
        case 0x95:  // FRAME <u64 length>: a hint for buffered readers; the length must fit
            need(read_le(8));
            return;

        // ---- scalars ----------------------------------------------------------------------
        case 'N': push(add(Kind::None)); return;
        case 0x88:    // NEWTRUE
        case 0x89: {  // NEWFALSE
            const Id id = add(Kind::Bool);
            graph_[id].i = op == 0x88;
            push(id);
            return;
        }
        case 'J': push(add_int(read_i32())); return;                        // BININT <i32>
        case 'K': push(add_int(static_cast<int64_t>(read_le(1)))); return;  // BININT1 <u8>
        case 'M': push(add_int(static_cast<int64_t>(read_le(2)))); return;  // BININT2 <u16>
        case 0x8a:    // LONG1 <u8 n> <n bytes, little-endian two's complement>
        case 0x8b: {  // LONG4 <i32 n> <n bytes>
            const int64_t n = op == 0x8a ? static_cast<int64_t>(read_le(1)) : read_i32();
            if (n < 0) fail("LONG4 with a negative length");
            const std::string_view bytes = read_bytes(static_cast<uint64_t>(n));
            if (n > 8) {
                push(add_str(Kind::BigInt, bytes));
                return;
            }
            uint64_t u = 0;
            for (int64_t i = n - 1; i >= 0; --i) u = (u << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
            if (n > 0 && n < 8 && (static_cast<unsigned char>(bytes[static_cast<size_t>(n - 1)]) & 0x80))
                u |= ~uint64_t(0) << (8 * n);  // sign-extend
            push(add_int(static_cast<int64_t>(u)));
            return;
        }
        case 'I': {  // INT <decimal line>; "00" and "01" are protocol 0's False and True
            const std::string_view line = read_line();
            if (line == "00" || line == "01") {
                const Id id = add(Kind::Bool);
                graph_[id].i = line == "01";
                push(id);
            } else {
                push(add_int(parse_int(line)));
            }
            return;
        }
        case 'L': {  // LONG <decimal line, maybe ending in 'L'>
            std::string_view line = read_line();
            if (!line.empty() && line.back() == 'L') line.remove_suffix(1);
            push(add_int(parse_int(line)));
            return;
        }
        case 'G': {  // BINFLOAT <8 bytes, big-endian IEEE double>
            need(8);
            uint64_t bits = 0;
            for (int i = 0; i < 8; ++i) bits = (bits << 8) | data_[pos_ + static_cast<size_t>(i)];
            pos_ += 8;
            const Id id = add(Kind::Float);
            std::memcpy(&graph_[id].f, &bits, 8);
            push(id);
            return;
        }
        case 'F': {  // FLOAT <repr line>
            const std::string_view line = read_line();
            double f = 0;
            const auto r = std::from_chars(line.data(), line.data() + line.size(), f);
            if (line.empty() || r.ec != std::errc() || r.ptr != line.data() + line.size())
                fail("'", printable(line), "' is not a float");
            const Id id = add(Kind::Float);
            graph_[id].f = f;
            push(id);
            return;
        }

        // ---- strings and bytes ------------------------------------------------------------
        case 'X': push(add_str(Kind::Str, read_bytes(read_le(4)))); return;   // BINUNICODE
        case 0x8c: push(add_str(Kind::Str, read_bytes(read_le(1)))); return;  // SHORT_BINUNICODE
        case 0x8d: push(add_str(Kind::Str, read_bytes(read_le(8)))); return;  // BINUNICODE8
        case 'T': {  // BINSTRING <i32 n>: Python 2's str; torch.load decodes it as UTF-8
            const int32_t n = read_i32();
            if (n < 0) fail("BINSTRING with a negative length");
            push(add_str(Kind::Str, read_bytes(static_cast<uint64_t>(n))));
            return;
        }
        case 'U': push(add_str(Kind::Str, read_bytes(read_le(1)))); return;   // SHORT_BINSTRING
        case 'B': push(add_str(Kind::Bytes, read_bytes(read_le(4)))); return;   // BINBYTES
        case 'C': push(add_str(Kind::Bytes, read_bytes(read_le(1)))); return;   // SHORT_BINBYTES
        case 0x8e:                                                              // BINBYTES8
        case 0x96: push(add_str(Kind::Bytes, read_bytes(read_le(8)))); return;  // BYTEARRAY8
        case 'S':
        case 'V':
            fail("protocol-0 text string opcode '", static_cast<char>(op),
                 "' is not supported (torch.save never writes protocol 0)");

        // ---- containers -------------------------------------------------------------------
        case ']': push(add(Kind::List)); return;   // EMPTY_LIST
        case '}': push(add(Kind::Dict)); return;   // EMPTY_DICT
        case ')': push(add(Kind::Tuple)); return;  // EMPTY_TUPLE
        case 0x8f: push(add(Kind::Set)); return;   // EMPTY_SET
        case '(': marks_.push_back(stack_.size()); return;  // MARK
        case 't': push(add_container(Kind::Tuple, pop_mark())); return;  // TUPLE
        case 'l': push(add_container(Kind::List, pop_mark())); return;   // LIST
        case 0x91: {  // FROZENSET
            std::vector<Id> items = pop_mark();
            for (Id i : items) check_hashable(i);
            push(add_container(Kind::Set, std::move(items)));
            return;
        }
        case 'd': {  // DICT
            const std::vector<Id> pairs = pop_mark();
            const Id d = add(Kind::Dict);
            set_items(d, pairs);
            push(d);
            return;
        }
        case 0x85:  // TUPLE1
        case 0x86:  // TUPLE2
        case 0x87: {  // TUPLE3
            std::vector<Id> items(op - 0x84);
            for (size_t i = items.size(); i-- > 0;) items[i] = pop();
            push(add_container(Kind::Tuple, std::move(items)));
            return;
        }
        case 'a': {  // APPEND: list.append(value)
            const Id value = pop();
            std::vector<Id>& items = expect(top(), Kind::List, "APPEND").items;
            const size_t before = items.capacity();
            items.push_back(value);
            items_grew(before, items.capacity());
            return;
        }
        case 'e': {  // APPENDS: list.extend(items since MARK)
            const std::vector<Id> items = pop_mark();
            Value& list = expect(top(), Kind::List, "APPENDS");
            const size_t before = list.items.capacity();
            list.items.insert(list.items.end(), items.begin(), items.end());
            items_grew(before, list.items.capacity());
            return;
        }
        case 0x90: {  // ADDITEMS: set.update(items since MARK)
            const std::vector<Id> items = pop_mark();
            for (Id i : items) check_hashable(i);
            Value& set = expect(top(), Kind::Set, "ADDITEMS");
            const size_t before = set.items.capacity();
            set.items.insert(set.items.end(), items.begin(), items.end());
            items_grew(before, set.items.capacity());
            return;
        }
        case 's': {  // SETITEM: dict[key] = value
            const Id value = pop();
            const Id key = pop();
            set_items(top(), {key, value});
            return;
        }
        case 'u': {  // SETITEMS: dict.update(pairs since MARK)
            const std::vector<Id> pairs = pop_mark();
            set_items(top(), pairs);
            return;
        }

        // ---- stack and memo ---------------------------------------------------------------
        case '0':  // POP: the top value, or an empty frame's MARK
            if (stack_.size() > frame_start()) pop();
            else pop_mark();
            return;
        case '1': pop_mark(); return;  // POP_MARK
        case '2': push(top()); return;  // DUP
        case 'g': push(memo_get(static_cast<uint64_t>(parse_int(read_line())))); return;  // GET
        case 'h': push(memo_get(read_le(1))); return;  // BINGET
        case 'j': push(memo_get(read_le(4))); return;  // LONG_BINGET
        case 'p': {  // PUT <decimal line>
            const int64_t index = parse_int(read_line());
            if (index < 0) fail("PUT with a negative memo index");
            memo_[static_cast<uint64_t>(index)] = top();
            return;
        }
        case 'q': {  // BINPUT <u8>
            const uint64_t index = read_le(1);
            memo_[index] = top();
            return;
        }
        case 'r': {  // LONG_BINPUT <u32>
            const uint64_t index = read_le(4);
            memo_[index] = top();
            return;
        }
        case 0x94: {  // MEMOIZE: memo[len(memo)] = top
            const uint64_t index = memo_.size();
            memo_[index] = top();
            return;
        }

        // ---- globals, calls and persistent ids: all through the hooks ------------------------
        case 'c': {  // GLOBAL <module line> <name line>
            const std::string_view module = read_line();
            const std::string_view name = read_line();
            push(global(module, name));
            return;
        }
        case 0x93: {  // STACK_GLOBAL: module and name from the stack
            const Id name = pop();
            const Id module = pop();
            push(global(expect(module, Kind::Str, "STACK_GLOBAL").s, expect(name, Kind::Str, "STACK_GLOBAL").s));
            return;
        }
        case 'R':     // REDUCE: callable(*args)
        case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
            const Id args = pop();
            const Id callable = pop();
            push(call(callable, args));
            return;
        }
        case 0x92: {  // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
            const Id kwargs = pop();
            const Id args = pop();
            const Id cls = pop();
            if (!expect(kwargs, Kind::Dict, "NEWOBJ_EX").items.empty())
                fail("NEWOBJ_EX with keyword arguments is not supported");
            push(call(cls, args));
            return;
        }
        case 'i': {  // INST <module line> <name line>: cls(*items since MARK)
            const std::string_view module = read_line();
            const std::string_view name = read_line();
            const Id cls = global(module, name);
            push(call(cls, add_container(Kind::Tuple, pop_mark())));
            return;
        }
        case 'o': {  // OBJ: items since MARK are cls, *args
            std::vector<Id> items = pop_mark();
            if (items.empty()) fail("OBJ without a class");
            const Id cls = items.front();
            items.erase(items.begin());
            push(call(cls, add_container(Kind::Tuple, std::move(items))));
            return;
        }
        case 'b': {  // BUILD: obj.__setstate__(state)
            const Id state = pop();
            hooks_.build(graph_, top(), state);
            return;
        }
        case 'Q': {  // BINPERSID
            const Id pid = pop();
            push(hooks_.persistent_load(graph_, pid));
            return;
        }
        case 'P': {  // PERSID <line>
            const Id pid = add_str(Kind::Str, read_line());
            push(hooks_.persistent_load(graph_, pid));
            return;
        }
        case 0x82:
        case 0x83:
        case 0x84:
            fail("EXT opcodes (copyreg's extension registry) are not supported");
        case 0x97:
        case 0x98:
            fail("out-of-band buffers (pickle protocol 5 NEXT_BUFFER) are not supported");
        default:
            fail("unknown opcode 0x", hex(op));
    }
}

}  // namespace

Unpickled unpickle(const unsigned char* data, size_t size, Hooks& hooks, const std::string& where) {
    return Machine(data, size, hooks, where).run();
}

}  // namespace pickle
}  // namespace strata
