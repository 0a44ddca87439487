#include "cluster/node/cluster_node.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/ascii.h"
#include "cluster/raft/message_codec.h"
#include "cluster/storage/atomic_file.h"
#include "core/base/concat.h"
#include "core/base/hex.h"
#include "core/base/log.h"

namespace stanzad::cluster {
namespace {

// What a node that is not a member (any more) is told, by the peer check and by a leader.
absl::Status NotAMember(raft::NodeId id) {
  return absl::PermissionDeniedError(
      Concat("node ", std::to_string(id),
             " is not a member of this cluster (removed?); to bring it back, reset it and join "
             "it with a token"));
}

int64_t MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

// Loads a snapshot's state into *machine. Refused unless the state is at the entry the
// snapshot's metadata names: the entries after it are applied to it one by one, and one
// skipped is a CHECK failure (ConfigStateMachine::Apply), so a hostile leader's snapshot
// would otherwise stop the daemon. *machine is unchanged on error.
absl::Status RestoreSnapshot(const raft::Snapshot& snapshot, ConfigStateMachine* machine) {
  ConfigStateMachine restored;
  if (absl::Status loads = restored.Restore(snapshot.data); !loads.ok()) return loads;
  if (restored.applied_index() != snapshot.metadata.index) {
    return absl::InvalidArgumentError(Concat(
        "configuration snapshot: its state is at entry ", std::to_string(restored.applied_index()),
        " but its metadata says entry ", std::to_string(snapshot.metadata.index)));
  }
  *machine = std::move(restored);
  return absl::OkStatus();
}

std::string RoleText(raft::Role role) {
  switch (role) {
    case raft::Role::kLeader:
      return "LEADER";
    case raft::Role::kFollower:
      return "FOLLOWER";
    case raft::Role::kPreCandidate:
    case raft::Role::kCandidate:
      return "CANDIDATE";
  }
  return "FOLLOWER";
}

constexpr std::string_view kClusterKeyFile = "link_key";

uint64_t ClockSeed() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1'000'000'007u + static_cast<uint64_t>(t.tv_nsec);
}

}  // namespace

ClusterNode::ClusterNode(const ClusterNodeOptions& options) : options_(options) {}

ClusterNode::~ClusterNode() = default;

absl::StatusOr<std::unique_ptr<ClusterNode>> ClusterNode::Open(const ClusterNodeOptions& options) {
  std::unique_ptr<ClusterNode> node(new ClusterNode(options));
  if (absl::Status started = node->Start(); !started.ok()) return started;
  return node;
}

absl::Status ClusterNode::Start() {
  // Until the first Tick: the same clock the control loop uses.
  now_ms_ = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::steady_clock::now().time_since_epoch())
                                      .count());
  absl::StatusOr<std::unique_ptr<storage::RaftStore>> store =
      storage::RaftStore::Open(options_.dir);
  if (!store.ok()) return store.status();
  store_ = std::move(*store);
  raft::PersistentState state{store_->hard_state(), store_->snapshot(), store_->entries()};
  committed_at_start_ = state.hard_state.commit;
  if (state.snapshot.metadata.index > 0) {
    if (absl::Status restored = RestoreSnapshot(state.snapshot, &machine_); !restored.ok()) {
      // The node still opens (it serves its local configuration); its Raft stays stopped
      // and every status says why, instead of a daemon that will not start.
      failed_ = absl::DataLossError(
          Concat("the cluster snapshot in ", options_.dir, " does not load (",
                 std::string(restored.message()),
                 "); move that directory away and join the node to its cluster again"));
      LogEvent(LogLevel::kError, "cluster_snapshot_bad",
               Concat("dir=", options_.dir, " reason=", LogQuote(std::string(restored.message()))));
    }
  }
  if (absl::StatusOr<std::string> key =
          storage::PosixFs()->ReadFile(Concat(options_.dir, "/", kClusterKeyFile));
      key.ok()) {
    std::optional<std::string> bytes = BytesOfHex(std::string(absl::StripAsciiWhitespace(*key)));
    if (bytes && bytes->size() == kClusterKeyBytes) {
      cluster_key_ = *bytes;
    } else {
      LogEvent(LogLevel::kError, "cluster_key_bad",
               Concat("dir=", options_.dir, " fix=",
                      LogQuote("the cluster key file is damaged: reset this node and join it "
                               "again with a token")));
    }
  }
  raft::Config config;
  config.id = store_->node_id();
  config.election_ticks = options_.election_ticks;
  config.heartbeat_ticks = options_.heartbeat_ticks;
  config.random_seed = options_.random_seed != 0 ? options_.random_seed : config.id ^ ClockSeed();
  absl::StatusOr<raft::Raft> raft = raft::Raft::Create(config, std::move(state));
  if (!raft.ok()) return raft.status();
  raft_.emplace(std::move(*raft));
  soft_ = {raft_->leader(), raft_->role()};
  if (committed_at_start_ > 0) {
    // One line for what was restored; the members in it were announced when they joined.
    LogEvent(LogLevel::kInfo, "cluster_state_loaded",
             Concat("id=", std::to_string(store_->node_id()),
                    " members=", std::to_string(raft_->members().size()),
                    " commit=", std::to_string(committed_at_start_)));
  }
  transport_ = std::make_unique<PeerTransport>(
      LinkSelf{store_->node_id(), options_.address}, options_.limits,
      [this](LinkId link, const LinkPeer& peer, Frame frame) {
        OnFrame(link, peer, std::move(frame));
      },
      [this](LinkId link, raft::NodeId peer, const absl::Status& reason) {
        OnLinkClosed(link, peer, reason);
      });
  if (options_.tls_server && options_.tls_client) {
    transport_->set_tls(options_.tls_server, options_.tls_client);
  }
  transport_->set_cluster_key(cluster_key_);
  transport_->set_peer_check([this](const LinkPeer& peer) { return CheckPeer(peer); });
  transport_->set_token_lookup([this](uint64_t id) -> std::optional<std::string> {
    if (!failed_.ok()) return std::nullopt;
    const auto& tokens = machine_.config().join_tokens;
    auto it = tokens.find(id);
    if (it == tokens.end() || it->second.expires_unix_s <= UnixNowS()) return std::nullopt;
    return it->second.secret;
  });
  Process();
  return absl::OkStatus();
}

absl::Status ClusterNode::CheckPeer(const LinkPeer& peer) const {
  if (peer.join_token != 0) return absl::OkStatus();  // bound when its token is used
  const auto& bound = machine_.config().member_identities;
  if (auto it = bound.find(peer.id); it != bound.end() && !peer.identity.empty()) {
    if (EqualInConstantTime(it->second, peer.identity)) return absl::OkStatus();
    return absl::PermissionDeniedError(
        Concat("node ", std::to_string(peer.id),
               " presented a certificate whose key is not the one bound to it when it joined; if "
               "its certificate was renewed with a new key, remove it (cluster remove) and join it "
               "again with a token"));
  }
  // Not in a cluster yet (joining): the key is all it knows. A member or a node being
  // added (its token used, so bound or about to be listed) may talk to a member.
  if (!raft_->is_member() || raft_->members().count(peer.id) != 0 || bound.count(peer.id) != 0) {
    return absl::OkStatus();
  }
  return NotAMember(peer.id);
}

uint64_t ClusterNode::UnixNowS() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

absl::Status ClusterNode::SaveClusterKey(const std::string& key) {
  storage::Fs& fs = *storage::PosixFs();
  if (absl::Status made = fs.CreateDir(options_.dir); !made.ok() && !absl::IsAlreadyExists(made)) {
    return made;
  }
  if (absl::Status saved =
          storage::WriteFileAtomically(fs, options_.dir, kClusterKeyFile, HexOf(key) + "\n");
      !saved.ok()) {
    return saved;
  }
  cluster_key_ = key;
  transport_->set_cluster_key(key);
  return absl::OkStatus();
}

absl::Status ClusterNode::Listen(const net::Endpoint& endpoint) {
  return transport_->Listen(endpoint);
}

void ClusterNode::Disconnect() {
  transport_->StopListening();
  transport_->CloseAll(absl::UnavailableError("cluster disabled on this node"));
}

bool ClusterNode::has_state() const { return raft_->is_member() || raft_->last_index() > 0; }

std::string ClusterNode::LeaderAddress() const {
  auto it = raft_->members().find(raft_->leader());
  return it == raft_->members().end() ? "" : it->second.address;
}

// ---------------------------------------------------------------------------
// Requests from the operator on this node.

void ClusterNode::Initialize(std::vector<ConfigCommand> seed, Done done) {
  if (!failed_.ok()) return done(failed_);
  if (has_state()) {
    return done(absl::FailedPreconditionError(
        "this node is already in a cluster ('stanzactl cluster status' shows it); to start "
        "over, remove it from the cluster and reset it first"));
  }
  if (!options_.tls_identity.empty()) {
    seed.push_back(SetMemberIdentity{id(), options_.tls_identity});
  }
  // The key first: a cluster this node leads must never exist without it.
  if (absl::Status saved = SaveClusterKey(RandomBytes(kClusterKeyBytes)); !saved.ok()) {
    return done(absl::InternalError(Concat("cannot store the cluster key in ", options_.dir, ": ",
                                           std::string(saved.message()))));
  }
  absl::StatusOr<raft::PersistentState> state =
      raft::Raft::Bootstrap({raft::Member{id(), options_.address}});
  if (!state.ok()) return done(state.status());
  absl::Status saved = store_->Append(state->entries);
  if (saved.ok()) saved = store_->SetHardState(state->hard_state);
  if (saved.ok()) saved = store_->Sync();
  if (!saved.ok()) {
    Fail(saved);
    return done(saved);
  }
  raft::Config config;
  config.id = id();
  config.election_ticks = options_.election_ticks;
  config.heartbeat_ticks = options_.heartbeat_ticks;
  config.random_seed = id() ^ ClockSeed();
  absl::StatusOr<raft::Raft> raft = raft::Raft::Create(config, std::move(*state));
  if (!raft.ok()) return done(raft.status());
  raft_.emplace(std::move(*raft));
  LogEvent(LogLevel::kInfo, "cluster_initialized",
           Concat("id=", std::to_string(id()), " address=", options_.address));
  // The node leads within an election timeout; then the seed commands go in, one after
  // another (each proposed once the one before is applied, so that a large configuration
  // never meets Raft's bound on uncommitted bytes), and `done` runs when the last one is
  // applied, or at the first refusal.
  Process();
  if (seed.empty()) {
    leader_waiters_.push_back({std::move(done), now_ms_ + kRequestTimeoutMs});
    return;
  }
  ProposeInTurn(std::make_shared<std::vector<ConfigCommand>>(std::move(seed)), 0,
                std::make_shared<Done>(std::move(done)));
}

void ClusterNode::ProposeInTurn(std::shared_ptr<std::vector<ConfigCommand>> commands, size_t next,
                                std::shared_ptr<Done> done) {
  if (next == commands->size()) return (*done)(absl::OkStatus());
  Propose((*commands)[next], [this, commands, next, done](const absl::Status& status) {
    if (!status.ok()) return (*done)(status);
    ProposeInTurn(commands, next + 1, done);
  });
}

void ClusterNode::CreateJoinToken(uint64_t ttl_s, TokenDone done) {
  if (cluster_key_.size() != kClusterKeyBytes) {
    return done(absl::FailedPreconditionError(
        "this node has no cluster key (its cluster was formed before links were "
        "authenticated, or state_dir/cluster/link_key is damaged): a token would be useless"));
  }
  JoinToken token;
  token.id = 0;
  while (token.id == 0) {
    const std::string id = RandomBytes(8);
    for (const char byte : id) token.id = token.id << 8 | static_cast<unsigned char>(byte);
  }
  token.secret = RandomBytes(kJoinTokenSecretBytes);
  const uint64_t now = UnixNowS();
  Propose(AddJoinToken{token.id, token.secret, now + std::max<uint64_t>(ttl_s, 1), now},
          [token, done = std::move(done)](const absl::Status& status) {
            if (!status.ok()) return done(status);
            done(token);
          });
}

void ClusterNode::Join(const std::string& address, const JoinToken& token, Done done) {
  if (!failed_.ok()) return done(failed_);
  if (raft_->is_member()) {
    return done(absl::FailedPreconditionError(
        "this node is already a member of a cluster ('stanzactl cluster status' shows it)"));
  }
  if (join_done_) return done(absl::FailedPreconditionError("a join is already in progress"));
  join_done_ = std::move(done);
  join_deadline_ms_ = now_ms_ + kRequestTimeoutMs;
  Request request{next_request_id_++, RequestKind::kJoin,
                  raft::EncodeMember({id(), options_.address})};
  ForwardedRequest forwarded;
  forwarded.request = request;
  forwarded.deadline_ms = now_ms_ + kRequestTimeoutMs;
  forwarded.token = token;
  forwarded.done = [this](const absl::Status& status) {
    if (!status.ok()) {
      Done join = std::move(join_done_);
      join_done_ = nullptr;
      if (join) join(status);
    }
    // OK: the leader used the token and sent the cluster key; done once this node is a
    // member with the configuration (Process), or at join_deadline_ms_.
  };
  auto [it, inserted] = forwarded_.emplace(request.id, std::move(forwarded));
  SendForwarded(it->second, address);
}

void ClusterNode::Propose(const ConfigCommand& command, Done done) {
  if (!failed_.ok()) return done(failed_);
  if (!has_state()) {
    return done(absl::FailedPreconditionError(
        "this node is not in a cluster (stanzactl cluster initialize, or cluster join HOST)"));
  }
  if (raft_->role() == raft::Role::kLeader) {
    if (ProposeAsLeader(command, done)) Process();
    return;
  }
  if (raft_->leader() != raft::kNoNode && raft_->leader() != id()) {
    ForwardToLeader({next_request_id_++, RequestKind::kPropose, EncodeConfigCommand(command)},
                    std::move(done));
    return;
  }
  waiting_.push_back({command, std::move(done), now_ms_ + kRequestTimeoutMs});
}

bool ClusterNode::ProposeAsLeader(const ConfigCommand& command, Done& done) {
  if (absl::Status check = machine_.Check(command); !check.ok()) {
    done(check);
    return false;
  }
  absl::StatusOr<raft::Index> index = raft_->Propose(EncodeConfigCommand(command));
  if (!index.ok()) {
    done(index.status());
    return false;
  }
  proposals_[*index] = {raft_->term(), std::move(done)};
  return true;
}

void ClusterNode::Remove(const RemoveTarget& target, Done done) {
  if (!failed_.ok()) return done(failed_);
  if (!has_state()) {
    return done(absl::FailedPreconditionError("this node is not in a cluster"));
  }
  Request request{next_request_id_++, RequestKind::kRemove, EncodeRemoveTarget(target)};
  if (raft_->role() == raft::Role::kLeader) {
    // Handled as if it came from a peer, answered through `done`.
    ForwardedRequest local;
    local.request = request;
    local.done = std::move(done);
    local.deadline_ms = now_ms_ + kRequestTimeoutMs;
    forwarded_.emplace(request.id, std::move(local));
    OnRequest(kNoLink, LinkPeer{id(), 0, ""}, request);
    return;
  }
  if (raft_->leader() == raft::kNoNode) {
    return done(absl::UnavailableError(
        "the cluster has no leader now (no quorum?); try again when 'cluster status' shows one"));
  }
  ForwardToLeader(request, std::move(done));
}

void ClusterNode::ForwardToLeader(Request request, Done done) {
  ForwardedRequest forwarded;
  forwarded.request = std::move(request);
  forwarded.done = std::move(done);
  forwarded.deadline_ms = now_ms_ + kRequestTimeoutMs;
  auto [it, inserted] = forwarded_.emplace(forwarded.request.id, std::move(forwarded));
  SendForwarded(it->second, LeaderAddress());
}

void ClusterNode::SendForwarded(ForwardedRequest& forwarded, const std::string& address) {
  forwarded.target_address = address;
  forwarded.shared_link = false;
  // To a member, the request goes on the link Raft already keeps to it: no connect and
  // handshake per change, and no one-off links for the leader to count against this
  // node's address. (A join has no such link: its token authenticates a one-off.)
  if (!forwarded.token.has_value()) {
    for (const auto& [member, entry] : raft_->members()) {
      if (member == id() || entry.address != address) continue;
      const LinkId link = transport_->LinkIdTo(member);
      if (link != kNoLink &&
          transport_->SendOn(link, FrameType::kRequest, EncodeRequest(forwarded.request))) {
        forwarded.link = link;
        forwarded.shared_link = true;
        return;
      }
      break;
    }
  }
  absl::Status error;
  forwarded.link = transport_->Dial(address, forwarded.token, now_ms_, &error);
  if (forwarded.link == kNoLink ||
      !transport_->SendOn(forwarded.link, FrameType::kRequest, EncodeRequest(forwarded.request))) {
    Done done = std::move(forwarded.done);
    forwarded_.erase(forwarded.request.id);
    done(absl::UnavailableError(
        Concat("cannot reach ", address, ": ", std::string(error.message()))));
  }
}

// ---------------------------------------------------------------------------
// Frames from peers.

void ClusterNode::OnFrame(LinkId link, const LinkPeer& peer, Frame frame) {
  if (!failed_.ok()) return;
  const auto reject = [&](std::string_view why) {
    LogEvent(LogLevel::kWarning, "cluster_frame_rejected",
             Concat("peer=", std::to_string(peer.id), " reason=", LogQuote(std::string(why))));
  };
  // A join token's link carries the join and its answer, nothing else.
  if (peer.join_token != 0 && frame.type != FrameType::kRequest &&
      frame.type != FrameType::kReply) {
    return reject("a joining node's link may only ask to join");
  }
  switch (frame.type) {
    case FrameType::kRaft:
      return OnRaftMessage(peer, frame.payload, raft::MessageLimits{}.frame_bytes_max);
    case FrameType::kRaftPart: {
      // Only a leader sends snapshots (and it sends an append first, which makes it this
      // node's leader): parts from anyone else could void the one under way.
      if (peer.id != raft_->leader()) return reject("a message in parts from a non-leader");
      absl::StatusOr<std::optional<RaftPartAssembler::Whole>> whole =
          part_assembler_.Add(peer.id, frame.payload, now_ms_);
      if (!whole.ok()) return reject(std::string(whole.status().message()));
      if (whole->has_value()) {
        received_ms_ = now_ms_ - (*whole)->first_ms;
        OnRaftMessage(peer, (*whole)->bytes, kRaftMessageBytesMax);
      }
      return;
    }
    case FrameType::kRequest: {
      absl::StatusOr<Request> request = DecodeRequest(frame.payload);
      if (request.ok()) OnRequest(link, peer, *request);
      return;
    }
    case FrameType::kReply: {
      absl::StatusOr<struct Reply> reply = DecodeReply(frame.payload);
      if (reply.ok()) OnReply(link, *reply);
      return;
    }
    case FrameType::kRoutes:
    case FrameType::kStanza:
    case FrameType::kAck:
    case FrameType::kAckRelay:
    case FrameType::kAbort:
    case FrameType::kDataPlane:
      if (on_data_ && raft_->members().count(peer.id) != 0) on_data_(peer.id, frame);
      return;
    default:
      return;
  }
}

void ClusterNode::OnRaftMessage(const LinkPeer& peer, std::string_view bytes, size_t bytes_max) {
  const auto reject = [&](std::string_view why) {
    LogEvent(LogLevel::kWarning, "cluster_frame_rejected",
             Concat("peer=", std::to_string(peer.id), " reason=", LogQuote(std::string(why))));
  };
  absl::StatusOr<raft::Message> message =
      raft::DecodeMessage(bytes, raft::MessageLimits{.frame_bytes_max = bytes_max});
  if (!message.ok()) {
    LogEvent(LogLevel::kWarning, "cluster_bad_message",
             "reason=" + LogQuote(std::string(message.status().message())));
    return;
  }
  if (message->to != id()) return;  // for a former incarnation of this address
  if (message->from != peer.id) return reject("a Raft message from another node's link");
  // Parts carry snapshots, nothing else: a frame's bound holds for every other message.
  if (bytes_max > raft::MessageLimits{}.frame_bytes_max && message->snapshot == nullptr) {
    return reject("a Raft message in parts without a snapshot");
  }
  // An entry the store would refuse would stop this node's Raft for good: refused here.
  for (const raft::Entry& entry : message->entries) {
    if (entry.data.size() > storage::kEntryDataBytesMax) {
      return reject("a Raft entry larger than 16 MiB");
    }
  }
  // A snapshot Raft may install is decoded into scratch first: Raft stores what it is given,
  // and a snapshot this node cannot load would stop it for good. (One at or below the
  // commit index is only answered: not worth decoding.)
  if (message->snapshot != nullptr && message->snapshot->metadata.index > raft_->commit_index()) {
    const auto start = std::chrono::steady_clock::now();
    ConfigStateMachine scratch;
    if (absl::Status loads = RestoreSnapshot(*message->snapshot, &scratch); !loads.ok()) {
      return reject(Concat("a snapshot that does not load: ", std::string(loads.message())));
    }
    verified_snapshot_ = message->snapshot;
    verified_machine_ = std::move(scratch);
    decoded_ms_ = MsSince(start);
  }
  (void)raft_->Step(*message);
  if (raft_->role() == raft::Role::kFollower && message->from == raft_->leader()) {
    RecordLeaderContact(message->from, raft_->term());
  }
}

void ClusterNode::PumpRaftParts() {
  part_sender_.Pump([this](raft::NodeId peer) { return transport_->QueuedTo(peer); },
                    [this](raft::NodeId peer, std::string_view payload) {
                      return transport_->SendTo(peer, FrameType::kRaftPart, payload);
                    });
}

void ClusterNode::Answer(LinkId link, uint64_t request_id, const absl::Status& status,
                         const std::string& leader_address, const std::string& wrapped_key) {
  if (link == kNoLink) {  // a request of this node's own operator
    auto it = forwarded_.find(request_id);
    if (it == forwarded_.end()) return;
    Done done = std::move(it->second.done);
    forwarded_.erase(it);
    completions_.emplace_back(std::move(done), status);
    return;
  }
  transport_->SendOn(link, FrameType::kReply,
                     EncodeReply({request_id, status, leader_address, wrapped_key}));
}

void ClusterNode::OnRequest(LinkId link, const LinkPeer& peer, const Request& request) {
  // What a link may ask follows from how it authenticated: a join token asks to join
  // (as the node it proved to be), a member's key asks for the rest.
  if ((request.kind == RequestKind::kJoin) != (peer.join_token != 0)) {
    return Answer(link, request.id,
                  absl::PermissionDeniedError(
                      request.kind == RequestKind::kJoin
                          ? "a join needs a join token (stanzactl cluster token on a member)"
                          : "a joining node may only ask to join"));
  }
  // A member's link asks as that member: one removed since it opened asks nothing.
  if (link != kNoLink && request.kind != RequestKind::kJoin &&
      raft_->members().count(peer.id) == 0) {
    return Answer(link, request.id, NotAMember(peer.id));
  }
  if (raft_->role() != raft::Role::kLeader) {
    const std::string leader = LeaderAddress();
    Answer(link, request.id,
           absl::UnavailableError(leader.empty() ? "no leader now (no quorum?); try again"
                                                 : "not the leader"),
           leader);
    return;
  }
  switch (request.kind) {
    case RequestKind::kPropose: {
      absl::StatusOr<ConfigCommand> command = DecodeConfigCommand(request.body);
      if (!command.ok()) return Answer(link, request.id, command.status());
      // Identities and token use come only from the leader's own join path (and the
      // first node's initialize): another member may not bind or unbind anyone.
      if (link != kNoLink && (std::holds_alternative<UseJoinToken>(*command) ||
                              std::holds_alternative<SetMemberIdentity>(*command) ||
                              std::holds_alternative<SetSaltKey>(*command))) {
        return Answer(link, request.id,
                      absl::PermissionDeniedError("this change is not made by request"));
      }
      if (absl::Status check = machine_.Check(*command); !check.ok()) {
        return Answer(link, request.id, check);
      }
      absl::StatusOr<raft::Index> index = raft_->Propose(EncodeConfigCommand(*command));
      if (!index.ok()) return Answer(link, request.id, index.status());
      proposals_[*index] = {raft_->term(), [this, link, id = request.id](const absl::Status& s) {
                              Answer(link, id, s);
                            }};
      return;
    }
    case RequestKind::kJoin: {
      raft::Member member;
      if (!raft::DecodeMember(request.body, &member) || member.id != peer.id) {
        return Answer(link, request.id,
                      absl::InvalidArgumentError("bad member in join (not the link's node)"));
      }
      if (cluster_key_.size() != kClusterKeyBytes) {
        return Answer(link, request.id,
                      absl::FailedPreconditionError(
                          "this cluster has no cluster key (formed before links were "
                          "authenticated): form it again with 'cluster initialize'"));
      }
      // Node ids are random: a joiner with a member's id (or a bound one) is posing.
      if (raft_->members().count(member.id) != 0 ||
          machine_.config().member_identities.count(member.id) != 0) {
        return Answer(link, request.id,
                      absl::AlreadyExistsError("a node with this id is already in the cluster"));
      }
      if (!tokens_in_use_.insert(peer.join_token).second) {
        return Answer(link, request.id,
                      absl::FailedPreconditionError("this join token is being used already"));
      }
      LogEvent(LogLevel::kInfo, "cluster_join_requested",
               Concat("id=", std::to_string(member.id), " address=", member.address));
      // The token is used up first (committed), so that it admits one node only.
      const ConfigCommand use = UseJoinToken{peer.join_token, UnixNowS(), member.id, peer.identity};
      absl::Status check = machine_.Check(use);
      absl::StatusOr<raft::Index> index = check.ok() ? raft_->Propose(EncodeConfigCommand(use))
                                                     : absl::StatusOr<raft::Index>(check);
      if (!index.ok()) {
        tokens_in_use_.erase(peer.join_token);
        return Answer(link, request.id, index.status());
      }
      // Once it is, the joiner gets the cluster key at once: the leader's links to it
      // (and the vote that commits its membership) need the key. It is a member when
      // the configuration reaches it.
      proposals_[*index] = {
          raft_->term(), [this, member, link, request_id = request.id, token = peer.join_token,
                          key_wrap = transport_->KeyWrapOf(link)](const absl::Status& status) {
            tokens_in_use_.erase(token);
            if (!status.ok()) return Answer(link, request_id, status);
            if (key_wrap.size() != kClusterKeyBytes) {
              return Answer(link, request_id, absl::InternalError("no key wrap on the link"));
            }
            Answer(link, request_id, absl::OkStatus(), "", XorBytes(cluster_key_, key_wrap));
            joins_.push_back({member, now_ms_ + kRequestTimeoutMs});
          }};
      return;
    }
    case RequestKind::kRemove: {
      absl::StatusOr<RemoveTarget> target = DecodeRemoveTarget(request.body);
      if (!target.ok()) return Answer(link, request.id, target.status());
      raft::NodeId victim = raft::kNoNode;
      for (const auto& [member_id, member] : raft_->members()) {
        if ((target->id != raft::kNoNode && member_id == target->id) ||
            (target->id == raft::kNoNode && member.address == target->address)) {
          victim = member_id;
        }
      }
      if (victim == raft::kNoNode) {
        return Answer(
            link, request.id,
            absl::NotFoundError(
                Concat("no member ",
                       target->id != raft::kNoNode ? std::to_string(target->id) : target->address,
                       " in this cluster ('stanzactl cluster status' lists them)")));
      }
      absl::StatusOr<raft::Index> index = raft_->ProposeRemoveMember(victim);
      if (!index.ok()) return Answer(link, request.id, index.status());
      proposals_[*index] = {raft_->term(), [this, link, id = request.id](const absl::Status& s) {
                              Answer(link, id, s);
                            }};
      return;
    }
  }
}

void ClusterNode::OnReply(LinkId link, const struct Reply& reply) {
  auto it = forwarded_.find(reply.id);
  // Only the link the request went out on answers it (request ids are guessable).
  if (it == forwarded_.end() || it->second.link != link) return;
  ForwardedRequest& forwarded = it->second;
  const std::string key_wrap = transport_->KeyWrapOf(link);
  forwarded.link = kNoLink;  // first: closing it must not look like losing it
  if (!forwarded.shared_link) transport_->Close(link);
  if (forwarded.request.kind == RequestKind::kJoin && reply.status.ok()) {
    // Admitted: the leader's answer carries the cluster key, wrapped for this link.
    absl::Status saved =
        reply.wrapped_key.size() == kClusterKeyBytes && key_wrap.size() == kClusterKeyBytes
            ? SaveClusterKey(XorBytes(reply.wrapped_key, key_wrap))
            : absl::DataLossError("the leader's answer carried no cluster key");
    if (!saved.ok()) {
      Done done = std::move(forwarded.done);
      forwarded_.erase(it);
      completions_.emplace_back(std::move(done), absl::InternalError(Concat(
                                                     "joined, but the cluster key was not stored: ",
                                                     std::string(saved.message()))));
      return;
    }
  }
  if (reply.status.code() == absl::StatusCode::kUnavailable && !reply.leader_address.empty() &&
      reply.leader_address != forwarded.target_address && forwarded.redirects < 3) {
    ++forwarded.redirects;
    SendForwarded(forwarded, reply.leader_address);
    return;
  }
  Done done = std::move(forwarded.done);
  forwarded_.erase(it);
  completions_.emplace_back(std::move(done), reply.status);
}

void ClusterNode::SetDataLinksDown(std::set<raft::NodeId> down) {
  data_links_down_ = std::move(down);
}

void ClusterNode::CheckLeaderDataLinks() {
  const raft::NodeId leader = raft_->leader();
  bool applies = raft_->role() == raft::Role::kFollower && leader != raft::kNoNode &&
                 leader != id() && data_links_down_.count(leader) != 0;
  if (applies) {
    bool reaches_another = false;
    for (const auto& [member, entry] : raft_->members()) {
      if (member != leader && member != id() && data_links_down_.count(member) == 0) {
        reaches_another = true;
      }
    }
    applies = reaches_another;
  }
  if (!applies) {
    leader_data_links_down_since_ms_ = 0;
    return;
  }
  if (leader_data_links_down_since_ms_ == 0) {
    leader_data_links_down_since_ms_ = std::max<uint64_t>(now_ms_, 1);
    return;
  }
  if (now_ms_ - leader_data_links_down_since_ms_ < kLeaderDataLinkGraceMs) return;
  leader_data_links_down_since_ms_ = 0;
  ++leaders_forgotten_;
  LogEvent(LogLevel::kWarning, "cluster_leader_lost",
           Concat("leader=", LeaderAddress(), " reason=\"no data link to it for ",
                  std::to_string(kLeaderDataLinkGraceMs / 1000),
                  " s while this node reaches other members' data ports\"",
                  " action=\"campaign now\" fix=\"check the leader's --cluster_data_port and ",
                  "firewall\""));
  raft_->ForgetLeader();
  HandleReady();
}

void ClusterNode::ForgetLeaderIfUnreachable(raft::NodeId peer) {
  if (peer != raft::kNoNode && peer == raft_->leader() && peer != id() &&
      !transport_->Connected(peer)) {
    forget_leader_pending_ = true;
  }
}

void ClusterNode::OnLinkClosed(LinkId link, raft::NodeId peer, const absl::Status& reason) {
  ForgetLeaderIfUnreachable(peer);
  if (peer != raft::kNoNode) part_sender_.Forget(peer);
  // A member refused this node (removed, or a key it does not know): changes waiting for a
  // leader would wait in vain; they are answered with the member's reason now.
  if (reason.code() == absl::StatusCode::kPermissionDenied && peer != raft::kNoNode &&
      raft_->members().count(peer) != 0) {
    for (WaitingProposal& waiting : waiting_) {
      completions_.emplace_back(std::move(waiting.done), reason);
    }
    waiting_.clear();
  }
  // Every request on it (a member link carries many), each answered once.
  for (auto it = forwarded_.begin(); it != forwarded_.end();) {
    if (it->second.link != link) {
      ++it;
      continue;
    }
    Done done = std::move(it->second.done);
    const std::string address = it->second.target_address;
    it = forwarded_.erase(it);
    completions_.emplace_back(
        std::move(done),
        reason.code() == absl::StatusCode::kPermissionDenied ||
                reason.code() == absl::StatusCode::kFailedPrecondition
            ? reason  // refused at authentication: the reason names the cause
            : absl::UnavailableError(Concat("lost the link to ", address, " (",
                                            std::string(reason.message()),
                                            "); check that stanzad runs there with the cluster "
                                            "enabled, and the address and --cluster_port")));
  }
}

// ---------------------------------------------------------------------------
// Driving Raft.

void ClusterNode::HandlePoll(const std::vector<pollfd>& fds, size_t first, uint64_t now_ms) {
  now_ms_ = now_ms;
  transport_->HandlePoll(fds, first, now_ms);
  Process();
  PumpRaftParts();
  transport_->FlushAll();
}

void ClusterNode::Tick(uint64_t now_ms) {
  now_ms_ = now_ms;
  if (last_tick_ms_ == 0) last_tick_ms_ = now_ms;
  if (failed_.ok()) {
    int ticks = 0;
    while (now_ms >= last_tick_ms_ + options_.tick_ms && ticks < 50) {
      raft_->Tick();
      last_tick_ms_ += options_.tick_ms;
      ++ticks;
      HandleReady();
    }
    if (ticks == 50) last_tick_ms_ = now_ms;  // a long stall: do not catch up forever
  }
  transport_->Tick(now_ms);
  // Expire what waited too long.
  for (auto it = forwarded_.begin(); it != forwarded_.end();) {
    if (now_ms < it->second.deadline_ms) {
      ++it;
      continue;
    }
    const LinkId link = it->second.link;
    it->second.link = kNoLink;
    if (!it->second.shared_link) transport_->Close(link);
    completions_.emplace_back(
        std::move(it->second.done),
        absl::DeadlineExceededError(Concat("no answer from ", it->second.target_address, " within ",
                                           std::to_string(kRequestTimeoutMs / 1000), " s")));
    it = forwarded_.erase(it);
  }
  while (!waiting_.empty() && now_ms >= waiting_.front().deadline_ms) {
    completions_.emplace_back(
        std::move(waiting_.front().done),
        absl::UnavailableError("the cluster has no leader (is a majority of its members up and "
                               "connected? 'stanzactl cluster status' shows them)"));
    waiting_.pop_front();
  }
  for (auto it = leader_waiters_.begin(); it != leader_waiters_.end();) {
    if (now_ms < it->deadline_ms) {
      ++it;
      continue;
    }
    completions_.emplace_back(std::move(it->done),
                              absl::UnavailableError("this node did not become leader in time"));
    it = leader_waiters_.erase(it);
  }
  if (join_done_ && now_ms >= join_deadline_ms_) {
    completions_.emplace_back(
        std::move(join_done_),
        absl::DeadlineExceededError("the leader accepted this node but the configuration did not "
                                    "arrive in time; 'stanzactl cluster status' shows the state"));
    join_done_ = nullptr;
  }
  part_assembler_.Expire(now_ms);
  Process();
  PumpRaftParts();
  transport_->FlushAll();
}

void ClusterNode::Process() {
  if (failed_.ok()) {
    HandleReady();
    if (forget_leader_pending_) {
      forget_leader_pending_ = false;
      if (raft_->role() == raft::Role::kFollower && raft_->leader() != raft::kNoNode &&
          !transport_->Connected(raft_->leader())) {
        ++leaders_forgotten_;
        LogEvent(LogLevel::kInfo, "cluster_leader_lost",
                 Concat("leader=", LeaderAddress(),
                        " reason=\"every link to it closed\" action=\"campaign now\""));
        raft_->ForgetLeader();
        HandleReady();
      }
    }
    CheckLeaderDataLinks();
    if (raft_->role() == raft::Role::kLeader) {
      AdvanceJoins();
    } else {
      for (const JoinInProgress& join : joins_) {
        LogEvent(LogLevel::kWarning, "cluster_join_abandoned",
                 Concat("id=", std::to_string(join.member.id), " address=", join.member.address,
                        " reason=\"this node is not the leader any more\"",
                        " fix=\"join the node again with a new token\""));
      }
      joins_.clear();
    }
    // Proposals that waited for a leader.
    if (raft_->leader() != raft::kNoNode) {
      std::deque<WaitingProposal> waiting;
      waiting.swap(waiting_);
      for (WaitingProposal& proposal : waiting) {
        if (raft_->role() == raft::Role::kLeader) {
          // Into this turn's Ready: a seed of many commands is one write, not one each.
          (void)ProposeAsLeader(proposal.command, proposal.done);
        } else {
          Propose(proposal.command, std::move(proposal.done));
        }
      }
      for (LeaderWaiter& waiter : leader_waiters_) {
        completions_.emplace_back(std::move(waiter.done), absl::OkStatus());
      }
      leader_waiters_.clear();
    }
    HandleReady();
    MaybeSnapshot();
    if (join_done_ && raft_->is_member() && config().members.count(id()) != 0 &&
        forwarded_.empty()) {
      LogEvent(LogLevel::kInfo, "cluster_joined",
               Concat("id=", std::to_string(id()), " leader=", LeaderAddress()));
      completions_.emplace_back(std::move(join_done_), absl::OkStatus());
      join_done_ = nullptr;
    }
  }
  // Callbacks last: they may call back into this node.
  while (!completions_.empty()) {
    std::vector<std::pair<Done, absl::Status>> completions;
    completions.swap(completions_);  // a callback may add more: they run in the next round
    for (auto& [done, status] : completions) {
      if (done) done(status);
    }
  }
  RecheckLinksIfMembersApplied();
}

void ClusterNode::RecheckLinksIfMembersApplied() {
  const auto& applied = machine_.config().members;
  if (applied.size() == links_checked_for_.size() &&
      std::equal(applied.begin(), applied.end(), links_checked_for_.begin(),
                 [](const auto& member, raft::NodeId id) { return member.first == id; })) {
    return;
  }
  links_checked_for_.clear();
  for (const auto& [member, address] : applied) links_checked_for_.push_back(member);
  // A member removed: its links, both directions, close once the removal is applied, not
  // when it is appended (a leader being removed still needs the acknowledgements that
  // commit it), and after this turn's answers were sent (the node that asked for its own
  // removal hears that it succeeded).
  transport_->FlushAll();
  transport_->RecheckLinks();
}

void ClusterNode::HandleReady() {
  while (failed_.ok() && raft_->HasReady()) {
    raft::Ready ready = raft_->TakeReady();
    absl::Status saved;
    if (ready.snapshot) {
      const auto start = std::chrono::steady_clock::now();
      CancelSnapshot();
      saved = store_->InstallSnapshot(ready.snapshot);
      if (saved.ok()) {
        if (verified_snapshot_ == ready.snapshot && verified_machine_.has_value()) {
          machine_ = *std::move(verified_machine_);
        } else {
          saved = RestoreSnapshot(*ready.snapshot, &machine_);
        }
        // Entries committed before it and not applied yet are in it.
        std::erase_if(deferred_, [&](const raft::Entry& entry) {
          if (entry.index > ready.snapshot->metadata.index) return false;
          deferred_bytes_ -= entry.data.size();
          return true;
        });
        // Any after it (none, as Raft installs only past its commit index) are applied now:
        // with the encoding cancelled, nothing else would ever apply them.
        ApplyDeferred();
        ++config_generation_;
        applied_changes_ = {true, {}};
        // Said with what it cost: at size, seconds on this thread.
        LogEvent(LogLevel::kInfo, "cluster_snapshot_installed",
                 Concat("index=", std::to_string(ready.snapshot->metadata.index),
                        " bytes=", std::to_string(ready.snapshot->data.size()), " receive_ms=",
                        std::to_string(received_ms_), " decode_ms=", std::to_string(decoded_ms_),
                        " install_ms=", std::to_string(MsSince(start))));
        received_ms_ = decoded_ms_ = 0;
      }
    }
    if (saved.ok() && !ready.entries.empty()) saved = store_->Append(ready.entries);
    if (saved.ok() && ready.hard_state) saved = store_->SetHardState(*ready.hard_state);
    if (saved.ok()) saved = store_->Sync();
    if (!saved.ok()) return Fail(saved);  // Raft is not advanced: nothing more happens
    if (ready.soft_state) {
      const raft::SoftState before = soft_;
      soft_ = *ready.soft_state;
      const auto steady = std::chrono::steady_clock::now();
      if (before.leader != raft::kNoNode && soft_.leader == raft::kNoNode) {
        leaderless_since_ = steady;
      } else if (before.leader == raft::kNoNode && soft_.leader != raft::kNoNode &&
                 leaderless_since_ != std::chrono::steady_clock::time_point{}) {
        failovers_ms_.push_back(
            std::chrono::duration<double, std::milli>(steady - leaderless_since_).count());
        leaderless_since_ = {};
      }
      if (before.role != soft_.role) {
        last_state_change_ = std::chrono::system_clock::now();
        if (soft_.role == raft::Role::kLeader) ++elections_;
        LogEvent(LogLevel::kInfo, "cluster_state_change",
                 Concat("from=", RoleText(before.role), " to=", RoleText(soft_.role),
                        " term=", std::to_string(raft_->term()),
                        " leader=", soft_.leader == id() ? options_.address : LeaderAddress()));
      } else if (before.leader != soft_.leader) {
        LogEvent(LogLevel::kInfo, "cluster_leader_change",
                 Concat("leader=", soft_.leader == raft::kNoNode ? "none" : LeaderAddress(),
                        " term=", std::to_string(raft_->term())));
      }
    }
    std::string bytes;
    for (const raft::Message& message : ready.messages) {
      if (message.snapshot != nullptr) {  // in parts, from the snapshot itself
        part_sender_.Send(message, now_ms_);
        continue;
      }
      bytes.clear();
      raft::EncodeMessage(message, &bytes);
      // A follower that does not keep up (a new member applying a large log): appends
      // beyond half what its link may queue are dropped, and Raft sends them again, rather
      // than filling the queue until the link is closed.
      if (message.type == raft::MessageType::kAppend && !message.entries.empty() &&
          transport_->QueuedTo(message.to) + bytes.size() > PeerTransport::kQueueBytesMax / 2) {
        continue;
      }
      transport_->SendTo(message.to, FrameType::kRaft, bytes);
    }
    const auto applying = std::chrono::steady_clock::now();
    for (const raft::Entry& entry : ready.committed_entries) {
      // While the state is being encoded for a snapshot it must not change: the entry waits.
      if (!deferred_.empty() || (snapshot_job_.has_value() && snapshot_job_->encoder)) {
        deferred_.push_back(entry);
        deferred_bytes_ += entry.data.size();
      } else {
        ApplyCommitted(entry);
      }
    }
    if (const int64_t ms = MsSince(applying); ms >= kSlowStepMs) {
      LogEvent(LogLevel::kInfo, "cluster_apply_slow",
               Concat("entries=", std::to_string(ready.committed_entries.size()),
                      " ms=", std::to_string(ms)));
    }
    raft_->Advance();
    std::map<raft::NodeId, std::string> peers;
    for (const auto& [member_id, member] : raft_->members()) {
      if (member_id != id()) peers[member_id] = member.address;
    }
    // A member being removed stays a peer until its removal is applied here: a leader
    // being removed needs the acknowledgements that commit it, and the answers to what
    // this node asked it travel on these links.
    for (const auto& [member_id, address] : machine_.config().members) {
      if (member_id != id()) peers.emplace(member_id, address);
    }
    transport_->SetPeers(peers, now_ms_);
  }
  verified_snapshot_ = nullptr;  // installed, or not taken by Raft
  verified_machine_.reset();
}

void ClusterNode::ApplyCommitted(const raft::Entry& entry) {
  std::optional<ConfigCommand> command;  // shares its users' credentials with the config
  const absl::Status status = machine_.Apply(entry, &command);
  if (entry.type != raft::EntryType::kNoop) ++config_generation_;
  // Applying moved the configuration's version to this entry: it changed something.
  if (entry.type == raft::EntryType::kNormal && machine_.config().version == entry.index &&
      !applied_changes_.whole) {
    if (!command.has_value() || applied_changes_.commands.size() >= kAppliedChangesMax) {
      applied_changes_ = {true, {}};
    } else {
      applied_changes_.commands.push_back(*std::move(command));
    }
  }
  // A membership change is logged when it is new to this node, not again when the
  // log is replayed after a restart (the event would claim a join that did not happen).
  if ((entry.type == raft::EntryType::kAddMember || entry.type == raft::EntryType::kRemoveMember) &&
      entry.index > committed_at_start_) {
    raft::Member member;
    if (raft::DecodeMember(entry.data, &member)) {
      LogEvent(LogLevel::kInfo,
               entry.type == raft::EntryType::kAddMember ? "cluster_member_added"
                                                         : "cluster_member_removed",
               Concat("id=", std::to_string(member.id), " address=", member.address));
    }
  }
  auto it = proposals_.find(entry.index);
  if (it == proposals_.end()) return;
  Done done = std::move(it->second.done);
  const bool ours = it->second.term == entry.term;
  proposals_.erase(it);
  completions_.emplace_back(
      std::move(done),
      ours ? status
           : absl::AbortedError("the leader changed before the change was committed; run the "
                                "command again"));
}

void ClusterNode::AdvanceJoins() {
  // The joiner was answered (with the cluster key) when its token was used; what goes
  // wrong from here is logged, and its own join times out with a message.
  const auto give_up = [](const JoinInProgress& join, const absl::Status& why) {
    LogEvent(LogLevel::kWarning, "cluster_join_abandoned",
             Concat("id=", std::to_string(join.member.id), " address=", join.member.address,
                    " reason=", LogQuote(std::string(why.message())),
                    " fix=\"join the node again with a new token\""));
  };
  for (auto it = joins_.begin(); it != joins_.end();) {
    absl::StatusOr<raft::ReplaceProgress> progress = raft_->ProposeReplaceOrAdd(it->member);
    if (!progress.ok() && progress.status().code() == absl::StatusCode::kFailedPrecondition &&
        now_ms_ < it->deadline_ms) {
      ++it;  // e.g. the leader has not committed an entry of its term yet
      continue;
    }
    if (!progress.ok()) {
      give_up(*it, progress.status());
      it = joins_.erase(it);
      continue;
    }
    if (progress->step == raft::ReplaceProgress::Step::kRemovingConflict) {
      LogEvent(LogLevel::kInfo, "cluster_member_replaced",
               Concat("removed=", std::to_string(progress->removed),
                      " address=", it->member.address, " new_id=", std::to_string(it->member.id)));
    }
    if (progress->step == raft::ReplaceProgress::Step::kDone) {
      it = joins_.erase(it);
      continue;
    }
    if (now_ms_ >= it->deadline_ms) {
      give_up(*it, absl::DeadlineExceededError("adding the member did not commit in time"));
      it = joins_.erase(it);
      continue;
    }
    ++it;
  }
}

ClusterNode::AppliedChanges ClusterNode::TakeAppliedChanges() {
  AppliedChanges taken = std::move(applied_changes_);
  applied_changes_ = {};
  return taken;
}

void ClusterNode::MaybeSnapshot() {
  if (!failed_.ok() || raft_->HasReady()) return;
  if (snapshot_job_.has_value()) return ContinueSnapshot();
  const raft::Index applied = machine_.applied_index();
  // Each member at its own point (up to 7/16 later, by its id), so that the members of a
  // cluster do not all take theirs at the same entry.
  const uint64_t every = options_.snapshot_entries + options_.snapshot_entries * (id() % 8) / 16;
  if (applied < raft_->snapshot_index() + every) return;
  // A snapshot costs the whole state: wait until the log holds half as many bytes, so the
  // cost per entry stays the same at any size (the log stays at most 1.5 times the state).
  // (The file's size, not log_live_bytes(): that one walks every entry, and this runs
  // after every input.)
  if (store_->log_file_bytes() < store_->snapshot().data.size() / 2) return;
  SnapshotJob& job = snapshot_job_.emplace();
  job.encoder.emplace(machine_);
  job.start = std::chrono::steady_clock::now();
  ContinueSnapshot();
}

void ClusterNode::ContinueSnapshot() {
  SnapshotJob& job = *snapshot_job_;
  if (!job.encoder) {
    if (job.written.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      FinishSnapshot();
    }
    return;
  }
  // A slice of the state per call: the control thread answers heartbeats in between.
  // (Unless the entries waiting meanwhile reached their bound: then all of it now.)
  const auto deadline = deferred_bytes_ > kDeferredBytesMax
                            ? std::chrono::steady_clock::time_point::max()
                            : std::chrono::steady_clock::now() +
                                  std::chrono::milliseconds(options_.snapshot_slice_ms);
  bool encoded = false;
  do {
    if (job.slices.empty() || job.slices.back().size() >= kSnapshotSliceBytes) {
      job.slices.emplace_back().reserve(kSnapshotSliceBytes + (64 << 10));
    }
    encoded = job.encoder->Step(1000, &job.slices.back());
  } while (!encoded && std::chrono::steady_clock::now() < deadline);
  if (!encoded) return;
  const raft::Index index = job.encoder->index();
  job.encoder.reset();
  job.encode_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - job.start)
                      .count();
  job.entries_waited = deferred_.size();
  absl::StatusOr<raft::SnapshotMetadata> metadata = raft_->SnapshotMetadataAt(index);
  if (!metadata.ok()) {  // cannot happen while nothing else compacts the log; dropped
    snapshot_job_.reset();
    return ApplyDeferred();
  }
  ApplyDeferred();  // the machine may change again
  job.written = std::async(
      std::launch::async,
      [store = store_.get(), slices = std::move(job.slices),
       metadata = *std::move(
           metadata)]() mutable -> absl::StatusOr<std::shared_ptr<const raft::Snapshot>> {
        auto snapshot = std::make_shared<raft::Snapshot>();
        snapshot->metadata = std::move(metadata);
        size_t bytes = 0;
        for (const std::string& slice : slices) bytes += slice.size();
        snapshot->data.reserve(bytes);
        for (std::string& slice : slices) {
          snapshot->data.append(slice);
          std::string().swap(slice);
        }
        if (absl::Status written = store->PrepareSnapshot(*snapshot); !written.ok()) return written;
        return std::shared_ptr<const raft::Snapshot>(std::move(snapshot));
      });
}

void ClusterNode::FinishSnapshot() {
  absl::StatusOr<std::shared_ptr<const raft::Snapshot>> written = snapshot_job_->written.get();
  const auto start = snapshot_job_->start;
  const int64_t encode_ms = snapshot_job_->encode_ms;
  const size_t entries_waited = snapshot_job_->entries_waited;
  snapshot_job_.reset();
  if (!written.ok()) return Fail(written.status());
  const std::shared_ptr<const raft::Snapshot>& snapshot = *written;
  // Refused when a snapshot from the leader overtook it; its file goes at the next one.
  if (!raft_->CreateSnapshot(snapshot).ok()) return;
  absl::Status saved = store_->CommitSnapshot(snapshot);
  if (absl::IsFailedPrecondition(saved)) return;
  if (saved.ok() && store_->log_file_bytes() > 2 * store_->log_live_bytes() + (1 << 20)) {
    saved = store_->Compact();
  }
  if (!saved.ok()) return Fail(saved);
  LogEvent(LogLevel::kInfo, "cluster_snapshot_saved",
           Concat("index=", std::to_string(snapshot->metadata.index), " bytes=",
                  std::to_string(snapshot->data.size()), " encode_ms=", std::to_string(encode_ms),
                  " entries_waited=", std::to_string(entries_waited), " ms=",
                  std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now() - start)
                                     .count())));
}

void ClusterNode::CancelSnapshot() {
  if (!snapshot_job_.has_value()) return;
  if (snapshot_job_->written.valid()) snapshot_job_->written.wait();
  snapshot_job_.reset();
}

void ClusterNode::ApplyDeferred() {
  while (!deferred_.empty()) {
    const raft::Entry entry = std::move(deferred_.front());
    deferred_.pop_front();
    deferred_bytes_ -= entry.data.size();
    ApplyCommitted(entry);
  }
}

void ClusterNode::Fail(const absl::Status& status) {
  failed_ = status;
  LogEvent(LogLevel::kError, "cluster_storage_failed",
           Concat("dir=", options_.dir, " reason=", LogQuote(std::string(status.message())),
                  " fix=", LogQuote("check the disk; restart stanzad to recover from the log")));
  const absl::Status stopped = absl::UnavailableError(
      Concat("this node's cluster storage failed: ", std::string(status.message())));
  for (auto& [index, proposal] : proposals_) completions_.emplace_back(proposal.done, stopped);
  proposals_.clear();
  for (auto& waiting : waiting_) completions_.emplace_back(waiting.done, stopped);
  waiting_.clear();
}

void ClusterNode::SetDataHandlers(DataHandler on_data, PeerUpHandler on_peer_up) {
  on_data_ = std::move(on_data);
  transport_->set_peer_up_handler(std::move(on_peer_up));
}

bool ClusterNode::SendData(raft::NodeId to, FrameType type, std::string_view payload) {
  return transport_->SendTo(to, type, payload);
}

std::vector<raft::NodeId> ClusterNode::PeerIds() const {
  std::vector<raft::NodeId> peers;
  for (const auto& [member_id, member] : raft_->members()) {
    if (member_id != id()) peers.push_back(member_id);
  }
  return peers;
}

ClusterStatus ClusterNode::Status() const {
  ClusterStatus status;
  status.member = raft_->is_member();
  status.id = id();
  status.address = options_.address;
  status.role = raft_->role();
  status.term = raft_->term();
  status.leader = raft_->leader();
  status.leader_address = raft_->leader() == id() ? options_.address : LeaderAddress();
  status.commit = raft_->commit_index();
  status.applied = raft_->applied_index();
  for (const auto& [member_id, member] : raft_->members()) {
    MemberStatus& added = status.members.emplace_back();
    added.id = member_id;
    added.address = member.address;
    added.leader = member_id == raft_->leader();
    added.self = member_id == id();
    added.connected = added.self || transport_->Connected(member_id);
    if (const std::optional<uint64_t> heard = transport_->LastHeardMs(member_id);
        heard && member_id != id()) {
      added.last_contact_ms_ago = now_ms_ > *heard ? now_ms_ - *heard : 0;
    }
  }
  status.last_state_change = last_state_change_;
  status.elections = elections_;
  status.failed = failed_;
  status.tls = transport_->tls();
  status.has_cluster_key = transport_->has_cluster_key();
  status.links_refused = transport_->links_refused();
  const std::set<std::string>& isolated = transport_->isolated_from();
  status.isolated_from.assign(isolated.begin(), isolated.end());
  for (const double bound : kFailoverBucketsMs) {
    status.failover_buckets.push_back(static_cast<uint64_t>(std::count_if(
        failovers_ms_.begin(), failovers_ms_.end(), [bound](double ms) { return ms <= bound; })));
  }
  status.failover_count = failovers_ms_.size();
  for (const double ms : failovers_ms_) status.failover_sum_ms += ms;
  uint64_t below = 0;
  for (size_t i = 0; i < std::size(kLeaderGapBucketsMs); ++i) {
    below += leader_gaps_[i];
    status.leader_gap_buckets.push_back(below);
  }
  status.leader_gap_count = below + leader_gaps_.back();
  status.leader_gap_sum_ms = leader_gap_sum_ms_;
  status.leader_gap_max_ms = leader_gap_max_ms_;
  return status;
}

void ClusterNode::RecordLeaderContact(raft::NodeId leader, raft::Term term) {
  const bool same = leader == last_contact_leader_ && term == last_contact_term_;
  // Messages read in one turn are one contact: their 0 ms "gaps" would pull the
  // percentiles down exactly when this thread is late.
  if (same && now_ms_ == last_contact_ms_) return;
  if (same && last_contact_ms_ != 0 && now_ms_ > last_contact_ms_) {
    const uint64_t gap_ms = now_ms_ - last_contact_ms_;
    size_t bucket = 0;
    while (bucket < std::size(kLeaderGapBucketsMs) &&
           static_cast<double>(gap_ms) > kLeaderGapBucketsMs[bucket]) {
      ++bucket;
    }
    ++leader_gaps_[bucket];
    leader_gap_sum_ms_ += static_cast<double>(gap_ms);
    leader_gap_max_ms_ = std::max(leader_gap_max_ms_, gap_ms);
  }
  last_contact_leader_ = leader;
  last_contact_term_ = term;
  last_contact_ms_ = now_ms_;
}

}  // namespace stanzad::cluster
