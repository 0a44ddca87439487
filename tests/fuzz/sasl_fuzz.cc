// libFuzzer target for SASL: ScramServer (both hashes), PlainServer and ScramClient fed
// arbitrary bytes. None may crash, and each must keep its promises: a failure ends the
// exchange, nothing succeeds after the end, and only the one known user with the right
// password gets a success.
//
// The first byte picks the hash (bit 0) and the target (bits 1-2); the rest is one or two
// messages, split at the first 0xFF byte (which UTF-8 never holds):
//   0  ScramServer: client-first, then client-final
//   1  ScramServer after the RFC 5802/7677 client-first of "user": client-final
//   2  PlainServer: one message
//   3  ScramClient for "user"/"pencil": server-first, then server-final
// The server and client nonces are the RFCs', so the seed corpus holds the RFC exchanges.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "core/config/config.h"
#include "core/sasl/base64.h"
#include "core/sasl/plain.h"
#include "core/sasl/sasl_server.h"
#include "core/sasl/saslprep.h"
#include "core/sasl/scram.h"

namespace {

using stanzad::config::UserCredentials;
using stanzad::sasl::PlainServer;
using stanzad::sasl::SaslStep;
using stanzad::sasl::ScramClient;
using stanzad::sasl::ScramMechanism;
using stanzad::sasl::ScramServer;

// The RFC 5802 §5 and RFC 7677 §3 user: "user", "pencil", with the RFCs' salts.
const UserCredentials& RfcUser() {
  static const UserCredentials* const credentials = [] {
    auto* made = new UserCredentials;
    made->scram_sha1 = *stanzad::sasl::MakeScramCredentials(
        ScramMechanism::kSha1, "pencil", *stanzad::sasl::Base64Decode("QSXCR+Q6sek8bf92"));
    made->scram_sha256 = *stanzad::sasl::MakeScramCredentials(
        ScramMechanism::kSha256, "pencil",
        *stanzad::sasl::Base64Decode("W22ZaJ0SNY7soEsUEjb6gQ=="));
    return made;
  }();
  return *credentials;
}

std::optional<UserCredentials> Lookup(std::string_view username) {
  if (username == "user") return RfcUser();
  return std::nullopt;
}

bool Authorize(std::string_view username, std::string_view authzid) {
  return authzid == std::string(username) + "@example.com";
}

void Require(bool condition) {
  if (!condition) std::abort();
}

// A failure ends the exchange, and nothing is accepted after the end.
template <typename Server>
void CheckStep(Server& server, const SaslStep& step) {
  if (step.kind == SaslStep::Kind::kFailure) {
    Require(server.finished() && !server.succeeded() && !step.reason.empty());
  }
  if (step.kind == SaslStep::Kind::kSuccess) {
    Require(server.finished() && server.succeeded() && server.username() == "user");
  }
  if (server.finished()) {
    const bool succeeded = server.succeeded();
    Require(server.Step("n,,n=user,r=x").kind == SaslStep::Kind::kFailure);
    Require(server.succeeded() == succeeded);
  }
}

ScramServer MakeScramServer(ScramMechanism mechanism) {
  ScramServer::Params params;
  params.mechanism = mechanism;
  params.lookup = Lookup;
  params.authorize = Authorize;
  params.server_nonce =
      mechanism == ScramMechanism::kSha1 ? "3rfcNHYJY1ZVvWVs7j" : "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
  params.unknown_user_salt_key = "fuzz-unknown-user-salt-key";
  return ScramServer(std::move(params));
}

void FuzzScramServer(ScramMechanism mechanism, std::string_view first, std::string_view second) {
  ScramServer server = MakeScramServer(mechanism);
  const SaslStep step = server.Step(first);
  CheckStep(server, step);
  if (step.kind != SaslStep::Kind::kChallenge) return;
  Require(step.data.substr(0, 2) == "r=" && !server.finished());
  CheckStep(server, server.Step(second));
}

void FuzzScramServerFinal(ScramMechanism mechanism, std::string_view client_final) {
  ScramServer server = MakeScramServer(mechanism);
  const SaslStep step =
      server.Step(mechanism == ScramMechanism::kSha1 ? "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
                                                     : "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
  Require(step.kind == SaslStep::Kind::kChallenge);
  CheckStep(server, server.Step(client_final));
}

void FuzzPlainServer(std::string_view message) {
  PlainServer::Params params;
  params.lookup = Lookup;
  params.authorize = Authorize;
  PlainServer server(std::move(params));
  const SaslStep step = server.Step(message);
  CheckStep(server, step);
  if (step.kind == SaslStep::Kind::kSuccess) {
    // Only the right password opens the door (SASLprep may have removed soft hyphens).
    absl::StatusOr<stanzad::sasl::PlainMessage> parsed = stanzad::sasl::ParsePlainMessage(message);
    Require(parsed.ok());
    absl::StatusOr<std::string> password =
        stanzad::sasl::SaslPrep(parsed->password, stanzad::sasl::SaslPrepMode::kQuery);
    Require(password.ok() && *password == "pencil");
  }
}

void FuzzScramClient(ScramMechanism mechanism, std::string_view server_first,
                     std::string_view server_final) {
  ScramClient::Params params;
  params.mechanism = mechanism;
  params.username = "user";
  params.password = "pencil";
  params.client_nonce =
      mechanism == ScramMechanism::kSha1 ? "fyko+d2lbbFgONRv9qkxdawL" : "rOprNGfwEbeRWgbNEkqO";
  // A hostile server may ask for 10^7 iterations; keep each run short.
  params.iteration_count_max = 8192;
  absl::StatusOr<ScramClient> client = ScramClient::Create(std::move(params));
  Require(client.ok());
  absl::StatusOr<std::string> client_final = client->HandleServerFirst(server_first);
  if (!client_final.ok()) {
    Require(client->HandleServerFinal(server_final).code() ==
            absl::StatusCode::kFailedPrecondition);
    return;
  }
  Require(client_final->substr(0, 2) == "c=");
  (void)client->HandleServerFinal(server_final);
  Require(client->HandleServerFinal(server_final).code() == absl::StatusCode::kFailedPrecondition);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const ScramMechanism mechanism = (data[0] & 1) ? ScramMechanism::kSha256 : ScramMechanism::kSha1;
  const int target = (data[0] >> 1) & 3;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t split = rest.find('\xFF');
  const std::string_view first = rest.substr(0, split);
  const std::string_view second =
      split == std::string_view::npos ? std::string_view() : rest.substr(split + 1);
  switch (target) {
    case 0:
      FuzzScramServer(mechanism, first, second);
      break;
    case 1:
      FuzzScramServerFinal(mechanism, rest);
      break;
    case 2:
      FuzzPlainServer(rest);
      break;
    default:
      FuzzScramClient(mechanism, first, second);
      break;
  }
  return 0;
}
