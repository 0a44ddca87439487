// ConfigStateMachine: the commands an operator types, applied as Raft entries; the answers
// the CLI prints; membership mirroring; snapshots; and determinism (two nodes applying the
// same log end equal).
#include "cluster/config_state_machine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/base/concat.h"

namespace stanzad::cluster {
namespace {

using raft::Entry;
using raft::EntryType;
using ::testing::HasSubstr;

std::string MessageOf(const absl::Status& status) { return std::string(status.message()); }

config::UserCredentials MakeCredentials(char fill) {
  config::UserCredentials credentials;
  credentials.scram_sha256 = config::ScramSecret{std::string(16, fill), 4096, std::string(32, fill),
                                                 std::string(32, static_cast<char>(fill + 1))};
  return credentials;
}

// Applies commands as consecutive kNormal entries, as the control-plane thread does.
class Node {
 public:
  absl::Status Run(const ConfigCommand& command) {
    return Apply(
        Entry{1, machine.applied_index() + 1, EntryType::kNormal, EncodeConfigCommand(command)});
  }
  absl::Status Apply(const Entry& entry) {
    log.push_back(entry);
    return machine.Apply(entry);
  }
  absl::Status Member(EntryType type, raft::NodeId id, std::string address) {
    return Apply(Entry{1, machine.applied_index() + 1, type,
                       raft::EncodeMember(raft::Member{id, std::move(address)})});
  }

  ConfigStateMachine machine;
  std::vector<Entry> log;
};

std::vector<ConfigCommand> EveryKindOfCommand() {
  return {
      SetDomain{"tptac9.com"},
      SetListen{{"a", "10.0.0.1"}},
      SetTlsFiles{{"/k.key", "/c.crt", "/b.crt"}},
      AddCallbridge{"cb1", "kvgP1SRzWVabhiPVAb1", false},
      AddCallbridge{"cb2", "uBiLLdIU8vVqj86CAb1", true},
      DeleteCallbridge{"cb2"},
      AddUser{"alice", MakeCredentials('a')},
      SetUserCredentials{"alice", MakeCredentials('b')},
      DeleteUser{"alice"},
      SetSaltKey{std::string(64, 'k')},
      AddJoinToken{7, std::string(16, 's'), 2000, 1000},
      UseJoinToken{7, 1500, 42, std::string(32, 'i')},
      SetMemberIdentity{43, std::string(32, 'j')},
      ImportCallbridges{
          {{"cb3", "kvgP1SRzWVabhiPVAb3", false}, {"cb4", "kvgP1SRzWVabhiPVAb4", true}}},
      ImportUsers{{{"bob", MakeCredentials('c')}, {"carol", MakeCredentials('d')}}, true},
  };
}

TEST(ConfigStateMachineTest, AJoinTokenIsUsedOnceAndExpires) {
  Node node;
  ASSERT_TRUE(node.Run(AddJoinToken{7, std::string(16, 's'), 2000, 1000}).ok());
  ASSERT_TRUE(node.Run(AddJoinToken{8, std::string(16, 't'), 1100, 1000}).ok());
  EXPECT_EQ(node.machine.config().join_tokens.size(), 2u);
  EXPECT_TRUE(node.Run(UseJoinToken{7, 1500, 42, std::string(32, 'i')}).ok());
  EXPECT_EQ(node.machine.config().member_identities.at(42), std::string(32, 'i'));
  EXPECT_EQ(node.Run(UseJoinToken{7, 1500, 43, ""}).code(), absl::StatusCode::kNotFound) << "used";
  EXPECT_EQ(node.Run(UseJoinToken{8, 1200, 43, ""}).code(), absl::StatusCode::kNotFound)
      << "expired";
  // A removed member's key names no one any more.
  ASSERT_TRUE(node.Member(EntryType::kAddMember, 42, "10.0.0.2:5279").ok());
  ASSERT_TRUE(node.Member(EntryType::kRemoveMember, 42, "10.0.0.2:5279").ok());
  EXPECT_EQ(node.machine.config().member_identities.count(42), 0u);
  // A new token drops the expired ones, deterministically (the proposer's clock is in it).
  ASSERT_TRUE(node.Run(AddJoinToken{9, std::string(16, 'u'), 3000, 1200}).ok());
  EXPECT_EQ(node.machine.config().join_tokens.size(), 1u);
  EXPECT_EQ(node.Run(AddJoinToken{10, std::string(16, 'v'), 1000, 1200}).code(),
            absl::StatusCode::kInvalidArgument)
      << "already expired";
  for (uint64_t id = 100; id < 100 + config::kJoinTokensMax - 1; ++id) {
    ASSERT_TRUE(node.Run(AddJoinToken{id, std::string(16, 'w'), 3000, 1200}).ok()) << id;
  }
  EXPECT_EQ(node.Run(AddJoinToken{999, std::string(16, 'x'), 3000, 1200}).code(),
            absl::StatusCode::kResourceExhausted);
  // Survives a snapshot.
  ConfigStateMachine restored;
  ASSERT_TRUE(restored.Restore(node.machine.Snapshot()).ok());
  EXPECT_EQ(restored.config(), node.machine.config());
}

TEST(ConfigStateMachineTest, TheSaltKeyIsSetOnceForTheCluster) {
  Node node;
  EXPECT_EQ(node.Run(SetSaltKey{"short"}).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(node.Run(SetSaltKey{std::string(64, 'a')}).ok());
  EXPECT_TRUE(node.Run(SetSaltKey{std::string(64, 'a')}).ok()) << "the same again: no-op";
  EXPECT_EQ(node.Run(SetSaltKey{std::string(64, 'b')}).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(node.machine.config().unknown_user_salt_key, std::string(64, 'a'));
}

TEST(ConfigCommandTest, EveryKindRoundTrips) {
  for (const ConfigCommand& command : EveryKindOfCommand()) {
    std::string bytes = EncodeConfigCommand(command);
    absl::StatusOr<ConfigCommand> decoded = DecodeConfigCommand(bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, command);
    EXPECT_EQ(EncodeConfigCommand(*decoded), bytes);
  }
  config::UserCredentials both = MakeCredentials('c');
  both.scram_sha1 =
      config::ScramSecret{"saltsalt", 10000, std::string(20, 'k'), std::string(20, 'l')};
  ConfigCommand user = AddUser{"bob", both};
  EXPECT_EQ(*DecodeConfigCommand(EncodeConfigCommand(user)), user);
}

TEST(ConfigCommandTest, RefusesDamagedEncodings) {
  for (const ConfigCommand& command : EveryKindOfCommand()) {
    std::string bytes = EncodeConfigCommand(command);
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      EXPECT_TRUE(absl::IsInvalidArgument(DecodeConfigCommand(bytes.substr(0, cut)).status()));
    }
    EXPECT_THAT(MessageOf(DecodeConfigCommand(bytes + "x").status()), HasSubstr("trailing"));
  }
  EXPECT_THAT(MessageOf(DecodeConfigCommand(std::string("\x01\x63", 2)).status()),
              HasSubstr("unknown kind 99"));
  EXPECT_THAT(MessageOf(DecodeConfigCommand(std::string("\x07\x01", 2)).status()),
              HasSubstr("format version 7"));
  std::string force = EncodeConfigCommand(AddCallbridge{"cb1", "s", true});
  force.back() = 2;  // a boolean is 0 or 1, one encoding per value
  EXPECT_FALSE(DecodeConfigCommand(force).ok());
}

TEST(ConfigCommandTest, RandomBytesNeverCrash) {
  std::mt19937_64 random(99);
  std::vector<std::string> valid;
  for (const ConfigCommand& command : EveryKindOfCommand()) {
    valid.push_back(EncodeConfigCommand(command));
  }
  for (int round = 0; round < 20000; ++round) {
    std::string bytes;
    if (round % 2 == 0) {
      const std::string& base = valid[random() % valid.size()];
      bytes = base.substr(0, random() % (base.size() + 1));
    }
    size_t length = random() % 64;
    for (size_t i = 0; i < length; ++i) bytes.push_back(static_cast<char>(random()));
    absl::StatusOr<ConfigCommand> decoded = DecodeConfigCommand(bytes);
    if (decoded.ok()) {
      EXPECT_EQ(EncodeConfigCommand(*decoded), bytes);
    }
    // Applying whatever arrives never crashes either.
    ConfigStateMachine machine;
    (void)machine.Apply(Entry{1, 1, EntryType::kNormal, bytes});
    EXPECT_EQ(machine.applied_index(), 1u);
    EXPECT_TRUE(machine.config().Validate().ok());
  }
}

// The seed's scenario 2: the secret of a bridge must be the same on every node. With a
// replicated configuration there is one secret; a second node that types another one is
// told so.
TEST(ConfigStateMachineTest, ConflictingCallbridgeSecretIsRefusedWithAReason) {
  Node node;
  ASSERT_TRUE(node.Run(AddCallbridge{"cb1", "kvgP1SRzWVabhiPVAb1", false}).ok());
  EXPECT_EQ(node.machine.config().callbridges.at("cb1").secret, "kvgP1SRzWVabhiPVAb1");
  uint64_t version = node.machine.config().version;
  EXPECT_EQ(version, 1u);

  // `callbridge add-secret cb1` with the same secret, as the seed does on each node: a no-op.
  EXPECT_TRUE(node.Run(AddCallbridge{"cb1", "kvgP1SRzWVabhiPVAb1", false}).ok());
  EXPECT_EQ(node.machine.config().version, version);

  // With a different secret: refused, and the CLI prints this.
  absl::Status status = node.Run(AddCallbridge{"cb1", "RJTmSh4smhLYguGpAb1", false});
  EXPECT_TRUE(absl::IsAlreadyExists(status));
  EXPECT_EQ(MessageOf(status),
            "callbridge cb1 already has a different secret on this cluster; use --force to "
            "replace it");
  EXPECT_EQ(node.machine.config().callbridges.at("cb1").secret, "kvgP1SRzWVabhiPVAb1");
  EXPECT_EQ(node.machine.config().version, version);

  // With --force: replaced.
  EXPECT_TRUE(node.Run(AddCallbridge{"cb1", "RJTmSh4smhLYguGpAb1", true}).ok());
  EXPECT_EQ(node.machine.config().callbridges.at("cb1").secret, "RJTmSh4smhLYguGpAb1");
  EXPECT_EQ(node.machine.config().version, node.machine.applied_index());
}

TEST(ConfigStateMachineTest, CallbridgeRulesAndDeletion) {
  Node node;
  EXPECT_TRUE(absl::IsInvalidArgument(node.Run(AddCallbridge{"CB1", "secret", false})));
  EXPECT_TRUE(absl::IsInvalidArgument(node.Run(AddCallbridge{"cb1", "two words", false})));
  EXPECT_EQ(MessageOf(node.Run(DeleteCallbridge{"cb9"})), "callbridge cb9 is not configured");
  ASSERT_TRUE(node.Run(AddCallbridge{"cb9", "secret", false}).ok());
  ASSERT_TRUE(node.Run(DeleteCallbridge{"cb9"}).ok());
  EXPECT_TRUE(node.machine.config().callbridges.empty());
  EXPECT_EQ(node.machine.applied_index(), 5u);  // refused entries are consumed too
  EXPECT_EQ(node.machine.config().version, 5u);
}

TEST(ConfigStateMachineTest, DomainAndBridgeAddressesMustFitTogether) {
  Node node;
  EXPECT_TRUE(absl::IsInvalidArgument(node.Run(SetDomain{"Example.com"})));
  EXPECT_TRUE(node.machine.config().domain.empty());
  std::string long_domain = Concat(std::string(63, 'a'), ".", std::string(63, 'b'), ".",
                                   std::string(63, 'c'), ".", std::string(59, 'd'));
  ASSERT_TRUE(node.Run(SetDomain{long_domain}).ok());
  EXPECT_TRUE(node.Run(AddCallbridge{"c", "secret", false}).ok());  // c.<domain>: 252 bytes
  EXPECT_THAT(MessageOf(node.Run(AddCallbridge{"cb1", "secret", false})),
              HasSubstr("longer than 253"));
  ASSERT_TRUE(node.Run(SetDomain{"example.com"}).ok());
  ASSERT_TRUE(node.Run(AddCallbridge{"cb1", "secret", false}).ok());
  std::string longer = Concat(std::string(63, 'a'), ".", std::string(63, 'b'), ".",
                              std::string(63, 'c'), ".", std::string(61, 'd'));
  EXPECT_THAT(MessageOf(node.Run(SetDomain{longer})), HasSubstr("callbridge c's address"));
  EXPECT_EQ(node.machine.config().domain, "example.com");
}

TEST(ConfigStateMachineTest, ListenAndTlsFiles) {
  Node node;
  ASSERT_TRUE(node.Run(SetListen{{"a", "b"}}).ok());
  EXPECT_EQ(node.machine.config().listen, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(absl::IsInvalidArgument(node.Run(SetListen{{"a", "a"}})));
  ASSERT_TRUE(node.Run(SetTlsFiles{{"/etc/k.key", "/etc/c.crt", ""}}).ok());
  EXPECT_EQ(node.machine.config().tls.key_path, "/etc/k.key");
  EXPECT_TRUE(absl::IsInvalidArgument(node.Run(SetTlsFiles{{"k.key", "/c.crt", ""}})));
  EXPECT_EQ(node.machine.config().tls.key_path, "/etc/k.key");
}

TEST(ConfigStateMachineTest, Users) {
  Node node;
  ASSERT_TRUE(node.Run(AddUser{"alice", MakeCredentials('a')}).ok());
  EXPECT_TRUE(node.Run(AddUser{"alice", MakeCredentials('a')}).ok());  // the same: no-op
  absl::Status status = node.Run(AddUser{"alice", MakeCredentials('b')});
  EXPECT_TRUE(absl::IsAlreadyExists(status));
  EXPECT_THAT(MessageOf(status), HasSubstr("user alice already exists"));
  EXPECT_EQ(node.machine.config().users.at("alice"), MakeCredentials('a'));
  ASSERT_TRUE(node.Run(SetUserCredentials{"alice", MakeCredentials('b')}).ok());
  EXPECT_EQ(node.machine.config().users.at("alice"), MakeCredentials('b'));
  EXPECT_TRUE(absl::IsNotFound(node.Run(SetUserCredentials{"bob", MakeCredentials('b')})));
  EXPECT_TRUE(absl::IsInvalidArgument(node.Run(AddUser{"bob", config::UserCredentials{}})));
  EXPECT_TRUE(absl::IsInvalidArgument(node.Run(AddUser{"Bob", MakeCredentials('b')})));
  ASSERT_TRUE(node.Run(DeleteUser{"alice"}).ok());
  EXPECT_TRUE(absl::IsNotFound(node.Run(DeleteUser{"alice"})));
  EXPECT_TRUE(node.machine.config().users.empty());
}

// What a mirror of the configuration gets with each applied entry: the command, holding the
// very credentials the configuration holds (a million users are not copied twice).
TEST(ConfigStateMachineTest, TheDecodedCommandSharesItsUsersWithTheConfig) {
  ConfigStateMachine machine;
  std::optional<ConfigCommand> decoded;
  ASSERT_TRUE(machine
                  .Apply(Entry{1, 1, EntryType::kNormal,
                               EncodeConfigCommand(ImportUsers{
                                   {{"alice", MakeCredentials('a')}, {"bob", MakeCredentials('b')}},
                                   false})},
                         &decoded)
                  .ok());
  ASSERT_TRUE(decoded.has_value());
  const auto& batch = std::get<ImportUsers>(*decoded);
  ASSERT_EQ(batch.users.size(), 2u);
  EXPECT_TRUE(batch.users[0].credentials.SharesWith(machine.config().users.at("alice")));
  EXPECT_TRUE(batch.users[1].credentials.SharesWith(machine.config().users.at("bob")));

  ASSERT_TRUE(
      machine
          .Apply(Entry{1, 2, EntryType::kNormal,
                       EncodeConfigCommand(SetUserCredentials{"alice", MakeCredentials('c')})},
                 &decoded)
          .ok());
  const auto& set = std::get<SetUserCredentials>(*decoded);
  EXPECT_TRUE(set.credentials.SharesWith(machine.config().users.at("alice")));
  EXPECT_EQ(machine.config().users.at("alice"), MakeCredentials('c'));

  // Refused (bob exists with other credentials): decoded all the same, nothing shared.
  EXPECT_TRUE(absl::IsAlreadyExists(machine.Apply(
      Entry{1, 3, EntryType::kNormal, EncodeConfigCommand(AddUser{"bob", MakeCredentials('x')})},
      &decoded)));
  EXPECT_FALSE(
      std::get<AddUser>(*decoded).credentials.SharesWith(machine.config().users.at("bob")));
  // An entry that does not decode leaves nothing.
  decoded.reset();
  EXPECT_FALSE(machine.Apply(Entry{1, 4, EntryType::kNormal, "\xff"}, &decoded).ok());
  EXPECT_FALSE(decoded.has_value());
}

TEST(ConfigStateMachineTest, CheckAnswersAsApplyWouldWithoutChangingAnything) {
  Node node;
  ASSERT_TRUE(node.Run(AddCallbridge{"cb1", "one", false}).ok());
  std::vector<ConfigCommand> commands = EveryKindOfCommand();
  commands.push_back(AddCallbridge{"cb1", "two", false});
  commands.push_back(DeleteUser{"nobody"});
  for (const ConfigCommand& command : commands) {
    config::Config before = node.machine.config();
    absl::Status checked = node.machine.Check(command);
    EXPECT_EQ(node.machine.config(), before);
    EXPECT_EQ(node.Run(command), checked);
  }
}

TEST(ConfigStateMachineTest, NoopsAndUndecodableEntriesChangeNothing) {
  Node node;
  EXPECT_TRUE(node.Apply(Entry{1, 1, EntryType::kNoop, ""}).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(node.Apply(Entry{1, 2, EntryType::kNormal, "junk"})));
  EXPECT_TRUE(absl::IsInvalidArgument(node.Apply(Entry{1, 3, static_cast<EntryType>(9), "junk"})));
  EXPECT_EQ(node.machine.applied_index(), 3u);
  EXPECT_EQ(node.machine.config(), config::Config());
}

TEST(ConfigStateMachineTest, ReplayedEntriesAreIgnoredAndGapsAreFatal) {
  Node node;
  ASSERT_TRUE(node.Run(AddCallbridge{"cb1", "one", false}).ok());
  // A replay of entry 1 after a restart from a snapshot that already holds it.
  EXPECT_TRUE(node.machine
                  .Apply(Entry{1, 1, EntryType::kNormal,
                               EncodeConfigCommand(AddCallbridge{"cb1", "two", true})})
                  .ok());
  EXPECT_EQ(node.machine.config().callbridges.at("cb1").secret, "one");
  EXPECT_DEATH((void)node.machine.Apply(Entry{1, 3, EntryType::kNoop, ""}), "out of order");
}

// The seed's scenario 3: a node reset and rejoined at the same address must not be listed
// twice.
TEST(ConfigStateMachineTest, MembershipIsMirroredWithUniqueAddresses) {
  Node node;
  ASSERT_TRUE(node.Member(EntryType::kAddMember, 0xa1, "10.0.0.1:7000").ok());
  ASSERT_TRUE(node.Member(EntryType::kAddMember, 0xb2, "10.0.0.2:7000").ok());
  ASSERT_TRUE(node.Member(EntryType::kAddMember, 0xc3, "10.0.0.3:7000").ok());
  EXPECT_EQ(node.machine.config().members.size(), 3u);
  uint64_t version = node.machine.config().version;
  ASSERT_TRUE(node.Member(EntryType::kAddMember, 0xc3, "10.0.0.3:7000").ok());
  EXPECT_EQ(node.machine.config().version, version);
  // Node 3 wiped and rejoined with a new id at the same address.
  ASSERT_TRUE(node.Member(EntryType::kAddMember, 0xd4, "10.0.0.3:7000").ok());
  EXPECT_EQ(node.machine.config().members,
            (std::map<uint64_t, std::string>{
                {0xa1, "10.0.0.1:7000"}, {0xb2, "10.0.0.2:7000"}, {0xd4, "10.0.0.3:7000"}}));
  ASSERT_TRUE(node.Member(EntryType::kRemoveMember, 0xb2, "").ok());
  EXPECT_FALSE(node.machine.config().members.contains(0xb2));
  EXPECT_TRUE(node.Member(EntryType::kRemoveMember, 0xb2, "").ok());  // already gone
  EXPECT_TRUE(absl::IsInvalidArgument(
      node.Apply(Entry{1, node.machine.applied_index() + 1, EntryType::kAddMember, "short"})));
  EXPECT_TRUE(absl::IsInvalidArgument(node.Member(EntryType::kAddMember, 0xe5, "")));
  EXPECT_TRUE(node.machine.config().Validate().ok());
}

// A snapshot made a few entries at a time (what a node does at size, between other work)
// has the bytes of one made at once, whatever the slice.
TEST(ConfigStateMachineTest, SnapshotInStepsIsTheSnapshot) {
  Node node;
  for (const ConfigCommand& command : EveryKindOfCommand()) (void)node.Run(command);
  for (int i = 0; i < 5; ++i) {
    const absl::Status added =
        node.Run(AddCallbridge{"step" + std::to_string(i), "secret" + std::to_string(i)});
    ASSERT_TRUE(added.ok()) << added;
    ASSERT_TRUE(
        node.Run(AddUser{"user" + std::to_string(i), MakeCredentials(static_cast<char>('a' + i))})
            .ok());
  }
  const std::string whole = node.machine.Snapshot();
  for (size_t slice : {size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{1000}}) {
    SnapshotEncoder encoder(node.machine);
    EXPECT_EQ(encoder.index(), node.machine.applied_index());
    std::string out;
    int steps = 0;
    while (!encoder.Step(slice, &out)) ASSERT_LT(++steps, 100);
    EXPECT_EQ(out, whole) << "slice " << slice;
  }
  // An empty machine too.
  ConfigStateMachine empty;
  SnapshotEncoder encoder(empty);
  std::string out;
  while (!encoder.Step(1, &out)) {
  }
  EXPECT_EQ(out, empty.Snapshot());
}

TEST(ConfigStateMachineTest, SnapshotRestoresTheWholeState) {
  Node node;
  for (const ConfigCommand& command : EveryKindOfCommand()) (void)node.Run(command);
  ASSERT_TRUE(node.Member(EntryType::kAddMember, 7, "10.0.0.7:7000").ok());
  std::string snapshot = node.machine.Snapshot();

  ConfigStateMachine restored;
  ASSERT_TRUE(restored.Restore(snapshot).ok());
  EXPECT_EQ(restored.config(), node.machine.config());
  EXPECT_EQ(restored.applied_index(), node.machine.applied_index());
  EXPECT_EQ(restored.Snapshot(), snapshot);

  // Damaged data is refused and leaves the state alone; empty data is the initial state.
  for (size_t cut = 0; cut < snapshot.size(); cut += 7) {
    if (cut == 0) continue;
    EXPECT_FALSE(restored.Restore(snapshot.substr(0, cut)).ok());
    EXPECT_EQ(restored.config(), node.machine.config());
  }
  std::mt19937_64 random(5);
  for (int round = 0; round < 5000; ++round) {
    std::string bytes = snapshot.substr(0, random() % snapshot.size());
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>(random()));
    (void)restored.Restore(bytes);
  }
  ASSERT_TRUE(restored.Restore("").ok());
  EXPECT_EQ(restored.config(), config::Config());
  EXPECT_EQ(restored.applied_index(), 0u);
}

// A random but valid-looking command: many collide (same names, secrets, users), so that
// the log mixes accepted, no-op and refused commands.
ConfigCommand RandomCommand(std::mt19937_64& random) {
  auto pick = [&](int n) { return static_cast<int>(random() % n); };
  std::string bridge = Concat("cb", std::to_string(pick(8)));
  std::string user = Concat("user", std::to_string(pick(6)));
  switch (pick(11)) {
    case 0:
      return SetDomain{pick(2) == 0 ? "example.com" : "tptac9.com"};
    case 1:
      return SetListen{{pick(2) == 0 ? "a" : "10.0.0.1"}};
    case 2:
      return AddCallbridge{bridge, Concat("secret", std::to_string(pick(3))), false};
    case 3:
      return AddCallbridge{bridge, Concat("secret", std::to_string(pick(3))), true};
    case 4:
      return DeleteCallbridge{bridge};
    case 5:
      return AddUser{user, MakeCredentials(static_cast<char>('a' + pick(3)))};
    case 6:
      return DeleteUser{user};
    case 7:
      return SetUserCredentials{user, MakeCredentials(static_cast<char>('a' + pick(3)))};
    case 8:
      return ImportCallbridges{{{bridge, Concat("secret", std::to_string(pick(3))), pick(2) == 0},
                                {Concat("cb", std::to_string(8 + pick(2))), "secret0", false}}};
    case 9:
      return ImportUsers{{{user, MakeCredentials(static_cast<char>('a' + pick(3)))}}, pick(2) == 0};
    default:
      return AddCallbridge{"Bad Name", "x", false};
  }
}

TEST(ConfigStateMachineTest, AnImportBatchIsAppliedWholeOrNotAtAll) {
  Node node;
  ASSERT_TRUE(node.Run(SetDomain{"example.com"}).ok());
  ASSERT_TRUE(node.Run(AddCallbridge{"cb1", "secret-one", false}).ok());
  const config::Config before = node.machine.config();
  // The third bridge conflicts: nothing of the batch is applied, and the error names it.
  const ImportCallbridges conflicting{{{"cb8", "secret-eight", false},
                                       {"cb9", "secret-nine", false},
                                       {"cb1", "secret-other", false}}};
  EXPECT_EQ(MessageOf(node.machine.Check(conflicting)), MessageOf(node.Run(conflicting)));
  const absl::Status refused = node.Run(conflicting);
  EXPECT_TRUE(absl::IsAlreadyExists(refused)) << refused;
  EXPECT_THAT(MessageOf(refused), ::testing::StartsWith("item 3: callbridge cb1 already has"));
  EXPECT_EQ(node.machine.config().callbridges, before.callbridges);
  // A name twice in one batch is refused the same way.
  const absl::Status twice =
      node.Run(ImportCallbridges{{{"cb8", "secret-eight", false}, {"cb8", "secret-eight", false}}});
  EXPECT_THAT(MessageOf(twice), ::testing::StartsWith("item 2: callbridge cb8 appears twice"));
  // With force on the conflicting item, the whole batch is applied in one entry.
  ImportCallbridges forced = conflicting;
  forced.bridges[2].force = true;
  ASSERT_TRUE(node.Run(forced).ok());
  EXPECT_EQ(node.machine.config().callbridges.size(), 3u);
  EXPECT_EQ(node.machine.config().callbridges.at("cb1").secret, "secret-other");
  EXPECT_EQ(node.machine.config().version, node.machine.applied_index());
  // The same batch again changes nothing (an import can be rerun), and leaves the version.
  const uint64_t version = node.machine.config().version;
  ASSERT_TRUE(node.Run(forced).ok());
  EXPECT_EQ(node.machine.config().version, version);
  // Bad items are refused by their place; an empty batch is refused.
  EXPECT_THAT(MessageOf(node.Run(
                  ImportCallbridges{{{"cb5", "ok-secret", false}, {"Bad Name", "s", false}}})),
              ::testing::StartsWith("item 2: "));
  EXPECT_TRUE(absl::IsInvalidArgument(node.Run(ImportCallbridges{})));
}

TEST(ConfigStateMachineTest, AnImportOfUsersReplacesOnlyWhenAsked) {
  Node node;
  ASSERT_TRUE(node.Run(AddUser{"alice", MakeCredentials('a')}).ok());
  const ImportUsers batch{{{"bob", MakeCredentials('b')}, {"alice", MakeCredentials('c')}}, false};
  const absl::Status refused = node.Run(batch);
  EXPECT_THAT(MessageOf(refused), ::testing::StartsWith("item 2: user alice already exists"));
  EXPECT_EQ(node.machine.config().users.size(), 1u);
  ImportUsers replacing = batch;
  replacing.replace = true;
  ASSERT_TRUE(node.Run(replacing).ok());
  EXPECT_EQ(node.machine.config().users.at("alice"), MakeCredentials('c'));
  EXPECT_EQ(node.machine.config().users.at("bob"), MakeCredentials('b'));
}

TEST(ConfigStateMachineTest, AnImportStopsAtTheLimitNamingTheItem) {
  Node node;
  ImportCallbridges fill;
  for (size_t i = 0; i + 1 < config::kCallbridgesMax; ++i) {
    fill.bridges.push_back({Concat("cb", std::to_string(i)), "secret-value", false});
    if (fill.bridges.size() == kImportBatchItemsMax) {
      ASSERT_TRUE(node.Run(fill).ok());
      fill.bridges.clear();
    }
  }
  ASSERT_TRUE(node.Run(fill).ok());
  ASSERT_EQ(node.machine.config().callbridges.size(), config::kCallbridgesMax - 1);
  // Room for one: the second new bridge is where the batch is refused, and none is added.
  const absl::Status full = node.Run(ImportCallbridges{{{"cb0", "secret-value", false},
                                                        {"new1", "secret-value", false},
                                                        {"new2", "secret-value", false}}});
  EXPECT_TRUE(absl::IsResourceExhausted(full)) << full;
  EXPECT_THAT(MessageOf(full), ::testing::StartsWith("item 3: cannot add callbridge new2"));
  EXPECT_EQ(node.machine.config().callbridges.size(), config::kCallbridgesMax - 1);
}

TEST(ConfigStateMachineTest, TwoNodesApplyingTheSameLogEndEqual) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(Concat("seed ", std::to_string(seed)));
    std::mt19937_64 random(seed);
    std::vector<Entry> log;
    for (raft::Index index = 1; index <= 300; ++index) {
      Entry entry{1 + index / 100, index, EntryType::kNormal, ""};
      int kind = static_cast<int>(random() % 20);
      if (kind == 0) {
        entry.type = EntryType::kNoop;
      } else if (kind == 1) {
        entry.type = EntryType::kAddMember;
        entry.data =
            raft::EncodeMember({1 + random() % 5, Concat("10.0.0.", std::to_string(random() % 4))});
      } else if (kind == 2) {
        entry.type = EntryType::kRemoveMember;
        entry.data = raft::EncodeMember({1 + random() % 5, ""});
      } else {
        entry.data = EncodeConfigCommand(RandomCommand(random));
      }
      log.push_back(std::move(entry));
    }

    ConfigStateMachine first;
    ConfigStateMachine second;
    ConfigStateMachine from_snapshot;
    std::vector<absl::Status> first_results;
    for (const Entry& entry : log) first_results.push_back(first.Apply(entry));
    for (size_t i = 0; i < log.size(); ++i) {
      EXPECT_EQ(second.Apply(log[i]), first_results[i]) << "entry " << log[i].index;
      if (i == 150) {
        ASSERT_TRUE(from_snapshot.Restore(second.Snapshot()).ok());
      } else if (i > 150) {
        EXPECT_EQ(from_snapshot.Apply(log[i]), first_results[i]);
      }
    }
    EXPECT_EQ(first.config(), second.config());
    EXPECT_EQ(first.Snapshot(), second.Snapshot());
    EXPECT_EQ(from_snapshot.Snapshot(), first.Snapshot());
    EXPECT_TRUE(first.config().Validate().ok());
    // Something happened: the log was not all refusals.
    EXPECT_FALSE(first.config().callbridges.empty() && first.config().users.empty());
  }
}

}  // namespace
}  // namespace stanzad::cluster
