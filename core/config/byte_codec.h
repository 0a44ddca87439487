// ByteWriter and ByteReader: the little binary codec of the replicated configuration and
// of the Raft storage records. Fixed-width little-endian integers and length-prefixed byte
// strings; nothing else, so every encoding is deterministic and easy to check by hand.
//
// ByteReader is for untrusted bytes (a file, a Raft entry from a peer): every read is bounds
// checked and reports failure by returning false, never by crashing; after one failed read
// the reader stays failed, so a decoder may check ok() once at the end.
//
//   ByteWriter w;
//   w.PutU8(1);
//   w.PutString("cb1");
//   std::string bytes = w.Take();
//
//   ByteReader r(bytes);
//   uint8_t version = 0;
//   std::string name;
//   if (!r.GetU8(&version) || !r.GetString(&name, kNameBytesMax) || !r.empty()) return error;
#ifndef STANZAD_CORE_CONFIG_BYTE_CODEC_H_
#define STANZAD_CORE_CONFIG_BYTE_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "core/config/inline_bytes.h"

namespace stanzad::config {

class ByteWriter {
 public:
  ByteWriter() = default;
  // Appends to `initial` (taken back with Take()).
  explicit ByteWriter(std::string initial) : out_(std::move(initial)) {}

  void PutU8(uint8_t value) { out_.push_back(static_cast<char>(value)); }
  void PutU32(uint32_t value) { PutFixed(value, 4); }
  void PutU64(uint64_t value) { PutFixed(value, 8); }
  // A u32 byte count, then the bytes. REQUIRES: bytes.size() < 2^32 (callers bound their
  // strings far below that).
  void PutString(std::string_view bytes) {
    PutU32(static_cast<uint32_t>(bytes.size()));
    out_.append(bytes);
  }
  void PutRaw(std::string_view bytes) { out_.append(bytes); }

  size_t size() const { return out_.size(); }
  const std::string& bytes() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  void PutFixed(uint64_t value, int width) {
    for (int i = 0; i < width; ++i) out_.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  }

  std::string out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::string_view input) : input_(input) {}

  bool GetU8(uint8_t* value) {
    uint64_t wide = 0;
    if (!GetFixed(1, &wide)) return false;
    *value = static_cast<uint8_t>(wide);
    return true;
  }
  bool GetU32(uint32_t* value) {
    uint64_t wide = 0;
    if (!GetFixed(4, &wide)) return false;
    *value = static_cast<uint32_t>(wide);
    return true;
  }
  bool GetU64(uint64_t* value) { return GetFixed(8, value); }
  // A string written by PutString, refused (false) when longer than `bytes_max`.
  bool GetString(std::string* value, size_t bytes_max) {
    std::string_view view;
    if (!GetStringView(&view, bytes_max)) return false;
    value->assign(view);
    return true;
  }
  template <size_t N>
  bool GetString(InlineBytes<N>* value, size_t bytes_max) {
    std::string_view view;
    if (!GetStringView(&view, bytes_max < N ? bytes_max : N)) return false;
    value->assign(view);
    return true;
  }
  // As GetString, as a view into the input.
  bool GetStringView(std::string_view* value, size_t bytes_max) {
    uint32_t size = 0;
    if (!GetU32(&size)) return false;
    if (size > bytes_max || size > input_.size()) return Fail();
    *value = input_.substr(0, size);
    input_.remove_prefix(size);
    return true;
  }
  // The next `size` bytes, as a view into the input.
  bool GetRaw(size_t size, std::string_view* value) {
    if (size > input_.size()) return Fail();
    *value = input_.substr(0, size);
    input_.remove_prefix(size);
    return true;
  }

  // A count of items that follow, each at least `item_bytes_min` bytes: refused when it is
  // above `count_max` or when the rest of the input is too short to hold that many, so a
  // decoder never reserves memory for items that are not there.
  bool GetCount(uint32_t* count, size_t count_max, size_t item_bytes_min) {
    if (!GetU32(count)) return false;
    if (*count > count_max) return Fail();
    if (item_bytes_min > 0 && *count > input_.size() / item_bytes_min) return Fail();
    return true;
  }

  bool ok() const { return ok_; }
  bool empty() const { return input_.empty(); }
  size_t remaining() const { return input_.size(); }

 private:
  bool Fail() {
    ok_ = false;
    input_ = {};
    return false;
  }
  bool GetFixed(int width, uint64_t* value) {
    if (!ok_ || input_.size() < static_cast<size_t>(width)) return Fail();
    uint64_t result = 0;
    for (int i = 0; i < width; ++i) {
      result |= static_cast<uint64_t>(static_cast<unsigned char>(input_[i])) << (8 * i);
    }
    input_.remove_prefix(width);
    *value = result;
    return true;
  }

  std::string_view input_;
  bool ok_ = true;
};

}  // namespace stanzad::config

#endif  // STANZAD_CORE_CONFIG_BYTE_CODEC_H_
