// `stanzactl pki ...`: keys, certificate requests and lab certificates, made
// locally (no daemon needed), as the seed's `pki` commands do:
//
//   pki csr NAME CN:xmpp.example.com subjectAltName:a.example.com,b.example.com
//       writes NAME.key (mode 0600) and NAME.csr; send the .csr to your CA
//   pki selfsigned NAME CN:... [subjectAltName:...] [days:N]
//       writes NAME.key and NAME.crt, self-signed (labs only: clients and bridges
//       will not trust it unless told to)
//   pki list
//       the .key, .csr, .crt, .cer and .pem files in the directory, with what each
//       certificate covers and until when
//
// Files go to --dir (default: the current directory); an existing file is never
// overwritten.
#ifndef STANZAD_CMD_PKI_COMMANDS_H_
#define STANZAD_CMD_PKI_COMMANDS_H_

#include <string>
#include <vector>

namespace stanzad {

struct PkiResult {
  int exit_code = 0;
  std::string output;  // for stdout when exit_code is 0, else the error for stderr
};

// `args` are the words after "pki".
PkiResult RunPkiCommand(const std::vector<std::string>& args, const std::string& dir);

}  // namespace stanzad

#endif  // STANZAD_CMD_PKI_COMMANDS_H_
