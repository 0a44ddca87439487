// ClusterNode: one node's control plane — Raft, its durable store, the replicated
// configuration and the cluster-port links — driven by the daemon's control thread.
//
//   ClusterNode::Open(dir, address)      the store in `dir`; a node with Raft state
//                                        resumes (as member, or waiting to be added)
//   Listen(endpoint)                     the cluster port
//   Initialize(seed, done)               a one-member cluster with a new cluster key;
//                                        `seed` commands (the node's configuration so
//                                        far) are proposed once it leads
//   CreateJoinToken(ttl_s, done)         a single-use approval for one node to join
//   Join(address, token, done)           asks any member to add this node, proving the
//                                        token; the leader uses the token up, adds the
//                                        node (replacing a member at the same address: a
//                                        reset node never appears twice) and hands it the
//                                        cluster key
//   Propose(command, done)               a configuration change from any node: a
//                                        follower forwards it to the leader; `done`
//                                        runs when it is applied here, with its result
//   Remove(target, done)                 takes a member out (by id or address)
//   AppendPollFds / HandlePoll / Tick    the control loop (Tick every tick_ms)
//
// Every `done` runs exactly once, on the control thread, within kRequestTimeoutMs.
//
// Trust (docs/security.md): links are authenticated (peer_transport.h) with the cluster
// key, kept in <dir>/link_key (0600, written atomically) from initialize or join on.
// Frames are checked against the link they came on: Raft messages must come from the node
// the link authenticated (`from`), a snapshot must decode before Raft sees it, requests
// need a member's link, a join needs a join token's link; data frames come only from
// members. Once this node is a member, links are accepted only from members and nodes
// being added; with TLS, a member's link must present the certificate key bound to its
// node id when it joined (Config::member_identities), so a removed node is refused. A stored
// snapshot that does not load stops this node's Raft (status().failed) but the node opens, so the
// daemon still serves and says why.
//
// Ready handling follows cluster/raft/raft.h: snapshot, entries, then the hard state go
// to the RaftStore and are synced before messages leave; committed entries are applied
// to the ConfigStateMachine in order. A snapshot is taken every snapshot_entries applied
// entries (up to 7/16 more, by the node's id, so that members do not all take theirs at the
// same entry), once the log holds at least half the last snapshot's bytes (so a snapshot's
// cost, which is the whole state's, is spread over as many bytes of entries: the same per
// entry at any size), and the log file compacted, so the log does not grow without bound.
// A snapshot never holds the control thread for the whole state (docs/configuration-
// storage.md, "Snapshots"): it is encoded a slice per turn while committed entries wait, and
// its file is written and fsynced by a thread of its own (the only other thread this class
// starts; it touches nothing but that file). Snapshot messages travel in parts
// (raft_parts.h); appends to a follower whose link already queues half its bound are
// dropped (Raft sends them again) instead of filling the link until it is closed.
//
// Thread safety: none; the control thread owns it.
#ifndef STANZAD_CLUSTER_NODE_CLUSTER_NODE_H_
#define STANZAD_CLUSTER_NODE_CLUSTER_NODE_H_

#include <poll.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cluster/config_state_machine.h"
#include "cluster/node/frames.h"
#include "cluster/node/peer_transport.h"
#include "cluster/node/raft_parts.h"
#include "cluster/raft/raft.h"
#include "cluster/storage/raft_store.h"

namespace stanzad::cluster {

struct ClusterNodeOptions {
  std::string dir;      // the Raft store (state_dir/cluster)
  std::string address;  // this node's cluster address, "IP:PORT"
  uint32_t tick_ms = 10;
  int election_ticks = 30;  // 300 ms, randomised up to 600 ms
  int heartbeat_ticks = 5;  // 50 ms
  uint64_t snapshot_entries = 1000;
  // A snapshot's state is encoded a slice per turn, for up to this long (at least 1,000
  // bridges or users a slice).
  int snapshot_slice_ms = 4;
  uint64_t random_seed = 0;  // 0: from the node id and the clock
  TransportLimits limits;    // what unauthenticated peers can make the node hold
  // Mutual TLS on every cluster link when both are set (tls/tls_session.h): the
  // server context requires client certificates that chain to the trust bundle,
  // the client context presents this node's certificate and verifies the peer's.
  std::shared_ptr<const tls::TlsContext> tls_server;
  std::shared_ptr<const tls::TlsContext> tls_client;
  // With TLS: this node's certificate key (tls::PublicKeyDigest), bound to its node id
  // when it initializes a cluster (a joiner's is taken from its link by the leader).
  std::string tls_identity;
};

// A member as `cluster status` shows it.
struct MemberStatus {
  raft::NodeId id = raft::kNoNode;
  std::string address;
  bool leader = false;
  bool self = false;
  bool connected = false;  // a link to it is up (always true for self)
  // How long ago a frame from it last arrived; nullopt for self or never.
  std::optional<uint64_t> last_contact_ms_ago;
  // This node's data links to it (cluster/data/data_links.h), filled by the daemon: how
  // many of its shards' links are up, of how many (0: it runs none).
  int data_links_up = 0;
  int data_links_total = 0;
};

struct ClusterStatus {
  bool member = false;  // this node is in the membership
  raft::NodeId id = raft::kNoNode;
  std::string address;
  raft::Role role = raft::Role::kFollower;
  raft::Term term = 0;
  raft::NodeId leader = raft::kNoNode;
  std::string leader_address;
  raft::Index commit = 0;
  raft::Index applied = 0;
  std::vector<MemberStatus> members;
  std::chrono::system_clock::time_point last_state_change{};
  uint64_t elections = 0;        // times this node became leader
  absl::Status failed;           // a storage error stopped this node's Raft
  bool tls = false;              // the links are mutual TLS
  bool has_cluster_key = false;  // links can authenticate (initialize or join done)
  uint64_t links_refused = 0;    // links refused at authentication, or closed when a member left
  std::vector<std::string> isolated_from;  // a drill is on (cluster isolate)
  // Failovers seen by this node: how long it knew no leader each time (from losing
  // one to knowing the next), as a histogram with ClusterNode::kFailoverBucketsMs.
  std::vector<uint64_t> failover_buckets;  // cumulative counts, one per bound
  uint64_t failover_count = 0;
  double failover_sum_ms = 0;
  // On a follower: the time between two Raft messages from the same leader in the same
  // term, as this node's control thread read them (heartbeats every 50 ms, appends in
  // between; messages read in one turn count once): a histogram with
  // ClusterNode::kLeaderGapBucketsMs, and the longest gap. A starved control
  // thread, or a leader's, shows here before it costs an election.
  std::vector<uint64_t> leader_gap_buckets;  // cumulative counts, one per bound
  uint64_t leader_gap_count = 0;
  double leader_gap_sum_ms = 0;
  uint64_t leader_gap_max_ms = 0;
};

class ClusterNode {
 public:
  static constexpr uint64_t kRequestTimeoutMs = 10'000;
  static constexpr double kFailoverBucketsMs[] = {10, 25, 50, 100, 250, 500, 1000, 2500, 5000};
  static constexpr double kLeaderGapBucketsMs[] = {10, 25, 50, 60, 75, 100, 150, 250, 500, 1000};
  using Done = std::function<void(const absl::Status& status)>;

  static absl::StatusOr<std::unique_ptr<ClusterNode>> Open(const ClusterNodeOptions& options);
  ~ClusterNode();

  absl::Status Listen(const net::Endpoint& endpoint);
  // Stops listening and closes every link (cluster disable): the other members see
  // this node down until Listen, and Tick re-dials them.
  void Disconnect();

  // Has Raft state: initialized here, or added by a leader (or waiting to be).
  bool has_state() const;
  bool is_member() const { return raft_->is_member(); }
  bool tls() const { return transport_->tls(); }
  // The mutual-TLS contexts of its links (null without TLS).
  const std::shared_ptr<const tls::TlsContext>& tls_server() const { return options_.tls_server; }
  const std::shared_ptr<const tls::TlsContext>& tls_client() const { return options_.tls_client; }
  raft::NodeId leader_id() const { return raft_->leader(); }
  bool is_leader() const { return raft_->role() == raft::Role::kLeader; }
  raft::NodeId id() const { return store_->node_id(); }
  // The cluster key (link_auth.h), empty until initialize or join.
  const std::string& cluster_key() const { return cluster_key_; }
  const std::string& address() const { return options_.address; }

  void Initialize(std::vector<ConfigCommand> seed, Done done);
  // Proposes a join token valid for `ttl_s` seconds; `done` gets it once committed.
  using TokenDone = std::function<void(const absl::StatusOr<JoinToken>& token)>;
  void CreateJoinToken(uint64_t ttl_s, TokenDone done);
  void Join(const std::string& address, const JoinToken& token, Done done);
  void Propose(const ConfigCommand& command, Done done);
  void Remove(const RemoveTarget& target, Done done);

  // The replicated configuration, and a number that grows whenever it changes.
  const config::Config& config() const { return machine_.config(); }
  uint64_t config_generation() const { return config_generation_; }

  // What changed the configuration since the last call, so that a mirror can follow it at a
  // cost per change that does not grow with the configuration: the commands that changed it,
  // in order, or `whole` when the state was replaced (a snapshot, the first call) or more
  // than kAppliedChangesMax changes waited; then config() is what to mirror.
  struct AppliedChanges {
    bool whole = false;
    std::vector<ConfigCommand> commands;
  };
  static constexpr size_t kAppliedChangesMax = 65'536;
  AppliedChanges TakeAppliedChanges();

  ClusterStatus Status() const;

  // The data plane's use of the cluster links (kRoutes, kStanza frames): frames
  // from members go to `on_data`; `on_peer_up` runs when a link to a member comes
  // up (send it the full route set then). SendData is false when there is no link.
  using DataHandler = std::function<void(raft::NodeId from, const Frame& frame)>;
  using PeerUpHandler = std::function<void(raft::NodeId peer)>;
  void SetDataHandlers(DataHandler on_data, PeerUpHandler on_peer_up);
  bool SendData(raft::NodeId to, FrameType type, std::string_view payload);
  // Writes what was queued on the links (call at the end of each loop turn).
  void FlushLinks() { transport_->FlushAll(); }
  // A drill: cut every cluster link to and from these hosts (IP addresses) until
  // called again (empty: none). See PeerTransport::SetIsolatedFrom.
  void IsolateFrom(std::set<std::string> hosts) { transport_->SetIsolatedFrom(std::move(hosts)); }
  const std::set<std::string>& isolated_from() const { return transport_->isolated_from(); }
  // A link to `peer` is up (either direction).
  bool LinkedTo(raft::NodeId peer) const { return transport_->Connected(peer); }
  // The members none of this node's shards has a data link up to (cluster/data), told
  // every turn. A follower that has had no data link to its leader for
  // kLeaderDataLinkGraceMs while it has one to another member forgets the leader and
  // campaigns: the leader's Raft thread lives but its data plane does not (its data port
  // filtered, its shards stuck), and in leader routing no stanza crosses nodes through
  // it. (When this node reaches no member's data port, the trouble is its own: nothing
  // is forgotten. A data link that closes with the leader's cluster links is the
  // cluster links' rule: forgotten at once.)
  static constexpr uint64_t kLeaderDataLinkGraceMs = 3000;
  void SetDataLinksDown(std::set<raft::NodeId> down);
  // Bytes waiting to leave on the link SendData(peer) uses.
  size_t QueuedTo(raft::NodeId peer) const { return transport_->QueuedTo(peer); }
  // Members other than this node, by id.
  std::vector<raft::NodeId> PeerIds() const;

  void AppendPollFds(std::vector<pollfd>* fds) { transport_->AppendPollFds(fds); }
  void HandlePoll(const std::vector<pollfd>& fds, size_t first, uint64_t now_ms);
  // Ticks Raft as many times as tick_ms periods passed, expires requests.
  void Tick(uint64_t now_ms);

 private:
  struct PendingProposal {  // on the leader: an entry proposed for someone
    raft::Term term = 0;
    Done done;
  };
  struct ForwardedRequest {  // on any node: a request sent to another node
    Request request;
    Done done;
    uint64_t deadline_ms = 0;
    LinkId link = kNoLink;
    bool shared_link = false;  // `link` is the member link to the target: never closed here
    int redirects = 0;
    std::string target_address;
    std::optional<JoinToken> token;  // a join: the link proves it
  };
  struct JoinInProgress {  // on the leader: a node being added (its token used up)
    raft::Member member;
    uint64_t deadline_ms = 0;
  };
  struct LeaderWaiter {  // Initialize without seed commands: done once this node leads
    Done done;
    uint64_t deadline_ms = 0;
  };
  struct WaitingProposal {  // no leader yet: retried until the deadline
    ConfigCommand command;
    Done done;
    uint64_t deadline_ms = 0;
  };

  explicit ClusterNode(const ClusterNodeOptions& options);
  absl::Status Start();
  void OnFrame(LinkId link, const LinkPeer& peer, Frame frame);
  void OnLinkClosed(LinkId link, raft::NodeId peer, const absl::Status& reason);
  // A link to `peer` closed: when it is the leader and no cluster link to it is up, forget
  // it at the end of this turn (Process).
  void ForgetLeaderIfUnreachable(raft::NodeId peer);
  // When the applied membership changed: closes the links the peer check refuses now.
  void RecheckLinksIfMembersApplied();
  // SetDataLinksDown's rule, every turn.
  void CheckLeaderDataLinks();
  std::set<raft::NodeId> data_links_down_;
  uint64_t leader_data_links_down_since_ms_ = 0;  // 0: they are up (or no rule applies)
  void OnRequest(LinkId link, const LinkPeer& peer, const Request& request);
  absl::Status CheckPeer(const LinkPeer& peer) const;
  void OnReply(LinkId link, const Reply& reply);
  void Answer(LinkId link, uint64_t id, const absl::Status& status,
              const std::string& leader_address = "", const std::string& wrapped_key = "");
  absl::Status SaveClusterKey(const std::string& key);
  static uint64_t UnixNowS();
  void SendForwarded(ForwardedRequest& forwarded, const std::string& address);
  void ForwardToLeader(Request request, Done done);
  // Proposes on this node, the leader, without driving Raft (the caller does, once for many).
  // False when refused; `done` then ran with why.
  bool ProposeAsLeader(const ConfigCommand& command, Done& done);
  // Proposes commands[next], then the rest one at a time, each once the one before is
  // applied; `done` at the end or at the first refusal.
  void ProposeInTurn(std::shared_ptr<std::vector<ConfigCommand>> commands, size_t next,
                     std::shared_ptr<Done> done);
  std::string LeaderAddress() const;

  // Runs after every input: Ready handling, joins, waiting proposals.
  void Process();
  void HandleReady();
  void ApplyCommitted(const raft::Entry& entry);
  // Raft messages from a member's link: one kRaft frame, or the parts of one joined.
  void OnRaftMessage(const LinkPeer& peer, std::string_view bytes, size_t bytes_max);
  // Queues the next parts of the snapshots being sent (before each flush of the links).
  void PumpRaftParts();
  // Starts a snapshot when one is due, or takes the one under way a step further.
  void MaybeSnapshot();
  void ContinueSnapshot();
  // The snapshot's file is durable: Raft and the store take it.
  void FinishSnapshot();
  // Drops the snapshot under way (waiting for its writer): one from the leader replaces
  // the state it was encoding, and the file the writer writes.
  void CancelSnapshot();
  void ApplyDeferred();
  void AdvanceJoins();
  void Fail(const absl::Status& status);

  ClusterNodeOptions options_;
  std::string cluster_key_;  // empty until initialize or join
  DataHandler on_data_;
  std::unique_ptr<storage::RaftStore> store_;
  std::optional<raft::Raft> raft_;
  ConfigStateMachine machine_;
  std::unique_ptr<PeerTransport> transport_;
  uint64_t config_generation_ = 0;
  AppliedChanges applied_changes_{true, {}};  // since TakeAppliedChanges
  // The commit index this node had on disk when it started: entries up to it were
  // applied (and their membership logged) before a restart, and are only replayed now.
  raft::Index committed_at_start_ = 0;
  uint64_t now_ms_ = 0;
  uint64_t last_tick_ms_ = 0;
  uint64_t next_request_id_ = 1;
  std::map<raft::Index, PendingProposal> proposals_;
  std::map<uint64_t, ForwardedRequest> forwarded_;  // by request id
  std::vector<JoinInProgress> joins_;
  std::set<uint64_t> tokens_in_use_;  // on the leader: joins whose token use is in flight
  std::deque<WaitingProposal> waiting_;
  std::vector<LeaderWaiter> leader_waiters_;
  // Callbacks to run at the end of Process(), outside Raft's Ready handling.
  std::vector<std::pair<Done, absl::Status>> completions_;
  raft::SoftState soft_{};
  std::chrono::system_clock::time_point last_state_change_ = std::chrono::system_clock::now();
  uint64_t elections_ = 0;
  std::chrono::steady_clock::time_point leaderless_since_{};  // epoch: a leader is known
  std::vector<double> failovers_ms_;
  // Leader contact (ClusterStatus::leader_gap_*): the last message's leader, term, time.
  void RecordLeaderContact(raft::NodeId leader, raft::Term term);
  raft::NodeId last_contact_leader_ = raft::kNoNode;
  raft::Term last_contact_term_ = 0;
  uint64_t last_contact_ms_ = 0;
  std::array<uint64_t, std::size(kLeaderGapBucketsMs) + 1> leader_gaps_{};  // last: beyond
  double leader_gap_sum_ms_ = 0;
  uint64_t leader_gap_max_ms_ = 0;
  absl::Status failed_;
  // Every link to the leader closed (its process died, most likely): Raft is told
  // in Process(), outside Ready handling, so the election starts at once.
  bool forget_leader_pending_ = false;
  uint64_t leaders_forgotten_ = 0;
  // A join this node asked for: done when it is a member with the configuration.
  Done join_done_;
  uint64_t join_deadline_ms_ = 0;

  // Snapshots sent and received in parts (raft_parts.h).
  RaftPartSender part_sender_;
  RaftPartAssembler part_assembler_;
  // A received snapshot, decoded to check it before Raft saw it, kept so that installing
  // it (HandleReady, the same turn) does not decode it again: seconds at a million users.
  std::shared_ptr<const raft::Snapshot> verified_snapshot_;
  std::optional<ConfigStateMachine> verified_machine_;
  // What the last snapshot received cost, for cluster_snapshot_installed.
  uint64_t received_ms_ = 0;
  int64_t decoded_ms_ = 0;

  // A snapshot being made (docs/configuration-storage.md, "Snapshots"): the state is
  // encoded a slice per turn (options_.snapshot_slice_ms) while committed entries wait in deferred_
  // (the machine must not change under the encoder); then a thread of its own joins the
  // slices and writes and fsyncs the file (RaftStore::PrepareSnapshot) while this one goes
  // on; then Raft and the store take it (FinishSnapshot). Declared after store_: its writer
  // uses the store, and its future waits for the writer when destroyed.
  static constexpr size_t kSnapshotSliceBytes = 4 << 20;
  // Applying committed entries for this long is logged (cluster_apply_slow): half of what
  // makes a slow control turn (server/control_loop.h, kSlowTurnMs).
  static constexpr int64_t kSlowStepMs = 50;
  struct SnapshotJob {
    // Written out (not default member initializers): clang 14 does not see a nested
    // class with those as default-constructible inside its enclosing class.
    SnapshotJob() : encode_ms(0), entries_waited(0) {}

    std::optional<SnapshotEncoder> encoder;  // unset once everything is encoded
    std::vector<std::string> slices;
    std::future<absl::StatusOr<std::shared_ptr<const raft::Snapshot>>> written;
    std::chrono::steady_clock::time_point start;
    int64_t encode_ms;
    size_t entries_waited;  // committed while it was encoded
  };
  std::vector<raft::NodeId> links_checked_for_;  // the applied members links were checked for
  std::optional<SnapshotJob> snapshot_job_;
  std::deque<raft::Entry> deferred_;  // committed while the state was being encoded
  size_t deferred_bytes_ = 0;         // their data
  // Past this many bytes waiting in deferred_, the encoding is finished in the same turn
  // (one long turn rather than memory without bound while a busy leader keeps committing).
  static constexpr size_t kDeferredBytesMax = 64 << 20;
};

}  // namespace stanzad::cluster

#endif  // STANZAD_CLUSTER_NODE_CLUSTER_NODE_H_
