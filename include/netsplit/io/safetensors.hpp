// netsplit/io/safetensors.hpp — strict reader and atomic writer of the safetensors format
// (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N, N
// bytes of JSON header {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets"}},
// then the raw little-endian data buffer, offsets relative to its start, without holes.
// Reading rejects every malformed file with an io_error naming the file and the defect.
// Writing adds a CRC-32 of the file's content under __metadata__["netsplit.crc32"] that the
// reader verifies when present (files from other tools have none and still load).
// Only what netsplit stores is supported: dtypes F32, F64, I32, I64, U8. No dependencies.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "netsplit/core/errors.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#define NETSPLIT_IO_POSIX 1
#else
#define NETSPLIT_IO_POSIX 0
#endif

namespace netsplit::io {

/// Element types netsplit reads and writes, with their safetensors names.
enum class dtype { f32, f64, i32, i64, u8 };

inline constexpr std::size_t dtype_size(dtype t) {
  switch (t) {
    case dtype::f32: return 4;
    case dtype::f64: return 8;
    case dtype::i32: return 4;
    case dtype::i64: return 8;
    case dtype::u8: return 1;
  }
  return 0;
}

inline constexpr std::string_view dtype_name(dtype t) {
  switch (t) {
    case dtype::f32: return "F32";
    case dtype::f64: return "F64";
    case dtype::i32: return "I32";
    case dtype::i64: return "I64";
    case dtype::u8: return "U8";
  }
  return "?";
}

/// The dtype called `name` in a safetensors header ("F32", ...), or nothing.
inline std::optional<dtype> dtype_from_name(std::string_view name) {
  for (dtype t : {dtype::f32, dtype::f64, dtype::i32, dtype::i64, dtype::u8})
    if (dtype_name(t) == name) return t;
  return std::nullopt;
}

/// The C++ element type stored as each dtype.
template <class T>
struct dtype_of {};
template <>
struct dtype_of<float> : std::integral_constant<dtype, dtype::f32> {};
template <>
struct dtype_of<double> : std::integral_constant<dtype, dtype::f64> {};
template <>
struct dtype_of<std::int32_t> : std::integral_constant<dtype, dtype::i32> {};
template <>
struct dtype_of<std::int64_t> : std::integral_constant<dtype, dtype::i64> {};
template <>
struct dtype_of<std::uint8_t> : std::integral_constant<dtype, dtype::u8> {};

/// An element type with a safetensors dtype (float, double, int32, int64, uint8).
template <class T>
concept Storable = requires { dtype_of<T>::value; } && sizeof(T) == dtype_size(dtype_of<T>::value);

/// Metadata key of the content checksum the writer adds and the reader verifies.
inline constexpr std::string_view checksum_key = "netsplit.crc32";
/// Largest header the reader accepts (the reference implementation's limit is the same).
inline constexpr std::uint64_t max_header_bytes = 100'000'000;

namespace detail {

[[noreturn]] inline void format_error(const std::string& source, const std::string& what) {
  netsplit::detail::raise<io_error>("netsplit: safetensors file '", source, "': ", what);
}

/// Product of the extents, or nothing on a negative extent or int64 overflow. Rank 0 is a
/// scalar with one element, as in safetensors.
inline std::optional<std::int64_t> checked_numel(std::span<const std::int64_t> shape) {
  std::int64_t n = 1;
  bool zero = false;
  for (auto d : shape) {
    if (d < 0) return std::nullopt;
    if (d == 0) zero = true;
  }
  if (zero) return 0;
  for (auto d : shape) {
    if (n > std::numeric_limits<std::int64_t>::max() / d) return std::nullopt;
    n *= d;
  }
  return n;
}

inline std::string shape_string(std::span<const std::int64_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

/// Copies `count` elements of `size` bytes, reversing each element's bytes on a big-endian
/// host (safetensors data is little-endian).
inline void copy_little_endian(const std::byte* from, std::byte* to, std::size_t count, std::size_t size) {
  if constexpr (std::endian::native == std::endian::little) {
    if (count) std::memcpy(to, from, count * size);
  } else {
    for (std::size_t i = 0; i < count; ++i)
      for (std::size_t b = 0; b < size; ++b) to[i * size + b] = from[i * size + size - 1 - b];
  }
}

// ---- CRC-32 (IEEE 802.3 / zlib polynomial, reflected), slicing by 8 ---------------------------
inline constexpr std::array<std::array<std::uint32_t, 256>, 8> crc32_tables = [] {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[0][i] = c;
  }
  for (std::size_t s = 1; s < 8; ++s)
    for (std::size_t i = 0; i < 256; ++i) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFFu];
  return t;
}();

/// Running CRC-32; crc32(data) equals Python's zlib.crc32(data).
class crc32 {
 public:
  void update(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint32_t c = ~state_;
    const auto& t = crc32_tables;
    for (; n >= 8; n -= 8, p += 8) {
      const std::uint32_t lo = c ^ (std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 |
                                    std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24);
      c = t[7][lo & 0xFFu] ^ t[6][(lo >> 8) & 0xFFu] ^ t[5][(lo >> 16) & 0xFFu] ^ t[4][lo >> 24] ^
          t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
    }
    for (; n > 0; --n, ++p) c = t[0][(c ^ *p) & 0xFFu] ^ (c >> 8);
    state_ = ~c;
  }
  void update_u64(std::uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
    update(b, 8);
  }
  void update_string(std::string_view s) {
    update_u64(s.size());
    update(s.data(), s.size());
  }
  std::uint32_t value() const { return state_; }

 private:
  std::uint32_t state_ = 0;
};

inline std::string hex8(std::uint32_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s(8, '0');
  for (int i = 7; i >= 0; --i, v >>= 4) s[static_cast<std::size_t>(i)] = digits[v & 0xFu];
  return s;
}

// ---- JSON: only what a safetensors header holds -------------------------------------------------

/// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code points > U+10FFFF).
inline bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) n = 1, cp = c & 0x1Fu;
    else if ((c & 0xF0) == 0xE0) n = 2, cp = c & 0x0Fu;
    else if (c >= 0xF0 && c <= 0xF4) n = 3, cp = c & 0x07u;
    else return false;
    if (s.size() - i <= n) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    if (n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return false;
    if (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) return false;
    i += n + 1;
  }
  return true;
}

inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char digits[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += digits[c >> 4];
          out += digits[c & 0xF];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

/// A parsed JSON value restricted to objects, arrays, strings and integers. Objects keep
/// their members in file order; duplicate keys are rejected while parsing.
struct json_value {
  enum class kind { object, array, string, integer };
  kind type = kind::integer;
  std::string text;                // string value
  std::int64_t integer = 0;        // integer value
  std::vector<std::string> keys;   // object member names, parallel to items
  std::vector<json_value> items;   // object member values or array elements
  std::size_t offset = 0;          // byte offset in the header, for messages
};

inline const char* kind_name(json_value::kind k) {
  switch (k) {
    case json_value::kind::object: return "an object";
    case json_value::kind::array: return "an array";
    case json_value::kind::string: return "a string";
    case json_value::kind::integer: return "an integer";
  }
  return "?";
}

class json_parser {
 public:
  json_parser(std::string_view text, const std::string& source) : text_(text), source_(source) {}

  /// The whole text as one object, surrounded by nothing but JSON whitespace.
  json_value parse_document() {
    skip_ws();
    if (peek() != '{') fail("the header must be a JSON object starting with '{'");
    json_value v = parse_value(0);
    skip_ws();
    if (pos_ != text_.size()) fail("unexpected content after the header's JSON object");
    return v;
  }

 private:
  static constexpr int max_depth = 8;  // safetensors needs 3: header, entry, shape

  [[noreturn]] void fail(const std::string& what) const {
    format_error(source_, "header is not valid safetensors JSON at header byte " +
                              std::to_string(pos_) + ": " + what);
  }
  int peek() const { return pos_ < text_.size() ? static_cast<unsigned char>(text_[pos_]) : -1; }
  void skip_ws() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }
  void expect(char c) {
    if (peek() != static_cast<unsigned char>(c)) {
      if (peek() < 0) fail(std::string("expected '") + c + "' but the header ended");
      fail(std::string("expected '") + c + "'");
    }
    ++pos_;
  }

  json_value parse_value(int depth) {
    if (depth > max_depth) fail("nesting deeper than " + std::to_string(max_depth));
    skip_ws();
    const int c = peek();
    if (c == '{') return parse_object(depth);
    if (c == '[') return parse_array(depth);
    if (c == '"') {
      json_value v;
      v.type = json_value::kind::string;
      v.offset = pos_;
      v.text = parse_string();
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_integer();
    if (c < 0) fail("expected a value but the header ended");
    fail("expected an object, array, string or integer (safetensors headers hold nothing else)");
  }

  json_value parse_object(int depth) {
    json_value v;
    v.type = json_value::kind::object;
    v.offset = pos_;
    expect('{');
    std::set<std::string, std::less<>> seen;
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return v;
    }
    for (;;) {
      skip_ws();
      if (peek() != '"') fail("expected a quoted member name");
      const std::size_t key_offset = pos_;
      std::string key = parse_string();
      if (!seen.insert(key).second) {
        pos_ = key_offset;
        fail(depth == 0 ? "duplicate tensor name '" + key + "'" : "duplicate key '" + key + "'");
      }
      skip_ws();
      expect(':');
      v.items.push_back(parse_value(depth + 1));
      v.keys.push_back(std::move(key));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect('}');
      return v;
    }
  }

  json_value parse_array(int depth) {
    json_value v;
    v.type = json_value::kind::array;
    v.offset = pos_;
    expect('[');
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      return v;
    }
    for (;;) {
      v.items.push_back(parse_value(depth + 1));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(']');
      return v;
    }
  }

  json_value parse_integer() {
    json_value v;
    v.type = json_value::kind::integer;
    v.offset = pos_;
    const bool negative = peek() == '-';
    if (negative) ++pos_;
    if (peek() < '0' || peek() > '9') fail("expected a digit");
    if (peek() == '0' && pos_ + 1 < text_.size() && text_[pos_ + 1] >= '0' && text_[pos_ + 1] <= '9')
      fail("numbers must not have leading zeros");
    std::uint64_t magnitude = 0;
    constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    while (peek() >= '0' && peek() <= '9') {
      const auto digit = static_cast<std::uint64_t>(peek() - '0');
      if (magnitude > (limit - digit) / 10) fail("integer does not fit in 64 bits");
      magnitude = magnitude * 10 + digit;
      ++pos_;
    }
    if (peek() == '.' || peek() == 'e' || peek() == 'E')
      fail("only integers are allowed, not fractions or exponents");
    v.integer = negative ? -static_cast<std::int64_t>(magnitude) : static_cast<std::int64_t>(magnitude);
    return v;
  }

  unsigned parse_hex4() {
    unsigned u = 0;
    for (int i = 0; i < 4; ++i) {
      const int c = peek();
      unsigned d;
      if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') d = static_cast<unsigned>(c - 'A' + 10);
      else fail("\\u escape needs four hexadecimal digits");
      u = (u << 4) | d;
      ++pos_;
    }
    return u;
  }

  static void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string parse_string() {
    const std::size_t start = pos_;
    expect('"');
    std::string out;
    for (;;) {
      const int c = peek();
      if (c < 0) fail("unterminated string");
      if (c == '"') {
        ++pos_;
        break;
      }
      if (c < 0x20) fail("raw control character in a string (must be escaped)");
      if (c != '\\') {
        out += static_cast<char>(c);
        ++pos_;
        continue;
      }
      ++pos_;
      const int e = peek();
      ++pos_;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = parse_hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail("unpaired low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (peek() != '\\' || pos_ + 1 >= text_.size() || text_[pos_ + 1] != 'u')
              fail("unpaired high surrogate in \\u escape");
            pos_ += 2;
            const std::uint32_t low = parse_hex4();
            if (low < 0xDC00 || low > 0xDFFF) fail("high surrogate not followed by a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          --pos_;
          fail(e < 0 ? "unterminated escape" : "unknown escape sequence");
      }
    }
    if (!valid_utf8(out)) {
      pos_ = start;
      fail("string is not valid UTF-8");
    }
    return out;
  }

  std::string_view text_;
  const std::string& source_;
  std::size_t pos_ = 0;
};

}  // namespace detail

/// One tensor: dtype, shape (outermost first; [] is a scalar) and its little-endian bytes.
struct tensor_record {
  dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> bytes;

  /// Number of elements (1 for shape []); contract_violation on a negative extent or overflow.
  std::int64_t numel() const {
    const auto n = detail::checked_numel(shape);
    NETSPLIT_EXPECT(n.has_value(), "tensor_record shape ", detail::shape_string(shape),
                    " has a negative extent or more than 2^63 elements");
    return *n;
  }

  /// The elements as T in host byte order. io_error when T is not this record's dtype or the
  /// byte count does not match the shape.
  template <Storable T>
  std::vector<T> as() const {
    constexpr dtype want = dtype_of<T>::value;
    if (type != want)
      netsplit::detail::raise<io_error>("netsplit: tensor of dtype ", dtype_name(type),
                                        " cannot be read as ", dtype_name(want));
    const auto n = static_cast<std::size_t>(numel());
    if (bytes.size() != n * sizeof(T))
      netsplit::detail::raise<io_error>("netsplit: tensor of dtype ", dtype_name(type), " and shape ",
                                        detail::shape_string(shape), " needs ", n * sizeof(T),
                                        " bytes, holds ", bytes.size());
    std::vector<T> out(n);
    detail::copy_little_endian(bytes.data(), reinterpret_cast<std::byte*>(out.data()), n, sizeof(T));
    return out;
  }

  /// A record holding `values` (host byte order) with `shape`; contract_violation when the
  /// element count does not match the shape.
  template <Storable T>
  static tensor_record from(std::vector<std::int64_t> shape, std::span<const T> values) {
    tensor_record r;
    r.type = dtype_of<T>::value;
    r.shape = std::move(shape);
    NETSPLIT_EXPECT(static_cast<std::size_t>(r.numel()) == values.size(), "tensor_record::from got ",
                    values.size(), " values for shape ", detail::shape_string(r.shape));
    r.bytes.resize(values.size() * sizeof(T));
    detail::copy_little_endian(reinterpret_cast<const std::byte*>(values.data()), r.bytes.data(),
                               values.size(), sizeof(T));
    return r;
  }
  template <Storable T>
  static tensor_record from(std::vector<std::int64_t> shape, const std::vector<T>& values) {
    return from<T>(std::move(shape), std::span<const T>(values));
  }

  /// Bitwise equality (NaN payloads and signed zeros included).
  bool operator==(const tensor_record&) const = default;
};

/// The content of one safetensors file. Tensors are keyed by name (sorted); `source` names
/// the file it was read from, for messages, and is not written.
struct safetensors_file {
  std::map<std::string, std::string> metadata;
  std::map<std::string, tensor_record> tensors;
  std::string source;

  /// The tensor called `name`; io_error naming it and the file when there is none.
  const tensor_record& at(const std::string& name) const {
    const auto it = tensors.find(name);
    if (it == tensors.end())
      netsplit::detail::raise<io_error>("netsplit: safetensors file '", source.empty() ? "<memory>" : source,
                                        "' has no tensor named '", name, "' (it holds ",
                                        tensors.size(), " tensors)");
    return it->second;
  }
  /// The elements of tensor `name` as T; io_error naming the tensor on a dtype mismatch.
  template <Storable T>
  std::vector<T> values(const std::string& name) const {
    const auto& r = at(name);
    if (r.type != dtype_of<T>::value)
      netsplit::detail::raise<io_error>("netsplit: tensor '", name, "' of safetensors file '",
                                        source.empty() ? "<memory>" : source, "' has dtype ",
                                        dtype_name(r.type), ", expected ", dtype_name(dtype_of<T>::value));
    return r.as<T>();
  }
};

/// Reader options. require_checksum: reject files without the netsplit.crc32 entry
/// (use it for files netsplit itself wrote, such as checkpoints).
struct read_options {
  bool require_checksum = false;
};

namespace detail {

/// The checksum the writer stores: CRC-32 over a canonical encoding of the content that does
/// not depend on layout — metadata entries (sorted by key, the checksum entry excluded) and
/// tensors (sorted by name) as length-prefixed fields, little-endian u64/i64:
///   u64 m; m × (str key, str value); u64 t; t × (str name, str dtype, u64 rank,
///   rank × i64 extent, u64 nbytes, bytes)    where str = u64 length + UTF-8 bytes.
/// So any change to a name, dtype, shape, metadata value or data byte is detected, while a
/// tool that re-lays out the same content (another order, other padding) keeps it valid.
inline std::uint32_t content_checksum(const std::map<std::string, std::string>& metadata,
                                      const std::map<std::string, tensor_record>& tensors) {
  crc32 c;
  std::uint64_t m = 0;
  for (const auto& kv : metadata) m += kv.first != checksum_key;
  c.update_u64(m);
  for (const auto& [k, v] : metadata) {
    if (k == checksum_key) continue;
    c.update_string(k);
    c.update_string(v);
  }
  c.update_u64(tensors.size());
  for (const auto& [name, r] : tensors) {
    c.update_string(name);
    c.update_string(dtype_name(r.type));
    c.update_u64(r.shape.size());
    for (auto d : r.shape) c.update_u64(static_cast<std::uint64_t>(d));
    c.update_u64(r.bytes.size());
    c.update(r.bytes.data(), r.bytes.size());
  }
  return c.value();
}

}  // namespace detail

/// The file's bytes. Metadata is written as given plus "netsplit.crc32" (replacing any entry
/// of that name). Tensors are laid out by decreasing element size, then by name, so every
/// tensor is aligned to its element size when the file is memory-mapped (the reference
/// implementation orders by dtype for the same reason); the header is padded with spaces to
/// a multiple of 8 bytes. contract_violation (before anything is written) when a name is
/// "__metadata__" or not UTF-8, a metadata string is not UTF-8, or a record's byte count
/// does not match dtype × shape.
inline std::vector<std::byte> serialize(const safetensors_file& file) {
  for (const auto& [k, v] : file.metadata)
    NETSPLIT_EXPECT(detail::valid_utf8(k) && detail::valid_utf8(v),
                    "safetensors metadata must be UTF-8 text, key '", k, "' or its value is not");
  std::vector<const std::pair<const std::string, tensor_record>*> order;
  order.reserve(file.tensors.size());
  for (const auto& entry : file.tensors) {
    const auto& [name, r] = entry;
    NETSPLIT_EXPECT(name != "__metadata__", "a tensor may not be called __metadata__");
    NETSPLIT_EXPECT(detail::valid_utf8(name), "safetensors tensor names must be UTF-8, '", name, "' is not");
    const auto n = detail::checked_numel(r.shape);
    NETSPLIT_EXPECT(n.has_value(), "tensor '", name, "' has an invalid shape ", detail::shape_string(r.shape));
    NETSPLIT_EXPECT(static_cast<std::uint64_t>(*n) <= std::numeric_limits<std::uint64_t>::max() / dtype_size(r.type) &&
                        r.bytes.size() == static_cast<std::size_t>(*n) * dtype_size(r.type),
                    "tensor '", name, "' of dtype ", dtype_name(r.type), " and shape ",
                    detail::shape_string(r.shape), " holds ", r.bytes.size(), " bytes");
    order.push_back(&entry);
  }
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return dtype_size(a->second.type) > dtype_size(b->second.type);
  });

  std::string header = "{\"__metadata__\":{";
  auto metadata = file.metadata;
  metadata[std::string(checksum_key)] = detail::hex8(detail::content_checksum(file.metadata, file.tensors));
  bool first = true;
  for (const auto& [k, v] : metadata) {
    if (!first) header += ',';
    first = false;
    detail::append_json_string(header, k);
    header += ':';
    detail::append_json_string(header, v);
  }
  header += '}';
  std::uint64_t offset = 0;
  for (const auto* entry : order) {
    const auto& [name, r] = *entry;
    header += ',';
    detail::append_json_string(header, name);
    header += ":{\"dtype\":\"";
    header += dtype_name(r.type);
    header += "\",\"shape\":[";
    for (std::size_t i = 0; i < r.shape.size(); ++i) {
      if (i) header += ',';
      header += std::to_string(r.shape[i]);
    }
    header += "],\"data_offsets\":[" + std::to_string(offset) + ",";
    offset += r.bytes.size();
    header += std::to_string(offset) + "]}";
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');
  NETSPLIT_EXPECT(header.size() <= max_header_bytes, "safetensors header of ", header.size(),
                  " bytes exceeds the ", max_header_bytes, "-byte limit readers accept");

  std::vector<std::byte> out;
  out.reserve(8 + header.size() + offset);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>((std::uint64_t{header.size()} >> (8 * i)) & 0xFFu));
  for (char c : header) out.push_back(static_cast<std::byte>(c));
  for (const auto* entry : order) out.insert(out.end(), entry->second.bytes.begin(), entry->second.bytes.end());
  return out;
}

/// Parses and validates a whole file's bytes; `source` names it in error messages. Every
/// defect is an io_error: short file, header length past the end or over 100 MB, malformed or
/// non-object JSON, duplicate names, unknown fields, unsupported dtype, negative extent,
/// offsets that disagree with dtype × shape, overlap, run past the buffer or leave holes or
/// trailing bytes, non-string metadata, and a netsplit.crc32 that does not match (the entry
/// is verified and removed from the returned metadata).
inline safetensors_file parse(std::span<const std::byte> bytes, const std::string& source,
                              read_options options = {}) {
  using detail::format_error;
  if (bytes.size() < 8)
    format_error(source, "file is " + std::to_string(bytes.size()) +
                             " bytes, shorter than the 8-byte header length");
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= std::uint64_t(std::to_integer<unsigned>(bytes[static_cast<std::size_t>(i)])) << (8 * i);
  if (n > max_header_bytes)
    format_error(source, "header length " + std::to_string(n) + " exceeds the " +
                             std::to_string(max_header_bytes) + "-byte limit (corrupt or not a safetensors file)");
  if (n > bytes.size() - 8)
    format_error(source, "header length " + std::to_string(n) + " runs past the end of the file (" +
                             std::to_string(bytes.size()) + " bytes)");
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, static_cast<std::size_t>(n));
  const detail::json_value root = detail::json_parser(text, source).parse_document();
  const std::span<const std::byte> buffer = bytes.subspan(8 + static_cast<std::size_t>(n));
  const auto buffer_size = static_cast<std::uint64_t>(buffer.size());

  safetensors_file file;
  file.source = source;
  struct extent {
    std::uint64_t begin, end;
    const std::string* name;
  };
  std::vector<extent> extents;
  for (std::size_t i = 0; i < root.keys.size(); ++i) {
    const std::string& name = root.keys[i];
    const detail::json_value& v = root.items[i];
    if (name == "__metadata__") {
      if (v.type != detail::json_value::kind::object)
        format_error(source, std::string("__metadata__ must be an object of strings, got ") + detail::kind_name(v.type));
      for (std::size_t k = 0; k < v.keys.size(); ++k) {
        if (v.items[k].type != detail::json_value::kind::string)
          format_error(source, "metadata value of key '" + v.keys[k] + "' is " +
                                   detail::kind_name(v.items[k].type) + ", must be a string");
        file.metadata.emplace(v.keys[k], v.items[k].text);
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (v.type != detail::json_value::kind::object)
      format_error(source, where + " must be described by an object, got " + detail::kind_name(v.type));
    const detail::json_value *dt = nullptr, *sh = nullptr, *off = nullptr;
    for (std::size_t k = 0; k < v.keys.size(); ++k) {
      if (v.keys[k] == "dtype") dt = &v.items[k];
      else if (v.keys[k] == "shape") sh = &v.items[k];
      else if (v.keys[k] == "data_offsets") off = &v.items[k];
      else format_error(source, where + " has an unknown field '" + v.keys[k] + "'");
    }
    if (!dt || !sh || !off)
      format_error(source, where + " lacks the field '" +
                               std::string(!dt ? "dtype" : !sh ? "shape" : "data_offsets") + "'");
    if (dt->type != detail::json_value::kind::string)
      format_error(source, where + ": dtype must be a string");
    const auto type = dtype_from_name(dt->text);
    if (!type)
      format_error(source, where + " has unsupported dtype '" + dt->text +
                               "' (netsplit reads F32, F64, I32, I64, U8)");
    if (sh->type != detail::json_value::kind::array)
      format_error(source, where + ": shape must be an array of integers");
    tensor_record r;
    r.type = *type;
    for (const auto& d : sh->items) {
      if (d.type != detail::json_value::kind::integer)
        format_error(source, where + ": shape must be an array of integers");
      if (d.integer < 0)
        format_error(source, where + " has a negative extent " + std::to_string(d.integer) + " in its shape");
      r.shape.push_back(d.integer);
    }
    if (off->type != detail::json_value::kind::array || off->items.size() != 2 ||
        off->items[0].type != detail::json_value::kind::integer ||
        off->items[1].type != detail::json_value::kind::integer)
      format_error(source, where + ": data_offsets must be an array of two integers");
    const std::int64_t b = off->items[0].integer, e = off->items[1].integer;
    const std::string offsets = "data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "]";
    if (b < 0 || e < b) format_error(source, where + " has invalid " + offsets);
    const auto numel = detail::checked_numel(r.shape);
    const auto size = dtype_size(r.type);
    if (!numel || static_cast<std::uint64_t>(*numel) > std::numeric_limits<std::uint64_t>::max() / size)
      format_error(source, where + " has shape " + detail::shape_string(r.shape) + " with too many elements");
    const auto need = static_cast<std::uint64_t>(*numel) * size;
    if (static_cast<std::uint64_t>(e - b) != need)
      format_error(source, where + " has " + offsets + " spanning " + std::to_string(e - b) +
                               " bytes, but dtype " + std::string(dtype_name(r.type)) + " x shape " +
                               detail::shape_string(r.shape) + " needs " + std::to_string(need));
    if (static_cast<std::uint64_t>(e) > buffer_size)
      format_error(source, where + " has " + offsets + " past the end of the data buffer (" +
                               std::to_string(buffer_size) + " bytes; file truncated?)");
    r.bytes.assign(buffer.begin() + b, buffer.begin() + e);
    const auto [it, inserted] = file.tensors.emplace(name, std::move(r));
    if (!inserted) format_error(source, "duplicate tensor name '" + name + "'");  // parser rejects first
    extents.push_back({static_cast<std::uint64_t>(b), static_cast<std::uint64_t>(e), &it->first});
  }

  // The tensors must tile the buffer exactly: no overlap, no hole, nothing after the last.
  std::sort(extents.begin(), extents.end(), [](const extent& a, const extent& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t covered = 0;
  const std::string* previous = nullptr;
  for (const auto& x : extents) {
    if (x.begin < covered)
      format_error(source, "tensor '" + *x.name + "' overlaps tensor '" + *previous +
                               "' in the data buffer (bytes " + std::to_string(x.begin) + " to " +
                               std::to_string(covered) + ")");
    if (x.begin > covered)
      format_error(source, "data buffer has a hole: bytes " + std::to_string(covered) + " to " +
                               std::to_string(x.begin) + " belong to no tensor");
    covered = x.end;
    previous = x.name;
  }
  if (covered != buffer_size)
    format_error(source, "data buffer has " + std::to_string(buffer_size - covered) +
                             " trailing bytes after the last tensor (ends at " + std::to_string(covered) +
                             ", buffer is " + std::to_string(buffer_size) + " bytes)");

  const auto stored = file.metadata.find(std::string(checksum_key));
  if (stored != file.metadata.end()) {
    const std::string& s = stored->second;
    const bool hex = s.size() == 8 && std::all_of(s.begin(), s.end(), [](char c) {
                       return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                     });
    if (!hex)
      format_error(source, std::string(checksum_key) + " is '" + s + "', expected 8 lowercase hexadecimal digits");
    const std::string actual = detail::hex8(detail::content_checksum(file.metadata, file.tensors));
    if (actual != s)
      format_error(source, "checksum mismatch: " + std::string(checksum_key) + " says " + s +
                               " but the content gives " + actual + " (the file is corrupt)");
    file.metadata.erase(stored);
  } else if (options.require_checksum) {
    format_error(source, "has no " + std::string(checksum_key) + " checksum, which this reader requires");
  }
  return file;
}

namespace detail {
[[noreturn]] inline void os_error(const std::string& what, int err) {
  netsplit::detail::raise<io_error>("netsplit: ", what, ": ", std::generic_category().message(err));
}
}  // namespace detail

/// Writes `bytes` to `path` so that a crash or failure at any point leaves either the old
/// file or the new one: write "<path>.tmp.<pid>" in the same directory, flush and fsync it,
/// rename it over `path`, fsync the directory. On failure throws io_error naming the path
/// and the system's reason, removes the temporary file and leaves an existing file intact.
/// Two threads of one process must not write the same path at once.
inline void write_bytes_atomic(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  const std::string target = path.string();
  if (target.empty()) netsplit::detail::raise<io_error>("netsplit: cannot write a file with an empty path");
#if NETSPLIT_IO_POSIX
  const std::string tmp = target + ".tmp." + std::to_string(static_cast<long long>(::getpid()));
  const std::string what = "cannot write '" + target + "'";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) detail::os_error(what + " (creating temporary file '" + tmp + "')", errno);
  auto fail = [&](const std::string& step) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    detail::os_error(what + " (" + step + ")", err);
  };
  const std::byte* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ::ssize_t w = ::write(fd, p, std::min<std::size_t>(left, std::size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("writing temporary file '" + tmp + "'");
    }
    p += w;
    left -= static_cast<std::size_t>(w);
  }
  if (::fsync(fd) != 0) fail("flushing temporary file '" + tmp + "' to disk");
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) fail("closing temporary file '" + tmp + "'");
  if (::rename(tmp.c_str(), target.c_str()) != 0) fail("renaming '" + tmp + "' over it");
  // Make the rename itself durable. Some file systems cannot fsync a directory (EINVAL).
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) detail::os_error("wrote '" + target + "' but cannot open its directory to sync it", errno);
  if (::fsync(dfd) != 0 && errno != EINVAL) {
    const int err = errno;
    ::close(dfd);
    detail::os_error("wrote '" + target + "' but syncing its directory failed", err);
  }
  ::close(dfd);
#else
  // Portable fallback without fsync: stdio write, then replace.
  const std::string tmp = target + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) detail::os_error("cannot write '" + target + "' (creating '" + tmp + "')", errno);
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() && std::fflush(f) == 0;
  const int err = errno;
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    detail::os_error("cannot write '" + target + "' (writing '" + tmp + "')", ok ? errno : err);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    netsplit::detail::raise<io_error>("netsplit: cannot write '", target, "' (renaming): ", ec.message());
  }
#endif
}

/// Serializes `file` (see serialize) and writes it atomically (see write_bytes_atomic).
inline void write_file_atomic(const std::filesystem::path& path, const safetensors_file& file) {
  const std::vector<std::byte> bytes = serialize(file);
  write_bytes_atomic(path, bytes);
}

/// All bytes of the file at `path`; io_error naming the path and the reason on failure.
inline std::vector<std::byte> read_bytes(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::FILE* f = std::fopen(name.c_str(), "rb");
  if (!f) detail::os_error("cannot open '" + name + "'", errno);
  std::vector<std::byte> out;
  std::byte chunk[1 << 16];
  for (;;) {
    const std::size_t got = std::fread(chunk, 1, sizeof chunk, f);
    out.insert(out.end(), chunk, chunk + got);
    if (got < sizeof chunk) break;
  }
  if (std::ferror(f)) {
    const int err = errno;
    std::fclose(f);
    detail::os_error("cannot read '" + name + "'", err);
  }
  std::fclose(f);
  return out;
}

/// Reads and validates the safetensors file at `path` (see parse).
inline safetensors_file read_file(const std::filesystem::path& path, read_options options = {}) {
  const std::vector<std::byte> bytes = read_bytes(path);
  return parse(bytes, path.string(), options);
}

}  // namespace netsplit::io

#undef NETSPLIT_IO_POSIX
