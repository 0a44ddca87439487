// The node's TLS files (set by `stanzactl certs` and `cluster trust`) made into TLS
// contexts: for clients, and for the mutual TLS of the cluster links. Files are read
// again on every call, so a renewed certificate reaches new connections; nothing is
// cached here.
//
// Thread: any (the daemon calls these on the control thread).
#ifndef STANZAD_SERVER_TLS_FILES_H_
#define STANZAD_SERVER_TLS_FILES_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "admin/node_config.h"
#include "tls/tls_session.h"

namespace stanzad::server {

// The server certificate for clients (key, certificate, then the bundle's chain). Null
// without a certificate, or when its files do not load (then logged as
// client_tls_unavailable, with the command that fixes it).
std::shared_ptr<const tls::TlsContext> ClientTlsContext(const NodeConfig& config);

// The contexts of the cluster links' mutual TLS; all empty when the node does not ask
// for it (it needs a key, a certificate and the cluster's trust bundle).
struct ClusterTls {
  std::shared_ptr<const tls::TlsContext> server;
  std::shared_ptr<const tls::TlsContext> client;
  std::string identity;  // the certificate's public key digest (tls::PublicKeyDigest)
};
// An error, worded for the operator, when TLS is asked for and the files do not load:
// the node must then stay out of the cluster, never talk in the clear.
absl::StatusOr<ClusterTls> LoadClusterTls(const NodeConfig& config);

}  // namespace stanzad::server

#endif  // STANZAD_SERVER_TLS_FILES_H_
