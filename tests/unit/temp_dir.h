// A temporary directory for a test, removed with everything in it at the end.
#ifndef STANZAD_TESTS_UNIT_TEMP_DIR_H_
#define STANZAD_TESTS_UNIT_TEMP_DIR_H_

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace stanzad::testing_util {

class TempDir {
 public:
  // Under $TMPDIR (or /tmp), named PREFIX.XXXXXX.
  explicit TempDir(std::string_view prefix) {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr && base[0] != '\0' ? base : "/tmp") + "/" +
                          std::string(prefix) + ".XXXXXX";
    char* made = ::mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr);
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes `contents` to the file `name` in it; returns the file's path.
  std::string Write(std::string_view name, std::string_view contents) const {
    const std::string path = path_ + "/" + std::string(name);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    return path;
  }
  const std::string& path() const { return path_; }
  // The path of `name` in it (which need not exist).
  std::string Path(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

}  // namespace stanzad::testing_util

#endif  // STANZAD_TESTS_UNIT_TEMP_DIR_H_
