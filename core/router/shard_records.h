// The records the XMPP router's shards send one another, and the shards send the
// control thread, as types: one struct per kind, with its fields named and typed.
//
// The shards share nothing, so a record travels as bytes in the engine's SPSC queues,
// in four fields (net::CrossShardMessage: kind, target, argument, payload). This module
// is the one place that lays a record out in those fields (EncodeShardRecord) and the
// one that reads it back (DecodeShardRecord): a sender names what it sends, a handler
// reads named fields that were checked. Decoding trusts nothing: a kind it does not
// know, a number out of range or a payload without its separators is an error value,
// never a guess and never a crash.
//
// Who sends what to whom (S: the shard of the connection concerned; O: the owner shard
// of an address or account, OwnerShard(); "all": every shard, the sender included):
//   call bridges   S → O BindRequest, UnbindRequest; O → all RouteBind, RouteUnbind;
//                  each shard → S RouteBindAck; O → the replaced connection's shard
//                  Conflict (clients too).
//   clients        S → O ClientBindRequest, ClientUnbindRequest; O → S ClientBindRefused;
//                  O → all ClientRouteBind, ClientRouteUnbind; each shard → S
//                  ClientRouteBindAck; S → all ClientPresence.
//   stanzas        any → the destination's shard Deliver; any → the sender's shard Bounce;
//                  a relay lane (server/node_shard.h) → the owner of the stanza's route
//                  address DeliverFromPeer (any shard can route it).
//   cluster        control thread → all RemoteRouteBind, RemoteRouteUnbind, ForgetNode,
//                  ConfigChanged.
//   resumption     (XEP-0198, docs/clients.md) new connection's shard → the token's shard
//                  SmResumeLookup → the holder's shard ClientResumeRequest → the new
//                  connection's shard ClientResumeStanza..., ClientResumeAccepted (or
//                  ClientResumeFailed from either); the token's holder → the token's
//                  shard SmRegister, SmUnregister.
//   guessing       S → every other shard FailureSeen, PreauthChanged.
//   control        a shard → the control thread RouteUp, RouteDown, Forward.
//
// Strings in a record are views: into the sender's strings when it encodes, into the
// payload it was decoded from (valid only during ShardHandler::OnMessage) when read.
// A connection id is not checked: one that is gone, or kNoConnection (0), finds nothing.
// Fields a kind does not use are written as 0 / empty and ignored when read.
//
// Pure; any thread.
#ifndef STANZAD_CORE_ROUTER_SHARD_RECORDS_H_
#define STANZAD_CORE_ROUTER_SHARD_RECORDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "absl/status/statusor.h"
#include "core/xmpp/stanza.h"

namespace stanzad::router {

// The `kind` of each record between shards, as the engine carries it (a uint32_t).
// Only this codec writes and reads it; code elsewhere names a kind only to count or
// drop records in a queue (server/shard_mail.h).
enum ShardRecordKind : uint32_t {
  kConfigChanged = 1,
  kBindRequest,
  kUnbindRequest,
  kRouteBind,
  kRouteUnbind,
  kDeliver,
  kBounce,
  kConflict,
  kRouteBindAck,
  kRemoteRouteBind,
  kRemoteRouteUnbind,
  kForgetNode,
  kDeliverFromPeer,
  kClientBindRequest,
  kClientUnbindRequest,
  kClientBindRefused,
  kClientRouteBind,
  kClientRouteUnbind,
  kClientRouteBindAck,
  kClientPresence,
  kSmRegister,
  kSmUnregister,
  kSmResumeLookup,
  kClientResumeRequest,
  kClientResumeFailed,
  kClientResumeStanza,
  kClientResumeAccepted,
  kFailureSeen,
  kPreauthChanged,
};

// The `kind` of each record from a shard to the control thread. Kinds from 1000 up are
// the node's own (server/node_shard.h).
enum ControlRecordKind : uint32_t {
  kCtlRouteUp = 1,
  kCtlRouteDown,
  kCtlForward,
};

using ConnectionId = uint64_t;  // net::ConnectionId
using NodeId = uint64_t;        // a member of the cluster

// A client's full JID as the router keeps it, canonical: "bare/resource", split at the
// first '/'.
class FullJid {
 public:
  // nullopt unless `text` has a '/' after a non-empty bare JID.
  static std::optional<FullJid> Parse(std::string_view text);

  std::string_view text() const { return text_; }
  std::string_view bare() const { return text_.substr(0, slash_); }
  std::string_view resource() const { return text_.substr(slash_ + 1); }

  bool operator==(const FullJid& other) const { return text_ == other.text_; }

 private:
  FullJid(std::string_view text, size_t slash) : text_(text), slash_(slash) {}
  std::string_view text_;
  size_t slash_;
};

// ---- Configuration ----

// Control thread → all: reload the published RouterConfig.
struct ConfigChanged {
  bool operator==(const ConfigChanged&) const = default;
};

// ---- Call bridges (XEP-0114) ----

// S → O: `connection` authenticated as bridge `address` and asks to hold it.
struct BindRequest {
  ConnectionId connection = 0;
  std::string_view address;
  bool operator==(const BindRequest&) const = default;
};
// S → O: `connection`, which held `address`, is gone (a stale one changes nothing).
struct UnbindRequest {
  ConnectionId connection = 0;
  std::string_view address;
  bool operator==(const UnbindRequest&) const = default;
};
// O → all: `address` is held by `connection` now.
struct RouteBind {
  ConnectionId connection = 0;
  std::string_view address;
  bool operator==(const RouteBind&) const = default;
};
// O → all: `connection` no longer holds `address`.
struct RouteUnbind {
  ConnectionId connection = 0;
  std::string_view address;
  bool operator==(const RouteUnbind&) const = default;
};
// Each shard → S: it applied the RouteBind of `connection` (with every shard's, the
// bridge gets its <handshake/>).
struct RouteBindAck {
  ConnectionId connection = 0;
  bool operator==(const RouteBindAck&) const = default;
};
// O → the shard of `connection`: a newer connection took `address` (a bridge's
// address, or a client's full JID) from it; it is closed with <conflict/>.
struct Conflict {
  ConnectionId connection = 0;
  std::string_view address;
  bool operator==(const Conflict&) const = default;
};

// ---- Stanzas ----

// Any shard → the shard of `destination`: deliver `stanza` there, or answer `sender`
// (kNoConnection: a sender on another node) with the error that says why not.
struct Deliver {
  ConnectionId destination = 0;
  ConnectionId sender = 0;
  std::string_view stanza;
  bool operator==(const Deliver&) const = default;
};
// Any shard → the shard of `sender`: answer `stanza` with a stanza error.
struct Bounce {
  ConnectionId sender = 0;
  xmpp::StanzaErrorCondition condition = xmpp::StanzaErrorCondition::kServiceUnavailable;
  std::string_view stanza;
  bool operator==(const Bounce&) const = default;
};
// A relay lane → the owner of the stanza's route address: `stanza` came from member
// `origin`, to be routed here (never relayed on).
struct DeliverFromPeer {
  NodeId origin = 0;
  std::string_view stanza;
  bool operator==(const DeliverFromPeer&) const = default;
};

// ---- Routes of the cluster (control thread → all) ----

// `address` (a bridge, a client's full JID, an account's bare JID) is bound on `node`.
struct RemoteRouteBind {
  NodeId node = 0;
  std::string_view address;
  bool operator==(const RemoteRouteBind&) const = default;
};
// It no longer is.
struct RemoteRouteUnbind {
  NodeId node = 0;
  std::string_view address;
  bool operator==(const RemoteRouteUnbind&) const = default;
};
// `node` left, or its routes are about to be sent again: forget every route to it.
struct ForgetNode {
  NodeId node = 0;
  bool operator==(const ForgetNode&) const = default;
};

// ---- Clients ----

// S → O (the account's owner): `connection` asks to bind `jid`.
struct ClientBindRequest {
  ConnectionId connection = 0;
  FullJid jid;
  bool operator==(const ClientBindRequest&) const = default;
};
// S → O: `connection`, which bound (or asked to bind) `jid`, is gone.
struct ClientUnbindRequest {
  ConnectionId connection = 0;
  FullJid jid;
  bool operator==(const ClientUnbindRequest&) const = default;
};
// O → S: the account has client_resources_max resources already; the bind is refused.
struct ClientBindRefused {
  ConnectionId connection = 0;
  FullJid jid;
  bool operator==(const ClientBindRefused&) const = default;
};
// O → all: `jid` is bound to `connection` (unavailable until its presence).
struct ClientRouteBind {
  ConnectionId connection = 0;
  FullJid jid;
  bool operator==(const ClientRouteBind&) const = default;
};
// O → all: `connection` no longer holds `jid`.
struct ClientRouteUnbind {
  ConnectionId connection = 0;
  FullJid jid;
  bool operator==(const ClientRouteUnbind&) const = default;
};
// Each shard → S: it applied the ClientRouteBind of `connection`.
struct ClientRouteBindAck {
  ConnectionId connection = 0;
  bool operator==(const ClientRouteBindAck&) const = default;
};
// S → all: the broadcast presence of `jid` on `connection` (RFC 6121 §4.2).
struct ClientPresence {
  ConnectionId connection = 0;
  FullJid jid;
  bool available = false;
  int priority = 0;  // -128..127 (PresencePriority)
  bool operator==(const ClientPresence&) const = default;
};

// ---- Stream management resumption (XEP-0198) ----

// What a client that asks to resume says: the session's token (its previd), the account
// it logged in as, and how many stanzas it says it handled (its h).
// REQUIRES (to encode): no '\n' in `token` or `account`.
struct ResumeRequest {
  std::string_view token;
  std::string_view account;
  uint32_t handled = 0;
  bool operator==(const ResumeRequest&) const = default;
};
// The holder of a resumable session → the token's shard: `token` is held by
// `connection` now.
struct SmRegister {
  ConnectionId connection = 0;
  std::string_view token;
  bool operator==(const SmRegister&) const = default;
};
// Its holder → the token's shard: `connection` gave `token` up (a stale one changes
// nothing).
struct SmUnregister {
  ConnectionId connection = 0;
  std::string_view token;
  bool operator==(const SmUnregister&) const = default;
};
// The new connection's shard → the token's shard: who holds `request.token`?
struct SmResumeLookup {
  ConnectionId connection = 0;  // the new one
  ResumeRequest request;
  bool operator==(const SmResumeLookup&) const = default;
};
// The token's shard → the holder's shard: hand the session of `holder` over to
// `connection`, if `request` matches it.
struct ClientResumeRequest {
  ConnectionId holder = 0;
  ConnectionId connection = 0;  // the new one
  ResumeRequest request;
  bool operator==(const ClientResumeRequest&) const = default;
};
// → the new connection's shard: there is no session to resume.
struct ClientResumeFailed {
  ConnectionId connection = 0;
  bool operator==(const ClientResumeFailed&) const = default;
};
// The holder's shard → the new connection's shard: one unacknowledged stanza to send
// again, in order, before ClientResumeAccepted.
struct ClientResumeStanza {
  ConnectionId connection = 0;
  std::string_view stanza;
  bool operator==(const ClientResumeStanza&) const = default;
};
// The holder's shard → the new connection's shard: the session of `jid` is handed over;
// the old connection had handled `handled_inbound` stanzas from the client.
struct ClientResumeAccepted {
  ConnectionId connection = 0;
  FullJid jid;
  uint32_t handled_inbound = 0;
  bool operator==(const ClientResumeAccepted&) const = default;
};

// ---- Guessing and pre-auth limits (RouterShard's header) ----

enum class FailureOf : uint64_t { kAddress = 0, kAccount = 1 };
// S → every other shard: a failed handshake or login of `key` (an IP address, or an
// account's localpart).
struct FailureSeen {
  FailureOf of = FailureOf::kAddress;
  std::string_view key;
  bool operator==(const FailureSeen&) const = default;
};
enum class PreauthChange : uint64_t { kBegan = 0, kEnded = 1 };
// S → every other shard: a connection from `ip` that has not authenticated began, or
// ended (authenticated or closed).
struct PreauthChanged {
  PreauthChange change = PreauthChange::kBegan;
  std::string_view ip;
  bool operator==(const PreauthChanged&) const = default;
};

using ShardRecord =
    std::variant<ConfigChanged, BindRequest, UnbindRequest, RouteBind, RouteUnbind, RouteBindAck,
                 Conflict, Deliver, Bounce, DeliverFromPeer, RemoteRouteBind, RemoteRouteUnbind,
                 ForgetNode, ClientBindRequest, ClientUnbindRequest, ClientBindRefused,
                 ClientRouteBind, ClientRouteUnbind, ClientRouteBindAck, ClientPresence, SmRegister,
                 SmUnregister, SmResumeLookup, ClientResumeRequest, ClientResumeFailed,
                 ClientResumeStanza, ClientResumeAccepted, FailureSeen, PreauthChanged>;

// ---- To the control thread (which relays between nodes) ----

// `address` (a bridge, a client's full JID, or an account that gained its first
// resource a message to its bare JID goes to) is bound on this node, by its owner shard.
struct RouteUp {
  std::string_view address;
  bool operator==(const RouteUp&) const = default;
};
// It no longer is.
struct RouteDown {
  std::string_view address;
  bool operator==(const RouteDown&) const = default;
};
// `stanza` from `sender` (kNoConnection: the server itself) for member `node`.
struct Forward {
  ConnectionId sender = 0;
  NodeId node = 0;
  std::string_view stanza;
  bool operator==(const Forward&) const = default;
};

using ControlRecord = std::variant<RouteUp, RouteDown, Forward>;

// ---- The codec ----

// A record as the engine's queues carry it (net::CrossShardMessage's fields). The
// payload views the record's own strings, or a string of this object's own when the
// record joins several fields into it (resumption): keep this alive while it is posted.
class EncodedRecord {
 public:
  EncodedRecord(uint32_t kind, uint64_t target, uint64_t argument, std::string_view payload)
      : kind_(kind), target_(target), argument_(argument), payload_(payload) {}
  // A payload of its own: several fields joined into one string.
  static EncodedRecord Joined(uint32_t kind, uint64_t target, uint64_t argument,
                              std::string payload) {
    EncodedRecord record(kind, target, argument, std::string_view());
    record.joined_ = std::move(payload);
    return record;
  }

  // A copy whose payload is its own: to keep while a post waits for room in a queue.
  EncodedRecord Owned() const { return Joined(kind_, target_, argument_, std::string(payload())); }

  uint32_t kind() const { return kind_; }
  uint64_t target() const { return target_; }
  uint64_t argument() const { return argument_; }
  std::string_view payload() const { return joined_ ? std::string_view(*joined_) : payload_; }

 private:
  uint32_t kind_;
  uint64_t target_;
  uint64_t argument_;
  std::string_view payload_;
  std::optional<std::string> joined_;
};

// The fields `record` travels in. Allocates only for the resumption records that join
// several fields (SmResumeLookup, ClientResumeRequest, ClientResumeAccepted).
EncodedRecord EncodeShardRecord(const ShardRecord& record);
EncodedRecord EncodeControlRecord(const ControlRecord& record);

// The record `encoded` holds (its views point into encoded.payload()), or
// InvalidArgument naming the kind and what is wrong with it: an unknown kind, an
// argument out of range, a payload that does not parse.
absl::StatusOr<ShardRecord> DecodeShardRecord(const EncodedRecord& encoded);
absl::StatusOr<ControlRecord> DecodeControlRecord(const EncodedRecord& encoded);

// "kBindRequest", ... ("unknown" for any other): for logs and test names.
std::string_view ShardRecordKindName(uint32_t kind);

}  // namespace stanzad::router

#endif  // STANZAD_CORE_ROUTER_SHARD_RECORDS_H_
