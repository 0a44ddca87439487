#include "core/router/shard_records.h"

#include "absl/status/status.h"
#include "core/base/check.h"
#include "core/base/concat.h"
#include "core/base/decimal.h"

namespace stanzad::router {

std::optional<FullJid> FullJid::Parse(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  return FullJid(text, slash);
}

namespace {

// How each record lies in the four fields. A payload that joins several fields separates
// them with '\n', which none of them can hold: a token is hex, an account a canonical
// localpart, a JID has no control characters (RFC 7622), a count is decimal.

// ClientPresence's argument: bit 0 available, bits 1..8 priority + 128.
constexpr uint64_t kPresenceArgumentMax = (255u << 1) | 1u;

uint64_t PresenceArgument(bool available, int priority) {
  CHECK(priority >= -128 && priority <= 127);
  return (available ? 1u : 0u) | (static_cast<uint64_t>(priority + 128) << 1);
}

// token "\n" account "\n" handled
std::string JoinResumeRequest(const ResumeRequest& request) {
  CHECK(request.token.find('\n') == std::string_view::npos);
  CHECK(request.account.find('\n') == std::string_view::npos);
  return Concat(request.token, "\n", request.account, "\n", std::to_string(request.handled));
}

std::optional<ResumeRequest> SplitResumeRequest(std::string_view payload) {
  const size_t first = payload.find('\n');
  if (first == std::string_view::npos) return std::nullopt;
  const size_t second = payload.find('\n', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  const std::optional<uint32_t> handled = ParseDecimal<uint32_t>(payload.substr(second + 1));
  if (!handled) return std::nullopt;
  return ResumeRequest{payload.substr(0, first), payload.substr(first + 1, second - first - 1),
                       *handled};
}

// full JID "\n" handled
std::string JoinResumeAccepted(const ClientResumeAccepted& record) {
  return Concat(record.jid.text(), "\n", std::to_string(record.handled_inbound));
}

struct ShardEncoder {
  EncodedRecord operator()(const ConfigChanged&) const { return {kConfigChanged, 0, 0, ""}; }
  EncodedRecord operator()(const BindRequest& r) const {
    return {kBindRequest, r.connection, 0, r.address};
  }
  EncodedRecord operator()(const UnbindRequest& r) const {
    return {kUnbindRequest, r.connection, 0, r.address};
  }
  EncodedRecord operator()(const RouteBind& r) const {
    return {kRouteBind, r.connection, 0, r.address};
  }
  EncodedRecord operator()(const RouteUnbind& r) const {
    return {kRouteUnbind, r.connection, 0, r.address};
  }
  EncodedRecord operator()(const RouteBindAck& r) const {
    return {kRouteBindAck, r.connection, 0, ""};
  }
  EncodedRecord operator()(const Conflict& r) const {
    return {kConflict, r.connection, 0, r.address};
  }
  EncodedRecord operator()(const Deliver& r) const {
    return {kDeliver, r.destination, r.sender, r.stanza};
  }
  EncodedRecord operator()(const Bounce& r) const {
    return {kBounce, r.sender, static_cast<uint64_t>(r.condition), r.stanza};
  }
  EncodedRecord operator()(const DeliverFromPeer& r) const {
    return {kDeliverFromPeer, 0, r.origin, r.stanza};
  }
  EncodedRecord operator()(const RemoteRouteBind& r) const {
    return {kRemoteRouteBind, 0, r.node, r.address};
  }
  EncodedRecord operator()(const RemoteRouteUnbind& r) const {
    return {kRemoteRouteUnbind, 0, r.node, r.address};
  }
  EncodedRecord operator()(const ForgetNode& r) const { return {kForgetNode, 0, r.node, ""}; }
  EncodedRecord operator()(const ClientBindRequest& r) const {
    return {kClientBindRequest, r.connection, 0, r.jid.text()};
  }
  EncodedRecord operator()(const ClientUnbindRequest& r) const {
    return {kClientUnbindRequest, r.connection, 0, r.jid.text()};
  }
  EncodedRecord operator()(const ClientBindRefused& r) const {
    return {kClientBindRefused, r.connection, 0, r.jid.text()};
  }
  EncodedRecord operator()(const ClientRouteBind& r) const {
    return {kClientRouteBind, r.connection, 0, r.jid.text()};
  }
  EncodedRecord operator()(const ClientRouteUnbind& r) const {
    return {kClientRouteUnbind, r.connection, 0, r.jid.text()};
  }
  EncodedRecord operator()(const ClientRouteBindAck& r) const {
    return {kClientRouteBindAck, r.connection, 0, ""};
  }
  EncodedRecord operator()(const ClientPresence& r) const {
    return {kClientPresence, r.connection, PresenceArgument(r.available, r.priority), r.jid.text()};
  }
  EncodedRecord operator()(const SmRegister& r) const {
    return {kSmRegister, r.connection, 0, r.token};
  }
  EncodedRecord operator()(const SmUnregister& r) const {
    return {kSmUnregister, r.connection, 0, r.token};
  }
  EncodedRecord operator()(const SmResumeLookup& r) const {
    return EncodedRecord::Joined(kSmResumeLookup, r.connection, 0, JoinResumeRequest(r.request));
  }
  EncodedRecord operator()(const ClientResumeRequest& r) const {
    return EncodedRecord::Joined(kClientResumeRequest, r.holder, r.connection,
                                 JoinResumeRequest(r.request));
  }
  EncodedRecord operator()(const ClientResumeFailed& r) const {
    return {kClientResumeFailed, r.connection, 0, ""};
  }
  EncodedRecord operator()(const ClientResumeStanza& r) const {
    return {kClientResumeStanza, r.connection, 0, r.stanza};
  }
  EncodedRecord operator()(const ClientResumeAccepted& r) const {
    return EncodedRecord::Joined(kClientResumeAccepted, r.connection, 0, JoinResumeAccepted(r));
  }
  EncodedRecord operator()(const FailureSeen& r) const {
    return {kFailureSeen, 0, static_cast<uint64_t>(r.of), r.key};
  }
  EncodedRecord operator()(const PreauthChanged& r) const {
    return {kPreauthChanged, 0, static_cast<uint64_t>(r.change), r.ip};
  }
};

struct ControlEncoder {
  EncodedRecord operator()(const RouteUp& r) const { return {kCtlRouteUp, 0, 0, r.address}; }
  EncodedRecord operator()(const RouteDown& r) const { return {kCtlRouteDown, 0, 0, r.address}; }
  EncodedRecord operator()(const Forward& r) const {
    return {kCtlForward, r.sender, r.node, r.stanza};
  }
};

absl::Status Malformed(uint32_t kind, std::string_view what) {
  return absl::InvalidArgumentError(
      Concat("shard record ", ShardRecordKindName(kind), " (", std::to_string(kind), "): ", what));
}

// The records of a connection and a client's full JID (the payload).
template <typename Record>
absl::StatusOr<ShardRecord> ClientRecord(uint32_t kind, uint64_t target, std::string_view payload) {
  std::optional<FullJid> jid = FullJid::Parse(payload);
  if (!jid) return Malformed(kind, "payload is not a full JID");
  return Record{target, *jid};
}

}  // namespace

EncodedRecord EncodeShardRecord(const ShardRecord& record) {
  return std::visit(ShardEncoder{}, record);
}

EncodedRecord EncodeControlRecord(const ControlRecord& record) {
  return std::visit(ControlEncoder{}, record);
}

absl::StatusOr<ShardRecord> DecodeShardRecord(const EncodedRecord& encoded) {
  const uint32_t kind = encoded.kind();
  const uint64_t target = encoded.target();
  const uint64_t argument = encoded.argument();
  const std::string_view payload = encoded.payload();
  switch (static_cast<ShardRecordKind>(kind)) {
    case kConfigChanged:
      return ConfigChanged{};
    case kBindRequest:
      return BindRequest{target, payload};
    case kUnbindRequest:
      return UnbindRequest{target, payload};
    case kRouteBind:
      return RouteBind{target, payload};
    case kRouteUnbind:
      return RouteUnbind{target, payload};
    case kRouteBindAck:
      return RouteBindAck{target};
    case kConflict:
      return Conflict{target, payload};
    case kDeliver:
      return Deliver{target, argument, payload};
    case kBounce:
      if (argument >= static_cast<uint64_t>(xmpp::kStanzaErrorConditionCount)) {
        return Malformed(kind, "argument is not a stanza error condition");
      }
      return Bounce{target, static_cast<xmpp::StanzaErrorCondition>(argument), payload};
    case kDeliverFromPeer:
      return DeliverFromPeer{argument, payload};
    case kRemoteRouteBind:
      return RemoteRouteBind{argument, payload};
    case kRemoteRouteUnbind:
      return RemoteRouteUnbind{argument, payload};
    case kForgetNode:
      return ForgetNode{argument};
    case kClientBindRequest:
      return ClientRecord<ClientBindRequest>(kind, target, payload);
    case kClientUnbindRequest:
      return ClientRecord<ClientUnbindRequest>(kind, target, payload);
    case kClientBindRefused:
      return ClientRecord<ClientBindRefused>(kind, target, payload);
    case kClientRouteBind:
      return ClientRecord<ClientRouteBind>(kind, target, payload);
    case kClientRouteUnbind:
      return ClientRecord<ClientRouteUnbind>(kind, target, payload);
    case kClientRouteBindAck:
      return ClientRouteBindAck{target};
    case kClientPresence: {
      std::optional<FullJid> full = FullJid::Parse(payload);
      if (!full) return Malformed(kind, "payload is not a full JID");
      if (argument > kPresenceArgumentMax) {
        return Malformed(kind, "argument is not an availability and a priority");
      }
      return ClientPresence{target, *full, (argument & 1) != 0,
                            static_cast<int>(argument >> 1) - 128};
    }
    case kSmRegister:
      return SmRegister{target, payload};
    case kSmUnregister:
      return SmUnregister{target, payload};
    case kSmResumeLookup: {
      std::optional<ResumeRequest> request = SplitResumeRequest(payload);
      if (!request) return Malformed(kind, "payload is not token, account and h");
      return SmResumeLookup{target, *request};
    }
    case kClientResumeRequest: {
      std::optional<ResumeRequest> request = SplitResumeRequest(payload);
      if (!request) return Malformed(kind, "payload is not token, account and h");
      return ClientResumeRequest{target, argument, *request};
    }
    case kClientResumeFailed:
      return ClientResumeFailed{target};
    case kClientResumeStanza:
      return ClientResumeStanza{target, payload};
    case kClientResumeAccepted: {
      const size_t newline = payload.find('\n');
      if (newline == std::string_view::npos) {
        return Malformed(kind, "payload is not a full JID and a count");
      }
      std::optional<FullJid> full = FullJid::Parse(payload.substr(0, newline));
      std::optional<uint32_t> handled = ParseDecimal<uint32_t>(payload.substr(newline + 1));
      if (!full || !handled) return Malformed(kind, "payload is not a full JID and a count");
      return ClientResumeAccepted{target, *full, *handled};
    }
    case kFailureSeen:
      if (argument > static_cast<uint64_t>(FailureOf::kAccount)) {
        return Malformed(kind, "argument is neither an address nor an account");
      }
      return FailureSeen{static_cast<FailureOf>(argument), payload};
    case kPreauthChanged:
      if (argument > static_cast<uint64_t>(PreauthChange::kEnded)) {
        return Malformed(kind, "argument is neither began nor ended");
      }
      return PreauthChanged{static_cast<PreauthChange>(argument), payload};
  }
  return Malformed(kind, "unknown kind");
}

absl::StatusOr<ControlRecord> DecodeControlRecord(const EncodedRecord& encoded) {
  switch (static_cast<ControlRecordKind>(encoded.kind())) {
    case kCtlRouteUp:
      return RouteUp{encoded.payload()};
    case kCtlRouteDown:
      return RouteDown{encoded.payload()};
    case kCtlForward:
      return Forward{encoded.target(), encoded.argument(), encoded.payload()};
  }
  return absl::InvalidArgumentError(
      Concat("control record of unknown kind ", std::to_string(encoded.kind())));
}

std::string_view ShardRecordKindName(uint32_t kind) {
  switch (static_cast<ShardRecordKind>(kind)) {
    case kConfigChanged:
      return "kConfigChanged";
    case kBindRequest:
      return "kBindRequest";
    case kUnbindRequest:
      return "kUnbindRequest";
    case kRouteBind:
      return "kRouteBind";
    case kRouteUnbind:
      return "kRouteUnbind";
    case kDeliver:
      return "kDeliver";
    case kBounce:
      return "kBounce";
    case kConflict:
      return "kConflict";
    case kRouteBindAck:
      return "kRouteBindAck";
    case kRemoteRouteBind:
      return "kRemoteRouteBind";
    case kRemoteRouteUnbind:
      return "kRemoteRouteUnbind";
    case kForgetNode:
      return "kForgetNode";
    case kDeliverFromPeer:
      return "kDeliverFromPeer";
    case kClientBindRequest:
      return "kClientBindRequest";
    case kClientUnbindRequest:
      return "kClientUnbindRequest";
    case kClientBindRefused:
      return "kClientBindRefused";
    case kClientRouteBind:
      return "kClientRouteBind";
    case kClientRouteUnbind:
      return "kClientRouteUnbind";
    case kClientRouteBindAck:
      return "kClientRouteBindAck";
    case kClientPresence:
      return "kClientPresence";
    case kSmRegister:
      return "kSmRegister";
    case kSmUnregister:
      return "kSmUnregister";
    case kSmResumeLookup:
      return "kSmResumeLookup";
    case kClientResumeRequest:
      return "kClientResumeRequest";
    case kClientResumeFailed:
      return "kClientResumeFailed";
    case kClientResumeStanza:
      return "kClientResumeStanza";
    case kClientResumeAccepted:
      return "kClientResumeAccepted";
    case kFailureSeen:
      return "kFailureSeen";
    case kPreauthChanged:
      return "kPreauthChanged";
  }
  return "unknown";
}

}  // namespace stanzad::router
