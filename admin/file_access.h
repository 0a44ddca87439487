// Why the daemon cannot read a key or certificate file an operator named, and the
// exact commands that fix it. The packaged daemon runs as user stanzad under
// stanzad.service, whose ProtectHome=yes hides /root, /home and /run/user and
// whose PrivateTmp=yes gives it a /tmp of its own; `stanzactl pki` run as root
// writes keys 0600 owned by root. Each of these reads as "Permission denied" or
// "No such file" unless it is named.
//
// DescribeUnreadableFile is pure (unit-tested); CheckDaemonCanRead looks at the
// file as this process (the daemon) sees it. Keys belong in /etc/stanzad
// (root:stanzad 0750), each key root:stanzad 0640, certificates 0644
// (docs/operating.md, "Where keys live").
#ifndef STANZAD_ADMIN_FILE_ACCESS_H_
#define STANZAD_ADMIN_FILE_ACCESS_H_

#include <string>

#include "absl/status/status.h"

namespace stanzad {

inline constexpr char kKeyDirectory[] = "/etc/stanzad";

struct UnreadableFile {
  std::string path;     // absolute
  std::string what;     // "private key", "certificate", "trust bundle"
  bool secret = false;  // a private key: readable by the daemon's group only
  int error = 0;        // errno of opening it
  std::string user;     // the daemon's user and group
  std::string group;
  std::string blocked_directory;  // the first directory on `path` it may not enter; "" if none
};

// One line: what cannot be read and why, then "fix: ..." with the commands to
// run as root. Names ProtectHome= or PrivateTmp= when the path is where they act.
std::string DescribeUnreadableFile(const UnreadableFile& file);

// OK when this process can open `path` for reading; otherwise FailedPrecondition
// with DescribeUnreadableFile's line for it.
absl::Status CheckDaemonCanRead(const std::string& path, const std::string& what, bool secret);

}  // namespace stanzad

#endif  // STANZAD_ADMIN_FILE_ACCESS_H_
