// OrderedDict: string keys in insertion order, like Python's dict. Used for state dicts,
// a module's children and the getter's output. Inserting an existing key is an error.
#pragma once
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "error.h"

namespace strata {

template <typename V>
class OrderedDict {
public:
    using Item = std::pair<std::string, V>;

    void insert(const std::string& key, V value) {
        STRATA_CHECK(!contains(key), "duplicate key '", key, "'");
        index_.emplace(key, items_.size());
        items_.emplace_back(key, std::move(value));
    }
    // Inserts or overwrites in place (keeps the original position).
    void set(const std::string& key, V value) {
        auto it = index_.find(key);
        if (it == index_.end()) insert(key, std::move(value));
        else items_[it->second].second = std::move(value);
    }
    bool contains(const std::string& key) const { return index_.count(key) != 0; }
    const V* find(const std::string& key) const {
        auto it = index_.find(key);
        return it == index_.end() ? nullptr : &items_[it->second].second;
    }
    V* find(const std::string& key) {
        auto it = index_.find(key);
        return it == index_.end() ? nullptr : &items_[it->second].second;
    }
    const V& at(const std::string& key) const {
        const V* v = find(key);
        STRATA_CHECK(v != nullptr, "no key '", key, "'");
        return *v;
    }
    std::vector<std::string> keys() const {
        std::vector<std::string> k;
        k.reserve(items_.size());
        for (const auto& item : items_) k.push_back(item.first);
        return k;
    }
    size_t size() const { return items_.size(); }
    bool empty() const { return items_.empty(); }
    const Item& operator[](size_t i) const { return items_[i]; }
    typename std::vector<Item>::const_iterator begin() const { return items_.begin(); }
    typename std::vector<Item>::const_iterator end() const { return items_.end(); }

private:
    std::vector<Item> items_;
    std::unordered_map<std::string, size_t> index_;
};

}  // namespace strata
