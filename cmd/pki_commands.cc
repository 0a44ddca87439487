#include "cmd/pki_commands.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/base/concat.h"
#include "tls/certificates.h"
#include "tls/pki.h"

namespace stanzad {
namespace {

PkiResult Fail(std::string message) { return {1, "stanzactl: " + message + "\n"}; }

PkiResult Usage() {
  return {2,
          "usage: stanzactl pki csr NAME CN:NAME [subjectAltName:A,B,...] [O:ORG] [OU:UNIT]\n"
          "       stanzactl pki selfsigned NAME CN:NAME [subjectAltName:A,B,...] [days:N]\n"
          "       stanzactl pki list\n"};
}

// Writes a new file (never replacing one) with `mode`.
std::string WriteNew(const std::string& path, const std::string& content, mode_t mode) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) return Concat(path, " exists; remove it or choose another NAME");
    return Concat("cannot create ", path, ": ", std::strerror(errno));
  }
  const char* data = content.data();
  size_t left = content.size();
  while (left > 0) {
    const ssize_t n = write(fd, data, left);
    if (n <= 0) {
      const int error = errno;
      close(fd);
      unlink(path.c_str());
      return Concat("cannot write ", path, ": ", std::strerror(error));
    }
    data += n;
    left -= static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) return Concat("cannot write ", path);
  return "";
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) {
                       return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                              c == '.';
                     }) &&
         name[0] != '.';
}

}  // namespace

PkiResult RunPkiCommand(const std::vector<std::string>& args, const std::string& dir) {
  if (args.empty()) return Usage();
  const std::string& verb = args[0];
  if (verb == "list") {
    if (args.size() != 1) return Usage();
    std::vector<std::string> names;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
      const std::string ext = entry.path().extension().string();
      if (ext == ".key" || ext == ".csr" || ext == ".crt" || ext == ".cer" || ext == ".pem") {
        names.push_back(entry.path().filename().string());
      }
    }
    if (error) return Fail(Concat("cannot list ", dir, ": ", error.message()));
    std::sort(names.begin(), names.end());
    if (names.empty()) return {0, Concat("No keys or certificates in ", dir, "\n")};
    std::string out;
    for (const std::string& name : names) {
      out += name;
      absl::StatusOr<std::string> pem = tls::ReadPemFile(Concat(dir, "/", name));
      if (pem.ok() && pem->find("BEGIN CERTIFICATE") != std::string::npos) {
        absl::StatusOr<tls::CertificateSummary> summary = tls::SummarizeCertificate(*pem);
        if (summary.ok()) out += "  " + summary->ToString();
      }
      out += "\n";
    }
    return {0, out};
  }
  if (verb != "csr" && verb != "selfsigned") return Usage();
  if (args.size() < 3) return Usage();
  const std::string& name = args[1];
  if (!ValidName(name)) {
    return Fail(Concat("bad NAME '", name, "': letters, digits, '-', '_' and '.' only"));
  }
  std::vector<std::string> subject_args;
  int days = 365;
  for (size_t i = 2; i < args.size(); ++i) {
    if (args[i].rfind("days:", 0) == 0 && verb == "selfsigned") {
      days = std::atoi(args[i].c_str() + 5);
      if (days < 1 || days > 3650) return Fail("days must be 1 to 3650");
    } else {
      subject_args.push_back(args[i]);
    }
  }
  absl::StatusOr<tls::CertificateSubject> subject = tls::ParseSubjectArguments(subject_args);
  if (!subject.ok()) return Fail(std::string(subject.status().message()));
  absl::StatusOr<std::string> key = tls::GeneratePrivateKeyPem();
  if (!key.ok()) return Fail(std::string(key.status().message()));
  const std::string key_path = Concat(dir, "/", name, ".key");
  const std::string other_path = Concat(dir, "/", name, verb == "csr" ? ".csr" : ".crt");
  if (std::filesystem::exists(other_path)) {
    return Fail(Concat(other_path, " exists; remove it or choose another NAME"));
  }
  std::string other;
  if (verb == "csr") {
    absl::StatusOr<std::string> csr = tls::MakeCertificateRequestPem(*key, *subject);
    if (!csr.ok()) return Fail(std::string(csr.status().message()));
    other = *csr;
  } else {
    tls::CertificateSpec spec;
    spec.subject = *subject;
    spec.validity = tls::Validity::DaysFromNow(days);
    absl::StatusOr<std::string> cert = tls::MakeSelfSignedCertificatePem(*key, spec);
    if (!cert.ok()) return Fail(std::string(cert.status().message()));
    other = *cert;
  }
  if (std::string error = WriteNew(key_path, *key, 0600); !error.empty()) return Fail(error);
  if (std::string error = WriteNew(other_path, other, 0644); !error.empty()) {
    unlink(key_path.c_str());
    return Fail(error);
  }
  std::string out = Concat("Wrote ", key_path, " (private key, mode 0600) and ", other_path, "\n");
  if (verb == "csr") {
    out += "Send " + other_path +
           " to your certificate authority; install what it returns with "
           "'stanzactl certs " +
           key_path + " CERT [BUNDLE]'\n";
  } else {
    out +=
        "warning: a self-signed certificate is for labs: clients and call bridges do not "
        "trust it unless configured to; production needs a certificate from a CA\n";
  }
  return {0, out};
}

}  // namespace stanzad
