#include "server/tls_files.h"

#include "core/base/log.h"
#include "tls/certificates.h"

namespace stanzad::server {

std::shared_ptr<const tls::TlsContext> ClientTlsContext(const NodeConfig& config) {
  if (config.tls_certificate.empty()) return nullptr;
  absl::StatusOr<std::string> key = tls::ReadPemFile(config.tls_key);
  absl::StatusOr<std::string> chain = tls::ReadPemFile(config.tls_certificate);
  absl::StatusOr<std::string> bundle = config.tls_bundle.empty()
                                           ? absl::StatusOr<std::string>(std::string())
                                           : tls::ReadPemFile(config.tls_bundle);
  absl::Status status = !key.ok()      ? key.status()
                        : !chain.ok()  ? chain.status()
                        : !bundle.ok() ? bundle.status()
                                       : absl::OkStatus();
  if (status.ok()) {
    std::string pem = *chain;
    if (!pem.empty() && pem.back() != '\n') pem.push_back('\n');
    pem += *bundle;  // leaf first, then the chain
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> context =
        tls::TlsContext::Server(pem, *key);
    if (context.ok()) return *context;
    status = context.status();
  }
  LogEvent(LogLevel::kError, "client_tls_unavailable",
           "reason=" + LogQuote(std::string(status.message())) +
               " fix=\"stanzactl certs KEY CERT [BUNDLE]\"");
  return nullptr;
}

absl::StatusOr<ClusterTls> LoadClusterTls(const NodeConfig& config) {
  ClusterTls loaded;
  if (config.tls_key.empty() || config.tls_certificate.empty() || config.cluster_trust.empty()) {
    return loaded;
  }
  absl::StatusOr<std::string> key = tls::ReadPemFile(config.tls_key);
  absl::StatusOr<std::string> cert = tls::ReadPemFile(config.tls_certificate);
  absl::StatusOr<std::string> trust = tls::ReadPemFile(config.cluster_trust);
  std::string chain = cert.ok() ? *cert : "";
  if (!config.tls_bundle.empty()) {
    if (absl::StatusOr<std::string> bundle = tls::ReadPemFile(config.tls_bundle); bundle.ok()) {
      chain += *bundle;
    }
  }
  absl::Status status = !key.ok()     ? key.status()
                        : !cert.ok()  ? cert.status()
                        : !trust.ok() ? trust.status()
                                      : absl::OkStatus();
  if (status.ok()) {
    tls::TlsServerOptions server_options;
    server_options.client_trust_pem = *trust;
    tls::TlsClientOptions client_options;
    client_options.cert_chain_pem = chain;
    client_options.key_pem = *key;
    auto server = tls::TlsContext::Server(chain, *key, server_options);
    auto client = tls::TlsContext::Client(*trust, true, client_options);
    status = !server.ok() ? server.status() : !client.ok() ? client.status() : status;
    absl::StatusOr<std::string> identity =
        status.ok() ? tls::PublicKeyDigest(*cert) : absl::StatusOr<std::string>(status);
    if (status.ok() && !identity.ok()) status = identity.status();
    if (status.ok()) {
      loaded.server = *server;
      loaded.client = *client;
      loaded.identity = *identity;
      return loaded;
    }
  }
  return absl::FailedPreconditionError(
      "the cluster's TLS files do not load: " + std::string(status.message()) +
      " (fix them, then 'stanzactl certs' or 'cluster trust' again)");
}

}  // namespace stanzad::server
