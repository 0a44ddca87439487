#include "admin/file_access.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "core/base/concat.h"

namespace stanzad {
namespace {

bool Under(std::string_view path, std::string_view directory) {
  return path.size() > directory.size() && path.starts_with(directory) &&
         path[directory.size()] == '/';
}

std::string BaseName(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string DescribeUnreadableFile(const UnreadableFile& file) {
  const std::string mode = file.secret ? "0640" : "0644";
  std::string out = Concat("stanzad (user ", file.user, ") cannot read the ", file.what, " ",
                           file.path, ": ", std::strerror(file.error));
  const bool in_tmp = Under(file.path, "/tmp") || Under(file.path, "/var/tmp");
  const bool in_home =
      Under(file.path, "/root") || Under(file.path, "/home") || Under(file.path, "/run/user");
  if (in_tmp || in_home) {
    const std::string moved = Concat(kKeyDirectory, "/", BaseName(file.path));
    out += in_tmp ? "; keep keys out of /tmp: stanzad.service's PrivateTmp=yes gives the daemon "
                    "a /tmp of its own, without this file"
                  : "; keep keys out of /root and /home: stanzad.service's ProtectHome=yes hides "
                    "/root, /home and /run/user from the daemon";
    return Concat(out, ". fix: install -D -o root -g ", file.group, " -m ", mode, " ", file.path,
                  " ", moved, " and give certs that path");
  }
  if (file.error == EACCES && !file.blocked_directory.empty()) {
    return Concat(out, " (it may not enter ", file.blocked_directory, "). fix: chgrp ", file.group,
                  " ", file.blocked_directory, " && chmod g+x ", file.blocked_directory,
                  ", or keep keys in ", kKeyDirectory);
  }
  if (file.error == EACCES) {
    return Concat(out, ". fix: chown root:", file.group, " ", file.path, " && chmod ", mode, " ",
                  file.path);
  }
  if (file.error == ENOENT) {
    return Concat(out,
                  ". fix: check the path (stanzactl makes a relative one absolute from "
                  "the directory it runs in)");
  }
  return Concat(out, ". fix: check the file and the disk it is on");
}

absl::Status CheckDaemonCanRead(const std::string& path, const std::string& what, bool secret) {
  // O_NONBLOCK: a FIFO must not hold the control thread; it is refused as not a file.
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd >= 0) {
    struct stat info {};
    const bool regular = fstat(fd, &info) == 0 && S_ISREG(info.st_mode);
    close(fd);
    if (regular) return absl::OkStatus();
    return absl::InvalidArgumentError(
        Concat("cannot use ", what, " ", path,
               ": it is not a regular file (a directory, FIFO, socket or device). fix: give "
               "the path of the PEM file itself"));
  }
  UnreadableFile file;
  file.path = path;
  file.what = what;
  file.secret = secret;
  file.error = errno;
  const passwd* user = getpwuid(geteuid());
  const group* group = getgrgid(getegid());
  file.user = user != nullptr ? user->pw_name : std::to_string(geteuid());
  file.group = group != nullptr ? group->gr_name : std::to_string(getegid());
  if (file.error == EACCES) {
    // The first directory on the way this process may not search: chmod on the file
    // itself would not help then.
    for (size_t slash = path.find('/', 1); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
      const std::string directory = path.substr(0, slash);
      if (access(directory.c_str(), X_OK) != 0) {
        file.blocked_directory = directory;
        break;
      }
    }
  }
  return absl::FailedPreconditionError(DescribeUnreadableFile(file));
}

}  // namespace stanzad
