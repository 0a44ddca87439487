// DescribeUnreadableFile / CheckDaemonCanRead: what `certs` and `cluster trust`
// say when the daemon cannot read a file the operator named.
#include "admin/file_access.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "tests/unit/temp_dir.h"

namespace stanzad {
namespace {

using ::testing::AllOf;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

UnreadableFile Packaged(std::string path, int error) {
  UnreadableFile file;
  file.path = std::move(path);
  file.what = "private key";
  file.secret = true;
  file.error = error;
  file.user = "stanzad";
  file.group = "stanzad";
  return file;
}

TEST(FileAccessTest, AKeyOnlyRootMayReadGetsTheChownAndChmod) {
  const std::string text = DescribeUnreadableFile(Packaged("/etc/stanzad/xmpp.key", EACCES));
  EXPECT_EQ(text,
            "stanzad (user stanzad) cannot read the private key /etc/stanzad/xmpp.key: "
            "Permission denied. fix: chown root:stanzad /etc/stanzad/xmpp.key && chmod 0640 "
            "/etc/stanzad/xmpp.key");
}

TEST(FileAccessTest, ACertificateIsMadeWorldReadable) {
  UnreadableFile file = Packaged("/srv/tls/xmpp.crt", EACCES);
  file.what = "certificate";
  file.secret = false;
  EXPECT_THAT(DescribeUnreadableFile(file),
              EndsWith("fix: chown root:stanzad /srv/tls/xmpp.crt && chmod 0644 "
                       "/srv/tls/xmpp.crt"));
}

TEST(FileAccessTest, ADirectoryItMayNotEnterIsNamedInstead) {
  UnreadableFile file = Packaged("/srv/private/xmpp.key", EACCES);
  file.blocked_directory = "/srv/private";
  EXPECT_THAT(DescribeUnreadableFile(file),
              HasSubstr("(it may not enter /srv/private). fix: chgrp stanzad /srv/private && "
                        "chmod g+x /srv/private"));
}

TEST(FileAccessTest, UnderRootOrHomeProtectHomeIsNamed) {
  for (const char* path : {"/root/xmpp.key", "/home/ops/xmpp.key", "/run/user/0/xmpp.key"}) {
    // ProtectHome makes them inaccessible (EACCES) or absent, depending on the mode.
    for (const int error : {EACCES, ENOENT}) {
      const std::string text = DescribeUnreadableFile(Packaged(path, error));
      EXPECT_THAT(text, HasSubstr("stanzad.service's ProtectHome=yes hides /root, /home and "
                                  "/run/user from the daemon"))
          << text;
      EXPECT_THAT(text, HasSubstr(std::string("fix: install -D -o root -g stanzad -m 0640 ") +
                                  path + " /etc/stanzad/xmpp.key and give certs that path"));
      EXPECT_THAT(text, Not(HasSubstr("PrivateTmp")));
    }
  }
}

TEST(FileAccessTest, UnderTmpPrivateTmpIsNamed) {
  for (const char* path : {"/tmp/xmpp.key", "/var/tmp/keys/xmpp.key"}) {
    const std::string text = DescribeUnreadableFile(Packaged(path, ENOENT));
    EXPECT_THAT(text, HasSubstr("No such file or directory; keep keys out of /tmp: "
                                "stanzad.service's PrivateTmp=yes gives the daemon a /tmp of "
                                "its own, without this file"));
    EXPECT_THAT(text, HasSubstr("fix: install -D -o root -g stanzad -m 0640"));
  }
  // Only under those directories: a look-alike name is not.
  EXPECT_THAT(DescribeUnreadableFile(Packaged("/tmpkeys/xmpp.key", ENOENT)),
              Not(HasSubstr("PrivateTmp")));
}

TEST(FileAccessTest, AMissingFileElsewhereIsAPathProblem) {
  EXPECT_THAT(DescribeUnreadableFile(Packaged("/etc/stanzad/nope.key", ENOENT)),
              EndsWith("No such file or directory. fix: check the path (stanzactl makes a "
                       "relative one absolute from the directory it runs in)"));
}

TEST(FileAccessTest, CheckDaemonCanReadSaysWhoItIs) {
  testing_util::TempDir dir("file_access_test");
  const std::string path = dir.path() + "/xmpp.key";
  EXPECT_THAT(std::string(CheckDaemonCanRead(path, "private key", true).message()),
              AllOf(StartsWith("stanzad (user "), HasSubstr(path + ": No such file")));
  std::ofstream(path) << "key";
  EXPECT_TRUE(CheckDaemonCanRead(path, "private key", true).ok());
}

// A FIFO would block an open without O_NONBLOCK until something wrote to it: the
// daemon's control thread would hang (found by an attack on `certs`).
TEST(FileAccessTest, AFifoOrADirectoryIsRefusedAtOnceAsNotAFile) {
  testing_util::TempDir dir("file_access_test");
  const std::string fifo = dir.path() + "/key.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  for (const std::string& path : {fifo, dir.path()}) {
    EXPECT_THAT(std::string(CheckDaemonCanRead(path, "private key", true).message()),
                AllOf(HasSubstr(path), HasSubstr("not a regular file"),
                      HasSubstr("fix: give the path of the PEM file itself")));
  }
}

// What CheckDaemonCanRead says of `path` ("" when it is OK), seen by a user that is
// not root. Root reads any mode, and CI runs as root: then a child process drops to
// nobody (uid and gid 65534, no supplementary groups) to look, and sends the answer
// back through a pipe.
std::string CheckAsNonRoot(const std::string& path) {
  const auto check = [&] {
    const absl::Status status = CheckDaemonCanRead(path, "private key", true);
    return status.ok() ? std::string() : std::string(status.message());
  };
  if (geteuid() != 0) return check();
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return "pipe failed";
  const pid_t child = fork();
  if (child == 0) {
    close(pipe_fds[0]);
    constexpr uid_t kNobody = 65534;
    if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0 ||
        geteuid() == 0) {
      _exit(2);
    }
    const std::string said = check();
    _exit(write(pipe_fds[1], said.data(), said.size()) == static_cast<ssize_t>(said.size()) ? 0
                                                                                            : 3);
  }
  close(pipe_fds[1]);
  std::string said;
  char buffer[512];
  for (ssize_t got; (got = read(pipe_fds[0], buffer, sizeof(buffer))) != 0;) {
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) break;
    said.append(buffer, static_cast<size_t>(got));
  }
  close(pipe_fds[0]);
  int wait_status = 0;
  if (child < 0 || waitpid(child, &wait_status, 0) != child || !WIFEXITED(wait_status) ||
      WEXITSTATUS(wait_status) != 0) {
    return "the child that drops to nobody failed, wait status " + std::to_string(wait_status);
  }
  return said;
}

TEST(FileAccessTest, CheckDaemonCanReadFindsTheFileModeAsNonRoot) {
  testing_util::TempDir dir("file_access_test");
  // Only the file's mode may stand in the way: the directory lets anyone in
  // (mkdtemp made it 0700, which as root would keep nobody out of it).
  ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0);
  const std::string path = dir.path() + "/xmpp.key";
  std::ofstream(path) << "key";
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  EXPECT_EQ(CheckAsNonRoot(path), "");  // the same user reads it once the mode allows
  ASSERT_EQ(chmod(path.c_str(), 0), 0);
  // Under /tmp (TMPDIR unset): the advice is to move it where the unit can see it.
  EXPECT_THAT(CheckAsNonRoot(path),
              AllOf(StartsWith("stanzad (user "), HasSubstr(path + ": Permission denied")));
}

}  // namespace
}  // namespace stanzad
