// netsplit::io safetensors: bit-exact round trips, the byte layout, every validation rule,
// truncation and corruption at every byte, and atomic writes that fail cleanly.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include "netsplit/io/safetensors.hpp"

using namespace netsplit;
namespace fs = std::filesystem;
using io::dtype;
using io::safetensors_file;
using io::tensor_record;

namespace {

std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> out(s.size());
  if (!s.empty()) std::memcpy(out.data(), s.data(), s.size());
  return out;
}

/// A file from raw parts: 8-byte little-endian length of `header`, `header`, `data`.
std::vector<std::byte> raw_file(std::string_view header, const std::vector<std::byte>& data = {}) {
  std::vector<std::byte> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>((header.size() >> (8 * i)) & 0xFF));
  const auto h = bytes_of(header);
  out.insert(out.end(), h.begin(), h.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<std::byte> zeros(std::size_t n) { return std::vector<std::byte>(n, std::byte{0}); }

/// parse() must throw io_error whose message names the source and contains `phrase`.
void expect_rejected(const std::vector<std::byte>& file, const std::string& phrase,
                     io::read_options options = {}) {
  try {
    (void)io::parse(file, "case.safetensors", options);
    FAIL("accepted a bad file; expected an error containing '", phrase, "'");
  } catch (const io_error& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("case.safetensors") != std::string::npos);
    CHECK(msg.find(phrase) != std::string::npos);
  }
}

template <class U, class T>
std::vector<U> bits_of(const std::vector<T>& v) {
  std::vector<U> out;
  for (auto x : v) out.push_back(std::bit_cast<U>(x));
  return out;
}

bool same_content(const safetensors_file& a, const safetensors_file& b) {
  return a.metadata == b.metadata && a.tensors == b.tensors;
}

safetensors_file sample_file() {
  safetensors_file f;
  f.metadata["model"] = "resnet20";
  f.tensors["conv1.weight"] = tensor_record::from<float>({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  f.tensors["labels"] = tensor_record::from<std::int32_t>({3}, std::vector<std::int32_t>{7, -1, 99});
  f.tensors["loss"] = tensor_record::from<double>({1}, std::vector<double>{2.5});
  f.tensors["mask"] = tensor_record::from<std::uint8_t>({5}, std::vector<std::uint8_t>{1, 0, 255, 3, 4});
  return f;
}

struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() / ("netsplit_st_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  static int& counter() {
    static int c = 0;
    return c;
  }
  /// Entries whose name marks a temporary file of write_bytes_atomic.
  int temp_files() const {
    int n = 0;
    for (const auto& e : fs::recursive_directory_iterator(path))
      n += e.path().filename().string().find(".tmp.") != std::string::npos;
    return n;
  }
};

std::string read_all_text(const fs::path& p) {
  const auto b = io::read_bytes(p);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

void expect_write_fails(const fs::path& target, const safetensors_file& f, const std::string& reason) {
  try {
    io::write_file_atomic(target, f);
    FAIL("write to ", target.string(), " succeeded");
  } catch (const io_error& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find(target.string()) != std::string::npos);
    CHECK(msg.find(reason) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("crc32 matches the standard check value (zlib.crc32)") {
  io::detail::crc32 c;
  c.update("123456789", 9);
  CHECK(c.value() == 0xCBF43926u);
  // Slicing-by-8 and byte-wise paths agree for every length and split.
  std::string s;
  for (int i = 0; i < 100; ++i) s += static_cast<char>(i * 37 + 11);
  io::detail::crc32 whole;
  whole.update(s.data(), s.size());
  for (std::size_t cut = 0; cut <= s.size(); cut += 7) {
    io::detail::crc32 parts;
    parts.update(s.data(), cut);
    parts.update(s.data() + cut, s.size() - cut);
    CHECK(parts.value() == whole.value());
  }
}

TEST_CASE("every dtype round-trips bit-exactly, special floats included") {
  const std::vector<std::uint32_t> f32_bits = {
      0x00000000u, 0x80000000u,  // +0, -0
      0x00000001u, 0x807FFFFFu,  // smallest and largest negative denormal
      0x7F800000u, 0xFF800000u,  // +-inf
      0x7FC00000u, 0x7FC12345u,  // quiet NaN, quiet NaN with payload
      0x7F800001u, 0xFFBFFFFFu,  // signalling NaN payloads
      0x7F7FFFFFu, 0x3F800000u, 0xC0490FDBu};
  const std::vector<std::uint64_t> f64_bits = {
      0x0000000000000000ull, 0x8000000000000000ull, 0x0000000000000001ull, 0x800FFFFFFFFFFFFFull,
      0x7FF0000000000000ull, 0xFFF0000000000000ull, 0x7FF8000000000000ull, 0x7FF8DEADBEEF0001ull,
      0x7FF0000000000001ull, 0xFFF7FFFFFFFFFFFFull, 0x7FEFFFFFFFFFFFFFull, 0x400921FB54442D18ull};
  std::vector<float> f32;
  for (auto b : f32_bits) f32.push_back(std::bit_cast<float>(b));
  std::vector<double> f64;
  for (auto b : f64_bits) f64.push_back(std::bit_cast<double>(b));
  const std::vector<std::int32_t> i32 = {0, 1, -1, std::numeric_limits<std::int32_t>::min(),
                                         std::numeric_limits<std::int32_t>::max()};
  const std::vector<std::int64_t> i64 = {0, -1, std::numeric_limits<std::int64_t>::min(),
                                         std::numeric_limits<std::int64_t>::max(), 1ll << 40};
  std::vector<std::uint8_t> u8(256);
  for (int i = 0; i < 256; ++i) u8[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i);

  safetensors_file f;
  f.metadata["note"] = "quote \" backslash \\ newline \n tab \t ctrl \x01 unicode \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
  f.metadata[""] = "";
  f.tensors["f32"] = tensor_record::from<float>({13}, f32);
  f.tensors["f64"] = tensor_record::from<double>({3, 4}, f64);
  f.tensors["i32"] = tensor_record::from<std::int32_t>({5, 1}, i32);
  f.tensors["i64"] = tensor_record::from<std::int64_t>({5}, i64);
  f.tensors["u8"] = tensor_record::from<std::uint8_t>({16, 16}, u8);
  f.tensors["scalar"] = tensor_record::from<float>({}, std::vector<float>{-0.0f});
  f.tensors["empty"] = tensor_record::from<double>({0, 3}, std::vector<double>{});
  f.tensors["weird \"name\"\n\xE2\x82\xAC"] = tensor_record::from<std::uint8_t>({1}, std::vector<std::uint8_t>{42});

  const auto bytes = io::serialize(f);
  const auto g = io::parse(bytes, "mem", {.require_checksum = true});
  CHECK(g.metadata == f.metadata);  // the checksum entry is verified and removed
  CHECK(g.tensors == f.tensors);    // bitwise
  CHECK(bits_of<std::uint32_t>(g.values<float>("f32")) == f32_bits);
  CHECK(bits_of<std::uint64_t>(g.values<double>("f64")) == f64_bits);
  CHECK(g.values<std::int32_t>("i32") == i32);
  CHECK(g.values<std::int64_t>("i64") == i64);
  CHECK(g.values<std::uint8_t>("u8") == u8);
  CHECK(g.at("scalar").numel() == 1);
  CHECK(std::signbit(g.values<float>("scalar")[0]));
  CHECK(g.at("empty").shape == std::vector<std::int64_t>{0, 3});
  CHECK(g.values<double>("empty").empty());
  CHECK(io::serialize(g) == bytes);  // deterministic
}

TEST_CASE("the byte layout of a one-tensor file, checked by hand") {
  safetensors_file f;
  f.tensors["w"] = tensor_record::from<float>({2}, std::vector<float>{1.0f, -2.0f});
  const auto bytes = io::serialize(f);

  // Content checksum: no metadata, one tensor, length-prefixed fields (see content_checksum).
  io::detail::crc32 c;
  c.update_u64(0);
  c.update_u64(1);
  c.update_string("w");
  c.update_string("F32");
  c.update_u64(1);
  c.update_u64(2);
  c.update_u64(8);
  const unsigned char data[8] = {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0};
  c.update(data, 8);
  std::string header = "{\"__metadata__\":{\"netsplit.crc32\":\"" + io::detail::hex8(c.value()) +
                       "\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  header.append((8 - header.size() % 8) % 8, ' ');
  REQUIRE(header.size() % 8 == 0);

  std::vector<std::byte> expected;
  for (int i = 0; i < 8; ++i) expected.push_back(static_cast<std::byte>((header.size() >> (8 * i)) & 0xFF));
  for (char ch : header) expected.push_back(static_cast<std::byte>(ch));
  for (auto b : data) expected.push_back(static_cast<std::byte>(b));
  CHECK(bytes == expected);
}

TEST_CASE("tensors are laid out by element size so each is aligned; header is a multiple of 8") {
  safetensors_file f;
  f.tensors["a_u8"] = tensor_record::from<std::uint8_t>({3}, std::vector<std::uint8_t>{1, 2, 3});
  f.tensors["b_f32"] = tensor_record::from<float>({1}, std::vector<float>{1});
  f.tensors["c_f64"] = tensor_record::from<double>({1}, std::vector<double>{1});
  f.tensors["d_i64"] = tensor_record::from<std::int64_t>({1}, std::vector<std::int64_t>{1});
  const auto bytes = io::serialize(f);
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= std::uint64_t(std::to_integer<unsigned>(bytes[static_cast<std::size_t>(i)])) << (8 * i);
  CHECK(n % 8 == 0);
  const std::string header(reinterpret_cast<const char*>(bytes.data()) + 8, n);
  CHECK(header.find("\"c_f64\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}") != std::string::npos);
  CHECK(header.find("\"d_i64\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}") != std::string::npos);
  CHECK(header.find("\"b_f32\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]}") != std::string::npos);
  CHECK(header.find("\"a_u8\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[20,23]}") != std::string::npos);
}

TEST_CASE("files written by other tools (no checksum, any order, whitespace, escapes) load") {
  const auto f32_two = [] {
    std::vector<std::byte> d(8);
    const float v[2] = {0.5f, 3.0f};
    std::memcpy(d.data(), v, 8);
    return d;
  }();
  // The reference writer's form: tensors first in the buffer need not be first by name.
  std::vector<std::byte> data = f32_two;
  data.push_back(std::byte{7});
  const auto file = raw_file(
      " {\n\t\"z\" : {\"dtype\":\"F32\", \"shape\":[2], \"data_offsets\":[0, 8]},\r\n"
      "  \"__metadata__\": {\"format\": \"pt\", \"k\\u00e9y\": \"\\ud83d\\ude00 \\/\"},\n"
      "  \"a\": {\"data_offsets\":[8,9], \"shape\":[], \"dtype\":\"U8\"}}    ",
      data);
  const auto g = io::parse(file, "other.safetensors");
  CHECK(g.metadata.at("format") == "pt");
  CHECK(g.metadata.at("k\xC3\xA9y") == "\xF0\x9F\x98\x80 /");
  CHECK(g.values<float>("z") == std::vector<float>{0.5f, 3.0f});
  CHECK(g.values<std::uint8_t>("a") == std::vector<std::uint8_t>{7});
  CHECK(g.source == "other.safetensors");
  // An empty file: no tensors, no metadata.
  CHECK(io::parse(raw_file("{}"), "empty").tensors.empty());
  // Zero-sized tensors may sit anywhere, including at the end.
  const auto z = io::parse(raw_file(R"({"e":{"dtype":"F64","shape":[0],"data_offsets":[0,0]},)"
                                    R"("u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                    R"("f":{"dtype":"I32","shape":[2,0],"data_offsets":[1,1]}})",
                                    {std::byte{9}}),
                           "zero");
  CHECK(z.tensors.size() == 3);
}

TEST_CASE("every validation rule rejects with an io_error naming the file and the defect") {
  const std::string ok_entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

  SUBCASE("short file and bad header length") {
    expect_rejected({}, "shorter than the 8-byte header length");
    expect_rejected(zeros(7), "shorter than the 8-byte header length");
    auto f = raw_file("{}");
    f[0] = std::byte{3};  // claims 3 bytes, file has 2 after the length
    expect_rejected(f, "runs past the end of the file");
    auto huge = raw_file("{}");
    huge[5] = std::byte{1};  // 2^40 + 2
    expect_rejected(huge, "exceeds the 100000000-byte limit");
    auto just_over = raw_file("{}");
    const std::uint64_t n = io::max_header_bytes + 1;
    for (int i = 0; i < 8; ++i) just_over[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xFF);
    expect_rejected(just_over, "exceeds the 100000000-byte limit");
  }
  SUBCASE("header is not JSON or not an object") {
    expect_rejected(raw_file(""), "must be a JSON object");
    expect_rejected(raw_file("[]"), "must be a JSON object");
    expect_rejected(raw_file("\"t\""), "must be a JSON object");
    expect_rejected(raw_file("5"), "must be a JSON object");
    expect_rejected(raw_file("{"), "expected a quoted member name");
    expect_rejected(raw_file("{\"a\":}"), "expected an object, array, string or integer");
    expect_rejected(raw_file("{'a':1}"), "expected a quoted member name");
    expect_rejected(raw_file("{\"a\" 1}"), "expected ':'");
    expect_rejected(raw_file(R"({"__metadata__":{},})"), "expected a quoted member name");
    expect_rejected(raw_file(R"({"__metadata__":{"a":"b",}})"), "expected a quoted member name");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[2,],"data_offsets":[0,8]}})"), "expected an object");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[2 2],"data_offsets":[0,8]}})"), "expected ']'");
    expect_rejected(raw_file("{} x"), "unexpected content after");
    expect_rejected(raw_file("{}{}"), "unexpected content after");
    expect_rejected(raw_file(std::string("{}\0", 3)), "unexpected content after");
    expect_rejected(raw_file(R"({"__metadata__":{"a":null}})"), "expected an object, array, string or integer");
    expect_rejected(raw_file(R"({"__metadata__":{"a":true}})"), "expected an object, array, string or integer");
    expect_rejected(raw_file("{\"__metadata__\":{\"a\":\"x\ny\"}}"), "raw control character");
    expect_rejected(raw_file(R"({"__metadata__":{"a":"\q"}})"), "unknown escape");
    expect_rejected(raw_file(R"({"__metadata__":{"a":"\u12g4"}})"), "four hexadecimal digits");
    expect_rejected(raw_file(R"({"__metadata__":{"a":"\ud800"}})"), "unpaired high surrogate");
    expect_rejected(raw_file(R"({"__metadata__":{"a":"\udc00"}})"), "unpaired low surrogate");
    expect_rejected(raw_file(R"({"__metadata__":{"a":"\ud800\u0041"}})"), "not followed by a low surrogate");
    expect_rejected(raw_file("{\"__metadata__\":{\"a\":\"\xC3\"}}"), "not valid UTF-8");
    expect_rejected(raw_file("{\"__metadata__\":{\"a\":\"\xC0\xAF\"}}"), "not valid UTF-8");        // overlong
    expect_rejected(raw_file("{\"__metadata__\":{\"a\":\"\xED\xA0\x80\"}}"), "not valid UTF-8");    // surrogate
    expect_rejected(raw_file("{\"__metadata__\":{\"a\":\"\xF4\x90\x80\x80\"}}"), "not valid UTF-8");  // > U+10FFFF
    expect_rejected(raw_file(R"({"__metadata__":{"a":"x)"), "unterminated string");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})"), "only integers");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[2e0],"data_offsets":[0,8]}})"), "only integers");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}})"), "leading zeros");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[-],"data_offsets":[0,8]}})"), "expected a digit");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}})"),
                    "does not fit in 64 bits");
    expect_rejected(raw_file(R"({"t":{"x":[[[[[[[[[[1]]]]]]]]]]}})"), "nesting deeper");
  }
  SUBCASE("schema: metadata, fields, dtype, shape") {
    expect_rejected(raw_file(R"({"__metadata__":[]})"), "__metadata__ must be an object of strings");
    expect_rejected(raw_file(R"({"__metadata__":{"a":1}})"), "metadata value of key 'a' is an integer, must be a string");
    expect_rejected(raw_file(R"({"__metadata__":{"a":{}}})"), "metadata value of key 'a' is an object");
    expect_rejected(raw_file(R"({"__metadata__":{"a":"1"},"__metadata__":{}})"), "duplicate tensor name '__metadata__'");
    expect_rejected(raw_file(R"({"__metadata__":{"a":"1","a":"2"}})"), "duplicate key 'a'");
    expect_rejected(raw_file("{" + ok_entry + "," + ok_entry + "}", zeros(16)), "duplicate tensor name 't'");
    expect_rejected(raw_file(R"({"t":[1]})"), "tensor 't' must be described by an object");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", zeros(8)),
                    "tensor 't' has an unknown field 'x'");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", zeros(8)),
                    "duplicate key 'dtype'");
    expect_rejected(raw_file(R"({"t":{"shape":[2],"data_offsets":[0,8]}})", zeros(8)), "lacks the field 'dtype'");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", zeros(8)), "lacks the field 'shape'");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[2]}})", zeros(8)), "lacks the field 'data_offsets'");
    expect_rejected(raw_file(R"({"t":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", zeros(4)),
                    "unsupported dtype 'BF16'");
    expect_rejected(raw_file(R"({"t":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", zeros(8)),
                    "unsupported dtype 'f32'");
    expect_rejected(raw_file(R"({"t":{"dtype":3,"shape":[2],"data_offsets":[0,8]}})", zeros(8)), "dtype must be a string");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,0]}})"),
                    "negative extent -1");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", zeros(8)),
                    "shape must be an array of integers");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", zeros(8)),
                    "shape must be an array of integers");
    expect_rejected(raw_file(R"({"t":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", zeros(8)),
                    "too many elements");
  }
  SUBCASE("data offsets and buffer coverage") {
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", zeros(4)),
                    "spanning 4 bytes, but dtype F32 x shape [2] needs 8");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", zeros(8)),
                    "data_offsets must be an array of two integers");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8,16]}})", zeros(8)),
                    "data_offsets must be an array of two integers");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", zeros(8)),
                    "invalid data_offsets [8, 0]");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", zeros(8)),
                    "invalid data_offsets [-8, 0]");
    expect_rejected(raw_file("{" + ok_entry + "}", zeros(7)), "past the end of the data buffer (7 bytes");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", zeros(8)),
                    "past the end of the data buffer");
    expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                             zeros(12)),
                    "tensor 'b' overlaps tensor 'a'");
    expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                             zeros(8)),
                    "overlaps");
    expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                             zeros(8)),
                    "overlaps");
    expect_rejected(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                             zeros(12)),
                    "hole: bytes 4 to 8 belong to no tensor");
    expect_rejected(raw_file(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", zeros(8)),
                    "hole: bytes 0 to 4");
    expect_rejected(raw_file("{" + ok_entry + "}", zeros(9)), "1 trailing bytes");
    expect_rejected(raw_file("{}", zeros(1)), "1 trailing bytes");
  }
  SUBCASE("checksum") {
    auto bytes = io::serialize(sample_file());
    bytes.back() ^= std::byte{0x01};
    expect_rejected(bytes, "checksum mismatch");
    expect_rejected(raw_file(R"({"__metadata__":{"netsplit.crc32":"0000000G"},)" + ok_entry + "}", zeros(8)),
                    "expected 8 lowercase hexadecimal digits");
    expect_rejected(raw_file(R"({"__metadata__":{"netsplit.crc32":"1234"},)" + ok_entry + "}", zeros(8)),
                    "expected 8 lowercase hexadecimal digits");
    expect_rejected(raw_file("{" + ok_entry + "}", zeros(8)), "has no netsplit.crc32 checksum",
                    {.require_checksum = true});
    CHECK_NOTHROW((void)io::parse(raw_file("{" + ok_entry + "}", zeros(8)), "x"));
  }
}

TEST_CASE("truncation at every byte offset is rejected, never a crash") {
  const auto bytes = io::serialize(sample_file());
  for (std::size_t len = 0; len < bytes.size(); ++len) {
    CAPTURE(len);
    CHECK_THROWS_AS((void)io::parse(std::span(bytes).first(len), "cut"), io_error);
  }
  CHECK_NOTHROW((void)io::parse(bytes, "whole"));
}

TEST_CASE("single-byte corruption anywhere is detected (or is harmless whitespace)") {
  const safetensors_file f = sample_file();
  const auto bytes = io::serialize(f);
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= std::uint64_t(std::to_integer<unsigned>(bytes[static_cast<std::size_t>(i)])) << (8 * i);
  const std::size_t data_start = 8 + n;
  int rejected = 0, harmless = 0;
  for (std::size_t pos = 0; pos < bytes.size(); ++pos) {
    for (unsigned flip : {0x01u, 0x02u, 0x10u, 0x20u, 0x80u, 0xFFu}) {
      auto bad = bytes;
      bad[pos] ^= static_cast<std::byte>(flip);
      CAPTURE(pos);
      CAPTURE(flip);
      try {
        const auto g = io::parse(bad, "corrupt", {.require_checksum = true});
        // Accepted only when the content is exactly the original (e.g. a space became a tab).
        CHECK(pos < data_start);
        CHECK(same_content(g, f));
        ++harmless;
      } catch (const io_error& e) {
        if (pos >= data_start) CHECK(std::string(e.what()).find("checksum mismatch") != std::string::npos);
        ++rejected;
      }
    }
  }
  MESSAGE("corruptions rejected: ", rejected, ", harmless: ", harmless);
  CHECK(rejected > 0);
}

TEST_CASE("record helpers check dtype and size; serialize checks its preconditions") {
  const auto f = io::parse(io::serialize(sample_file()), "s.safetensors");
  CHECK_THROWS_AS((void)f.at("conv1.weight").as<double>(), io_error);
  try {
    (void)f.at("missing.tensor");
    FAIL("no throw");
  } catch (const io_error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("missing.tensor") != std::string::npos);
    CHECK(msg.find("s.safetensors") != std::string::npos);
  }
  try {
    (void)f.values<float>("labels");
    FAIL("no throw");
  } catch (const io_error& e) {
    CHECK(std::string(e.what()).find("'labels'") != std::string::npos);
    CHECK(std::string(e.what()).find("has dtype I32, expected F32") != std::string::npos);
  }
  CHECK_THROWS_AS(tensor_record::from<float>({2, 2}, std::vector<float>(3)), contract_violation);

  safetensors_file bad;
  bad.tensors["__metadata__"] = tensor_record::from<float>({1}, std::vector<float>{1});
  CHECK_THROWS_AS((void)io::serialize(bad), contract_violation);
  bad.tensors.clear();
  bad.tensors["x"] = tensor_record::from<float>({1}, std::vector<float>{1});
  bad.tensors["x"].bytes.pop_back();
  CHECK_THROWS_AS((void)io::serialize(bad), contract_violation);
  bad.tensors.clear();
  bad.tensors["\xFF"] = tensor_record::from<float>({1}, std::vector<float>{1});
  CHECK_THROWS_AS((void)io::serialize(bad), contract_violation);
  bad.tensors.clear();
  bad.metadata["k"] = "\xC3";
  CHECK_THROWS_AS((void)io::serialize(bad), contract_violation);
  // A checksum entry given by the caller is replaced, not trusted.
  safetensors_file stale = sample_file();
  stale.metadata["netsplit.crc32"] = "00000000";
  CHECK(same_content(io::parse(io::serialize(stale), "x"), sample_file()));
}

TEST_CASE("write_file_atomic writes, replaces and leaves no temporary files") {
  temp_dir dir;
  const auto target = dir.path / "model.safetensors";
  io::write_file_atomic(target, sample_file());
  CHECK(same_content(io::read_file(target, {.require_checksum = true}), sample_file()));
  safetensors_file second;
  second.tensors["only"] = tensor_record::from<std::int64_t>({1}, std::vector<std::int64_t>{5});
  io::write_file_atomic(target, second);
  CHECK(same_content(io::read_file(target), second));
  CHECK(dir.temp_files() == 0);
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator{}) == 1);
  // A relative path in the current directory also works (its directory is ".").
  const auto cwd = fs::current_path();
  fs::current_path(dir.path);
  io::write_file_atomic("relative.safetensors", second);
  fs::current_path(cwd);
  CHECK(same_content(io::read_file(dir.path / "relative.safetensors"), second));
}

TEST_CASE("write_file_atomic failures throw io_error naming the path and keep the old file") {
  temp_dir dir;
  const auto good = dir.path / "good.safetensors";
  io::write_file_atomic(good, sample_file());
  const std::string before = read_all_text(good);
  safetensors_file other;
  other.tensors["x"] = tensor_record::from<float>({1}, std::vector<float>{1});

  SUBCASE("directory does not exist") {
    expect_write_fails(dir.path / "no_such_dir" / "f.safetensors", other, "No such file or directory");
  }
  SUBCASE("parent is a regular file (fails even for root)") {
    expect_write_fails(good / "f.safetensors", other, "Not a directory");
  }
  SUBCASE("a directory where nothing may be created") {
    expect_write_fails("/proc/netsplit_test.safetensors", other, "cannot write");
  }
  SUBCASE("target is a directory: the rename fails after the data was written") {
    const auto d = dir.path / "is_a_dir";
    fs::create_directory(d);
    fs::create_directory(d / "inside");
    expect_write_fails(d, other, "renaming");
    CHECK(fs::is_directory(d / "inside"));
  }
  SUBCASE("temporary file name taken by a directory") {
    const auto tmp = fs::path(good.string() + ".tmp." + std::to_string(::getpid()));
    fs::create_directory(tmp);
    expect_write_fails(good, other, "creating temporary file");
    fs::remove(tmp);
  }
  SUBCASE("the disk fills up mid-write (RLIMIT_FSIZE makes write fail with EFBIG)") {
    safetensors_file big;
    big.tensors["big"] = tensor_record::from<float>({1 << 16}, std::vector<float>(1 << 16, 1.0f));
    rlimit old{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit small = old;
    small.rlim_cur = 4096;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    bool threw = false;
    std::string msg;
    try {
      io::write_file_atomic(good, big);
    } catch (const io_error& e) {
      threw = true;
      msg = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);
    INFO(msg);
    CHECK(threw);
    CHECK(msg.find(good.string()) != std::string::npos);
    CHECK(msg.find("File too large") != std::string::npos);
  }
  CHECK(read_all_text(good) == before);
  CHECK(same_content(io::read_file(good), sample_file()));
  CHECK(dir.temp_files() == 0);
}

TEST_CASE("read_file reports missing and unreadable paths") {
  temp_dir dir;
  try {
    (void)io::read_file(dir.path / "absent.safetensors");
    FAIL("no throw");
  } catch (const io_error& e) {
    CHECK(std::string(e.what()).find("absent.safetensors") != std::string::npos);
    CHECK(std::string(e.what()).find("No such file or directory") != std::string::npos);
  }
  CHECK_THROWS_AS((void)io::read_file(dir.path), io_error);
  const auto junk = dir.path / "junk.safetensors";
  {
    const auto b = bytes_of("not a safetensors file at all");
    io::write_bytes_atomic(junk, b);
  }
  try {
    (void)io::read_file(junk);
    FAIL("no throw");
  } catch (const io_error& e) {
    CHECK(std::string(e.what()).find(junk.string()) != std::string::npos);
  }
}
