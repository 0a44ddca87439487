// libFuzzer target for the XEP-0227 reader (core/config/xep0227.h).
//
// Oracle: the input fed whole and fed in chunks whose sizes the first byte's seed chooses
// must give the same users and the same success or failure; every user yielded must be
// one Raft would accept (a valid name, valid credentials or a password); and the writer's
// file of the yielded credentials must read back to the same credentials. Any crash,
// sanitizer report or mismatch is a finding. Seeds: the files of ejabberd and Prosody in
// tests/unit/testdata/xep0227.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/config.h"
#include "core/config/xep0227.h"

namespace {

using stanzad::config::ImportedUser;
using stanzad::config::Xep0227Reader;

struct Outcome {
  bool ok = false;
  std::vector<ImportedUser> users;
};

Outcome Read(std::string_view input, uint32_t seed) {
  Xep0227Reader reader;
  Outcome outcome;
  absl::Status status;
  size_t at = 0;
  while (at < input.size() && status.ok()) {
    size_t size = input.size() - at;
    if (seed != 0) {
      seed = seed * 1103515245u + 12345u;
      size = std::min<size_t>(size, 1 + (seed >> 16) % 64);
    }
    const std::string chunk(input.substr(at, size));  // own allocation: stale views trip ASan
    at += size;
    status = reader.Feed(chunk);
    while (std::optional<ImportedUser> user = reader.Next()) outcome.users.push_back(*user);
  }
  if (status.ok()) status = reader.Finish();
  while (std::optional<ImportedUser> user = reader.Next()) outcome.users.push_back(*user);
  outcome.ok = status.ok();
  return outcome;
}

void Require(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "xep0227_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint32_t seed = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const Outcome whole = Read(input, 0);
  const Outcome chunked = Read(input, seed | 1);
  Require(whole.ok == chunked.ok, "whole and chunked disagree on success");
  Require(whole.users == chunked.users, "whole and chunked yield different users");
  for (const ImportedUser& user : whole.users) {
    Require(stanzad::config::ValidateUserName(user.name).ok(), "a user name Raft would refuse");
    Require(user.credentials.has_value() || user.password.has_value(), "a user with nothing");
    if (!user.credentials.has_value()) continue;
    Require(stanzad::config::ValidateUserCredentials(*user.credentials).ok(),
            "credentials Raft would refuse");
    for (auto encoding : {stanzad::config::ScramEncoding::kXep0227,
                          stanzad::config::ScramEncoding::kDoubleBase64}) {
      std::string file;
      stanzad::config::AppendXep0227Header("example.com", &file);
      stanzad::config::AppendXep0227User(user.name, *user.credentials, encoding, &file);
      stanzad::config::AppendXep0227Footer(&file);
      const Outcome again = Read(file, 0);
      Require(again.ok && again.users.size() == 1 && again.users[0].credentials == user.credentials,
              "the writer's file does not read back");
    }
  }
  return 0;
}
