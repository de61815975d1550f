// A data-only unpickler: runs Python's pickle machine (protocols 0 to 5) far enough to rebuild
// plain data — None, bools, ints, floats, str, bytes, tuples, lists, dicts, sets — and hands
// everything else to a Hooks object. It never imports or calls anything by name: a global is
// only a name the hooks accept (or refuse), and "calling" one means the hooks build a value.
// io/pth.cpp uses it with a whitelist to read torch.save files.
//
// Hostile input cannot make it hang, recurse or balloon: values live in one flat arena
// (cycles and deep nesting are just indices), strings are views into the input, every count —
// values, container items, memo entries, stack depth — is bounded by the input's size, and the
// bytes all of it occupies by memory_budget() (16x the input + 64 MB).
//
// Dicts behave as Python's: assigning a key the dict already holds (SETITEM, SETITEMS, DICT)
// replaces its value in place, so the last assignment wins and the key keeps its first position.
// Keys are compared by value as Python compares them for None, bool, int (True == 1, 1.0 == 1),
// float, str, bytes, tuples of those, and globals (one name, one class); other keys (objects the
// hooks built, frozensets, NaN) by identity. List, dict and set keys, also inside a tuple key,
// are refused as unhashable.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace strata {
namespace pickle {

enum class Kind : uint8_t {
    None, Bool, Int, BigInt, Float, Str, Bytes,  // scalars
    Tuple, List, Dict, Set,                      // containers: `items` holds value ids
    Global,                                      // a name the hooks accepted: tag = their id
    Object,                                      // something the hooks built: tag, ref are theirs
};

const char* kind_name(Kind kind);  // "int", "dict", ... as Python would say

using Id = uint32_t;  // index of a Value in the Graph

struct Value {
    Kind kind = Kind::None;
    int32_t tag = 0;        // Global, Object: the hooks' code for what this is
    uint32_t ref = 0;       // Object: the hooks' index into their own tables
    int64_t i = 0;          // Bool (0/1), Int
    double f = 0;           // Float
    std::string_view s;     // Str (valid UTF-8), Bytes, BigInt (little-endian two's complement),
                            // Global (its module); always a view into the input
    std::string_view name;  // Global: its name ("OrderedDict" of module "collections")
    std::vector<Id> items;  // Tuple, List, Set: the elements; Dict: key, value, key, value, ...
};

// Every value the machine made, in creation order. Containers refer to values by id, so
// a list that contains itself is just a list holding its own id.
class Graph {
public:
    Id add(Value v) {
        values_.push_back(std::move(v));
        return static_cast<Id>(values_.size() - 1);
    }
    const Value& operator[](Id id) const { return values_[id]; }
    Value& operator[](Id id) { return values_[id]; }
    size_t size() const { return values_.size(); }
    // Bytes the values themselves occupy (container items are counted by the machine as they
    // grow). A deque: it grows by blocks, never by copying the whole arena into one twice as
    // large, so its memory follows the count of values and a reference to a value stays valid.
    size_t arena_bytes() const { return values_.size() * sizeof(Value) + 4096; }
    // Bytes the hooks keep for what they built (tensor and storage records): counted against
    // the same budget as the machine's own values.
    void charge(size_t bytes) { charged_ += bytes; }
    size_t charged() const { return charged_; }

private:
    std::deque<Value> values_;
    size_t charged_ = 0;
};

// The memory budget of one unpickling, in bytes: 16 times the input's size plus 64 MB, for the
// values, container items, stack, memo, dict key index and the hooks' records together. A
// state_dict pickle uses a few times its size; a pickle built to amplify (10 MB of EMPTY_LIST
// opcodes, 2 million calls on one shared 64-dimension argument tuple) is refused at the budget
// instead of reaching gigabytes.
size_t memory_budget(size_t input_size);

// What the machine asks of its user. Every method may throw strata::Error to refuse.
class Hooks {
public:
    virtual ~Hooks() = default;
    // GLOBAL, STACK_GLOBAL, INST: returns a tag for an allowed global, or throws naming it.
    virtual int32_t find_class(std::string_view module, std::string_view name) = 0;
    // REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ: "call" the global `callable` with the tuple `args`;
    // returns the id of the result (usually a new Object added to `graph`).
    virtual Id call(Graph& graph, Id callable, Id args) = 0;
    // BINPERSID, PERSID: the object a persistent id stands for (torch: a storage).
    virtual Id persistent_load(Graph& graph, Id pid) = 0;
    // BUILD: sets `state` on `object` (e.g. the _metadata of an OrderedDict).
    virtual void build(Graph& graph, Id object, Id state) = 0;
};

struct Unpickled {
    Graph graph;
    Id root;       // the value STOP returned
    size_t end;    // bytes consumed, STOP included (files may hold several pickles in a row)
};

// Runs the pickle in data[0, size). `where` starts every error ("model.pth: data.pkl").
Unpickled unpickle(const unsigned char* data, size_t size, Hooks& hooks, const std::string& where);

// A short, non-recursive description for messages: "int 3", "str 'conv1.weight'", "dict (12
// items)". Long strings are cut and non-printable bytes escaped.
std::string describe(const Graph& graph, Id id);
// `s` cut to 200 bytes with non-printable bytes escaped, for messages.
std::string printable(std::string_view s);

}  // namespace pickle
}  // namespace strata
