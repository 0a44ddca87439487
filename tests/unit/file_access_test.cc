// DescribeUnreadableFile / CheckDaemonCanRead: what `certs` and `cluster trust`
// say when the daemon cannot read a file the operator named.
#include "cmd/file_access.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
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

TEST(FileAccessTest, CheckDaemonCanReadFindsTheFileModeAsNonRoot) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads a mode-000 file";
  testing_util::TempDir dir("file_access_test");
  const std::string path = dir.path() + "/xmpp.key";
  std::ofstream(path) << "key";
  ASSERT_EQ(chmod(path.c_str(), 0), 0);
  // Under /tmp (TMPDIR unset): the advice is to move it where the unit can see it.
  EXPECT_THAT(std::string(CheckDaemonCanRead(path, "private key", true).message()),
              HasSubstr(path + ": Permission denied"));
}

}  // namespace
}  // namespace stanzad
