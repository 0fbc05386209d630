// core/bus_ops_test.cpp - the per-Ksock operations of a Bus other than the
// send algorithm: open/close, modes, BIND/UNBIND/REPLIER, write, read,
// NEXTMSG, LENLEFT, DISCARD, LASTSENT, MAXMSGS, NUMMSGS, UNREPLIEDTO,
// MSGONLYONCE, VERBOSE, MAXMSGSIZE, readiness and effects
// (KBUS-SPEC.md §1.2, §2.2, §4.1-§4.7, §14-3, §14-19, §14-27).
#include "core/bus.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "core/test_helpers.hpp"

namespace kbus::core {
namespace {

using namespace test;

class BusOpsTest : public BusTest {};

const std::string kLong1001 = "$." + std::string(999, 'a');
const std::string kLong1000 = "$." + std::string(998, 'a');

// --- open / close / modes ---------------------------------------------------

// §1.2-2: ids start at 1, count up, and are never reused.
TEST_F(BusOpsTest, KsockIdsCountUpAndAreNeverReused) {
  EXPECT_EQ(bus.open(rw()), 1u);
  EXPECT_EQ(bus.open(read_only()), 2u);
  EXPECT_EQ(bus.open(rw()), 3u);
  EXPECT_TRUE(bus.is_open(2));
  bus.close(2);
  EXPECT_FALSE(bus.is_open(2));
  EXPECT_EQ(bus.open(rw()), 4u);
  EXPECT_FALSE(bus.is_open(2));
  EXPECT_EQ(bus.number(), 0u);
}

// §1.1-3: buses are isolated; Ksock 1 on one bus is unrelated to Ksock 1 on
// another, and serials are per bus.
TEST_F(BusOpsTest, BusesAreIsolated) {
  Bus other(3);
  EXPECT_EQ(other.number(), 3u);
  KsockId a = bus.open(rw());
  KsockId b = other.open(rw());
  EXPECT_EQ(a, 1u);
  EXPECT_EQ(b, 1u);
  ASSERT_TRUE(other.bind(b, 0, "$.Fred").ok());
  EXPECT_EQ(send_ok(bus, a, announcement("$.Fred")), (MessageId{0, 1}));
  EXPECT_EQ(other.num_msgs(b), 0u);
  EXPECT_EQ(send_ok(other, b, announcement("$.Fred")), (MessageId{0, 1}));
  EXPECT_EQ(other.num_msgs(b), 1u);
  other.check_invariants();
}

// §1.2-3: write on a Ksock not open for writing → EBADF; never writable.
TEST_F(BusOpsTest, WriteOnReadOnlyIsEbadf) {
  KsockId k = bus.open(read_only());
  EXPECT_EQ(bus.write(k, entire("$.Fred")).error(), Errc::ebadf);
  EXPECT_FALSE(bus.writable(k));
  EXPECT_EQ(bus.send(k).error, Errc::enomsg);
}

// §1.2-3: read on a Ksock not open for reading → EBADF (and NEXTREAD pops
// nothing, docs/protocol.md §4.2).
TEST_F(BusOpsTest, ReadOnWriteOnlyIsEbadf) {
  KsockId w = bus.open(write_only());
  ASSERT_TRUE(bus.bind(w, 0, "$.Fred").ok());
  send_ok(bus, w, announcement("$.Fred"));
  ASSERT_EQ(bus.num_msgs(w), 1u);
  std::string out;
  EXPECT_EQ(bus.next_read(w, out).error(), Errc::ebadf);
  EXPECT_EQ(bus.num_msgs(w), 1u);
  EXPECT_EQ(bus.next_msg(w), 100u);  // NEXTMSG itself is permitted in any mode
  EXPECT_EQ(bus.read(w, 10, out).error(), Errc::ebadf);
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(bus.writable(w));
}

// §1.2-3: a read-only Ksock may bind as replier and receives Requests.
TEST_F(BusOpsTest, ReadOnlyMayBindAsReplier) {
  KsockId r = bus.open(read_only());
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.bind(r, 1, "$.Fred").ok());
  MessageId id = send_ok(bus, s, request("$.Fred"));
  Message got = receive_one(bus, r);
  EXPECT_EQ(got.hdr.id, id);
  EXPECT_EQ(got.hdr.flags, flag::kWantAReply | flag::kWantYouToReply);
  EXPECT_EQ(bus.unreplied_to(r), 1u);
}

// --- BIND / UNBIND / REPLIER ------------------------------------------------

// §2.2 / §4.6 BIND: name_len 0 → EBADMSG, > 1000 → ENAMETOOLONG (by length,
// before validity), invalid → EBADMSG.
TEST_F(BusOpsTest, BindNameErrors) {
  KsockId k = bus.open(rw());
  for (std::uint32_t rep : {0u, 1u}) {
    EXPECT_EQ(bus.bind(k, rep, "").error(), Errc::ebadmsg);
    EXPECT_EQ(bus.bind(k, rep, kLong1001).error(), Errc::enametoolong);
    EXPECT_EQ(bus.bind(k, rep, std::string(1001, '#')).error(), Errc::enametoolong);
    EXPECT_EQ(bus.bind(k, rep, "$.Fred.").error(), Errc::ebadmsg);
    EXPECT_EQ(bus.bind(k, rep, "Fred").error(), Errc::ebadmsg);
    EXPECT_EQ(bus.bind(k, rep, "$.*.Fred").error(), Errc::ebadmsg);
  }
  EXPECT_TRUE(bus.bind(k, 0, kLong1000).ok());
  EXPECT_TRUE(bus.bind(k, 1, kLong1000).ok());
  EXPECT_EQ(*bus.find_replier(kLong1000), k);
}

// §2.2: a replier binding of $.KBUS.ReplierBindEvent → EBADMSG; a listener
// binding of it is fine.
TEST_F(BusOpsTest, CannotBindReplierBindEventAsReplier) {
  KsockId k = bus.open(rw());
  EXPECT_EQ(bus.bind(k, 1, "$.KBUS.ReplierBindEvent").error(), Errc::ebadmsg);
  EXPECT_TRUE(bus.bind(k, 0, "$.KBUS.ReplierBindEvent").ok());
  EXPECT_EQ(*bus.find_replier("$.KBUS.ReplierBindEvent"), 0u);
}

// §1.3 / §4.6: one replier per exact name string → EADDRINUSE, by any Ksock
// including the binder itself; other strings (wildcards) may coexist.
TEST_F(BusOpsTest, ReplierAddressInUse) {
  KsockId a = bus.open(rw());
  KsockId b = bus.open(rw());
  ASSERT_TRUE(bus.bind(a, 1, "$.Fred").ok());
  EXPECT_EQ(bus.bind(b, 1, "$.Fred").error(), Errc::eaddrinuse);
  EXPECT_EQ(bus.bind(a, 1, "$.Fred").error(), Errc::eaddrinuse);
  EXPECT_TRUE(bus.bind(b, 1, "$.*").ok());
  EXPECT_TRUE(bus.bind(b, 1, "$.%").ok());
  EXPECT_EQ(bus.bind(a, 1, "$.*").error(), Errc::eaddrinuse);
  EXPECT_TRUE(bus.bind(b, 0, "$.Fred").ok());  // listener bindings are separate
  EXPECT_EQ(*bus.find_replier("$.Fred"), a);
  ASSERT_TRUE(bus.unbind(a, 1, "$.Fred").ok());
  EXPECT_TRUE(bus.bind(b, 1, "$.Fred").ok());
  EXPECT_EQ(*bus.find_replier("$.Fred"), b);
}

// §4.6 BIND: duplicate listener bindings are allowed, each yields a copy.
TEST_F(BusOpsTest, DuplicateListenerBindings) {
  KsockId k = bus.open(rw());
  ASSERT_TRUE(bus.bind(k, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(k, 0, "$.Fred").ok());
  send_ok(bus, k, announcement("$.Fred"));
  EXPECT_EQ(bus.num_msgs(k), 2u);
}

// §4.6 UNBIND: name errors as BIND; no such binding (kind, exact string,
// this Ksock) → EINVAL.
TEST_F(BusOpsTest, UnbindErrors) {
  KsockId a = bus.open(rw());
  KsockId b = bus.open(rw());
  ASSERT_TRUE(bus.bind(a, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(a, 1, "$.Jim").ok());
  EXPECT_EQ(bus.unbind(a, 0, "").error(), Errc::ebadmsg);
  EXPECT_EQ(bus.unbind(a, 0, kLong1001).error(), Errc::enametoolong);
  EXPECT_EQ(bus.unbind(a, 0, "$.Fred.").error(), Errc::ebadmsg);
  EXPECT_EQ(bus.unbind(a, 0, "$.Bob").error(), Errc::einval);
  EXPECT_EQ(bus.unbind(a, 1, "$.Fred").error(), Errc::einval);  // wrong kind
  EXPECT_EQ(bus.unbind(a, 0, "$.Jim").error(), Errc::einval);
  EXPECT_EQ(bus.unbind(b, 0, "$.Fred").error(), Errc::einval);  // not b's
  EXPECT_EQ(bus.unbind(a, 0, "$.*").error(), Errc::einval);     // no resolution
  EXPECT_TRUE(bus.unbind(a, 0, "$.Fred").ok());
  EXPECT_EQ(bus.unbind(a, 0, "$.Fred").error(), Errc::einval);
  EXPECT_TRUE(bus.unbind(a, 1, "$.Jim").ok());
  EXPECT_EQ(*bus.find_replier("$.Jim"), 0u);
}

// §14-27 [DEV]: is_replier values other than 0/1 are normalised to 1.
TEST_F(BusOpsTest, IsReplierIsNormalised) {
  KsockId k = bus.open(rw());
  ASSERT_TRUE(bus.bind(k, 2, "$.Fred").ok());
  EXPECT_EQ(*bus.find_replier("$.Fred"), k);
  EXPECT_EQ(bus.bind(k, 0xFFFFFFFF, "$.Fred").error(), Errc::eaddrinuse);
  EXPECT_TRUE(bus.unbind(k, 1, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(k, 1, "$.Jim").ok());
  EXPECT_TRUE(bus.unbind(k, 7, "$.Jim").ok());
  EXPECT_EQ(*bus.find_replier("$.Jim"), 0u);
}

// §2.2 / §4.6 REPLIER: length 0 or > 1000 → ENAMETOOLONG; no validity
// check; exact string lookup [K].
TEST_F(BusOpsTest, FindReplier) {
  KsockId k = bus.open(rw());
  EXPECT_EQ(bus.find_replier("").error(), Errc::enametoolong);
  EXPECT_EQ(bus.find_replier(kLong1001).error(), Errc::enametoolong);
  auto r = bus.find_replier("not a name");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 0u);
  ASSERT_TRUE(bus.bind(k, 1, "$.Fred.*").ok());
  EXPECT_EQ(*bus.find_replier("$.Fred.Jim"), 0u);
  EXPECT_EQ(*bus.find_replier("$.Fred.*"), k);
  ASSERT_TRUE(bus.bind(k, 0, "$.Bob").ok());
  EXPECT_EQ(*bus.find_replier("$.Bob"), 0u);  // listeners are not repliers
  bus.close(k);  // §7.2-4: CLOSE removes all bindings
  EXPECT_EQ(*bus.find_replier("$.Fred.*"), 0u);
}

// --- write / SEND basics ----------------------------------------------------

// §4.2-7: a write consumes all its bytes and returns the count; §4.2-8
// writes may be split anywhere.
TEST_F(BusOpsTest, WriteReturnsCountAndMayBeSplit) {
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  const std::string bytes = encode_entire(announcement("$.Fred", "1234567"), kH);
  for (std::size_t i = 0; i < bytes.size(); i += 5) {
    auto w = bus.write(s, bytes.substr(i, 5));
    ASSERT_TRUE(w.ok()) << i;
    EXPECT_EQ(*w, std::min<std::size_t>(5, bytes.size() - i));
  }
  SendOutcome o = bus.send(s);
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_EQ(o.id, (MessageId{0, 1}));
  Message got = receive_one(bus, l);
  EXPECT_EQ(got.name, "$.Fred");
  EXPECT_EQ(got.data, "1234567");
}

// §5.2-1: SEND with nothing written → ENOMSG; nothing changes.
TEST_F(BusOpsTest, SendNothingIsEnomsg) {
  KsockId s = bus.open(rw());
  SendOutcome o = bus.send(s);
  EXPECT_EQ(o.error, Errc::enomsg);
  EXPECT_TRUE(o.id.is_zero());
  EXPECT_TRUE(bus.last_sent(s).is_zero());
  send_ok(bus, s, announcement("$.Fred"));
  EXPECT_EQ(bus.send(s).error, Errc::enomsg);  // nothing since the last SEND
  EXPECT_EQ(bus.last_sent(s), (MessageId{0, 1}));
}

// §4.2-2 / §14-19: a zero-length write starts an empty message; SEND → EINVAL.
TEST_F(BusOpsTest, ZeroLengthWriteThenSendIsEinval) {
  KsockId s = bus.open(rw());
  auto w = bus.write(s, "");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, 0u);
  EXPECT_EQ(bus.send(s).error, Errc::einval);
  EXPECT_EQ(bus.send(s).error, Errc::enomsg);  // the partial message was discarded
  EXPECT_TRUE(bus.last_sent(s).is_zero());
}

// §5.2-2: an incomplete message at SEND → EINVAL, and it is discarded.
TEST_F(BusOpsTest, IncompleteMessageAtSend) {
  KsockId s = bus.open(rw());
  const std::string bytes = entire("$.Fred", "dada");
  ASSERT_TRUE(bus.write(s, bytes.substr(0, bytes.size() - 1)).ok());
  EXPECT_EQ(bus.send(s).error, Errc::einval);
  EXPECT_EQ(bus.send(s).error, Errc::enomsg);
  // The next write starts a new message: the last byte alone is not a header.
  ASSERT_TRUE(bus.write(s, bytes).ok());
  EXPECT_EQ(bus.send(s).error, Errc::ok);
}

// §4.2-6: bytes after a complete message → EMSGSIZE; §4.2-7 the message is
// discarded.
TEST_F(BusOpsTest, BytesAfterCompleteMessage) {
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.write(s, entire("$.Fred")).ok());
  EXPECT_EQ(bus.write(s, "x").error(), Errc::emsgsize);
  EXPECT_EQ(bus.send(s).error, Errc::enomsg);
  EXPECT_EQ(bus.write(s, entire("$.Fred") + entire("$.Fred")).error(), Errc::emsgsize);
  EXPECT_EQ(bus.send(s).error, Errc::enomsg);
  EXPECT_EQ(bus.num_msgs(l), 0u);
}

// §4.2-4/-7 through the Bus: a header error discards the message; the next
// write starts afresh.
TEST_F(BusOpsTest, WriteErrorDiscards) {
  KsockId s = bus.open(rw());
  RawHeader r;
  r.name_len = 6;
  r.hdr.flags = flag::kAllOrWait | flag::kAllOrFail;
  EXPECT_EQ(bus.write(s, raw_header(r)).error(), Errc::einval);
  EXPECT_EQ(bus.send(s).error, Errc::enomsg);
  ASSERT_TRUE(bus.write(s, raw_header(RawHeader{}).substr(0, 4)).ok());
  EXPECT_EQ(bus.write(s, std::string(84, '\0')).error(), Errc::einval);  // no end guard
  EXPECT_EQ(bus.write(s, entire("$.Fred.*")).error(), Errc::ebadmsg);
  EXPECT_EQ(bus.send(s).error, Errc::enomsg);
  EXPECT_EQ(send(bus, s, announcement("$.Fred")).error, Errc::ok);
}

// §3.1 / §14-26: a Ksock declaring H=72 writes and reads 72-byte headers.
TEST_F(BusOpsTest, Abi32Ksock) {
  KsockId s = bus.open(abi32());
  KsockId l = bus.open(abi32());
  KsockId l64 = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(l64, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.write(s, entire("$.Fred", "1234567", 0, 72)).ok());
  ASSERT_EQ(bus.send(s).error, Errc::ok);
  EXPECT_EQ(bus.next_msg(l), 92u);
  EXPECT_EQ(bus.len_left(l), 92u);
  std::string out;
  ASSERT_EQ(*bus.read(l, 1000, out), 92u);
  auto m = decode_entire(out, 72);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->name, "$.Fred");
  EXPECT_EQ(m->data, "1234567");
  EXPECT_EQ(m->hdr.from, s);
  EXPECT_EQ(bus.next_msg(l64), 108u);  // the same message in the 64-bit ABI
}

// §4.2-1 / §4.6 DISCARD: drops the message being written; always succeeds.
TEST_F(BusOpsTest, Discard) {
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  bus.discard(s);  // nothing to discard
  ASSERT_TRUE(bus.write(s, entire("$.Fred")).ok());
  bus.discard(s);
  EXPECT_EQ(bus.send(s).error, Errc::enomsg);
  ASSERT_TRUE(bus.write(s, entire("$.Fred").substr(0, 20)).ok());
  bus.discard(s);
  EXPECT_EQ(send(bus, s, announcement("$.Fred", "x")).error, Errc::ok);
  EXPECT_EQ(bus.num_msgs(l), 1u);
  EXPECT_EQ(receive_one(bus, l).data, "x");
}

// §4.6 LASTSENT: {0,0} before any send, then the id of the last SEND.
TEST_F(BusOpsTest, LastSent) {
  KsockId s = bus.open(rw());
  KsockId t = bus.open(rw());
  EXPECT_TRUE(bus.last_sent(s).is_zero());
  send_ok(bus, s, announcement("$.Fred"));
  send_ok(bus, t, announcement("$.Fred"));
  send_ok(bus, s, announcement("$.Fred"));
  EXPECT_EQ(bus.last_sent(s), (MessageId{0, 3}));
  EXPECT_EQ(bus.last_sent(t), (MessageId{0, 2}));
}

// --- pointy form ------------------------------------------------------------

// §3.4 / docs/protocol.md §4.1: a pointy header, then SEND with name+data.
TEST_F(BusOpsTest, PointySend) {
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.write(s, pointy_header(6, 4, 0xFFFF0000)).ok());
  SendOutcome o = bus.send(s, std::string_view("$.Freddada"));
  EXPECT_EQ(o.error, Errc::ok);
  EXPECT_EQ(o.id, (MessageId{0, 1}));
  Message got = receive_one(bus, l);
  EXPECT_EQ(got.name, "$.Fred");
  EXPECT_EQ(got.data, "dada");
  EXPECT_EQ(got.hdr.from, s);
  EXPECT_EQ(got.hdr.flags, 0xFFFF0000u);

  ASSERT_TRUE(bus.write(s, pointy_header(6, 0)).ok());  // no data
  EXPECT_EQ(bus.send(s, std::string_view("$.Fred")).error, Errc::ok);
  got = receive_one(bus, l);
  EXPECT_EQ(got.name, "$.Fred");
  EXPECT_EQ(got.data, "");
}

// §5.2-4: the pointy name is checked at SEND: invalid or wildcard → EBADMSG,
// message discarded, no id assigned.
TEST_F(BusOpsTest, PointyBadNameAtSend) {
  KsockId s = bus.open(rw());
  for (std::string_view bad : {"$.Fr-d", "$.Fred.*", "$.Fred.%", "$.Fre."}) {
    ASSERT_TRUE(bus.write(s, pointy_header(static_cast<std::uint32_t>(bad.size()), 0)).ok());
    SendOutcome o = bus.send(s, bad);
    EXPECT_EQ(o.error, Errc::ebadmsg) << bad;
    EXPECT_TRUE(o.id.is_zero()) << bad;
    EXPECT_EQ(bus.send(s).error, Errc::enomsg) << bad;
  }
  EXPECT_TRUE(bus.last_sent(s).is_zero());
  EXPECT_EQ(send_ok(bus, s, announcement("$.Fred")), (MessageId{0, 1}));
}

// docs/protocol.md §4.1: a pointy SEND without payload, or with a payload of
// the wrong size, fails with EFAULT and the message is discarded.
TEST_F(BusOpsTest, PointyPayloadMismatchIsEfault) {
  KsockId s = bus.open(rw());
  ASSERT_TRUE(bus.write(s, pointy_header(6, 4)).ok());
  EXPECT_EQ(bus.send(s).error, Errc::efault);
  EXPECT_EQ(bus.send(s).error, Errc::enomsg);
  ASSERT_TRUE(bus.write(s, pointy_header(6, 4)).ok());
  EXPECT_EQ(bus.send(s, std::string_view("$.Freddad")).error, Errc::efault);
  EXPECT_EQ(bus.send(s).error, Errc::enomsg);
  EXPECT_TRUE(bus.last_sent(s).is_zero());
}

// --- NEXTMSG / read / LENLEFT -----------------------------------------------

// §4.3-2 / §4.6: with nothing current, read gives EOF and LENLEFT 0; NEXTMSG
// on an empty queue returns 0.
TEST_F(BusOpsTest, NothingToRead) {
  KsockId k = bus.open(rw());
  std::string out;
  EXPECT_EQ(bus.next_msg(k), 0u);
  EXPECT_EQ(bus.len_left(k), 0u);
  EXPECT_EQ(*bus.read(k, 100, out), 0u);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(*bus.next_read(k, out), 0u);
  EXPECT_TRUE(out.empty());
}

// §4.3-3/-4 and §14-3 [DEV]: one byte at a time, LENLEFT exact at every
// position; the bytes are the entire form; the message is released at the end.
TEST_F(BusOpsTest, ReadByteByByteWithExactLenLeft) {
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  Message m = announcement("$.Fred", "1234567");
  MessageId id = send_ok(bus, s, m);
  ASSERT_EQ(bus.next_msg(l), 108u);
  EXPECT_EQ(bus.num_msgs(l), 0u);  // NEXTMSG pops; the current message is not counted
  std::string out;
  for (std::uint32_t i = 0; i < 108; ++i) {
    ASSERT_EQ(bus.len_left(l), 108u - i) << "at byte " << i;
    ASSERT_EQ(*bus.read(l, 1, out), 1u) << "at byte " << i;
  }
  EXPECT_EQ(bus.len_left(l), 0u);
  EXPECT_EQ(*bus.read(l, 1, out), 0u);
  ASSERT_EQ(out.size(), 108u);
  m.hdr.id = id;
  m.hdr.from = s;
  EXPECT_EQ(out, encode_entire(m, kH));
}

// §4.3-3: read(count) returns min(count, remaining).
TEST_F(BusOpsTest, ReadInChunks) {
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  send_ok(bus, s, announcement("$.Fred", "dada"));
  ASSERT_EQ(bus.next_msg(l), 104u);
  std::string out;
  EXPECT_EQ(*bus.read(l, 50, out), 50u);
  EXPECT_EQ(bus.len_left(l), 54u);
  EXPECT_EQ(*bus.read(l, 0, out), 0u);
  EXPECT_EQ(bus.len_left(l), 54u);
  EXPECT_EQ(*bus.read(l, 100, out), 54u);
  EXPECT_EQ(out.size(), 104u);
  EXPECT_EQ(*bus.read(l, 100, out), 0u);
  EXPECT_TRUE(decode_entire(out, kH).ok());
}

// §4.3-5: NEXTMSG while a message is current silently discards it.
TEST_F(BusOpsTest, NextMsgDiscardsCurrent) {
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  send_ok(bus, s, announcement("$.Fred", "1st!"));
  send_ok(bus, s, announcement("$.Fred", "2nd!"));
  send_ok(bus, s, announcement("$.Fred", "3rd!"));
  ASSERT_EQ(bus.next_msg(l), 104u);
  std::string out;
  ASSERT_EQ(*bus.read(l, 10, out), 10u);
  ASSERT_EQ(bus.next_msg(l), 104u);  // "1st!" discarded part-read
  ASSERT_EQ(bus.next_msg(l), 104u);  // "2nd!" discarded unread
  EXPECT_EQ(bus.len_left(l), 104u);
  out.clear();
  ASSERT_EQ(*bus.read(l, 200, out), 104u);
  EXPECT_EQ(decode_entire(out, kH)->data, "3rd!");
  EXPECT_EQ(bus.next_msg(l), 0u);
  EXPECT_EQ(bus.len_left(l), 0u);
}

// §4.3 / §4.4: readable iff the queue is non-empty (the current message does
// not count); NUMMSGS counts the queue.
TEST_F(BusOpsTest, ReadableAndNumMsgs) {
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  EXPECT_FALSE(bus.readable(l));
  EXPECT_EQ(bus.num_msgs(l), 0u);
  send_ok(bus, s, announcement("$.Fred"));
  send_ok(bus, s, announcement("$.Fred"));
  EXPECT_TRUE(bus.readable(l));
  EXPECT_EQ(bus.num_msgs(l), 2u);
  bus.next_msg(l);
  EXPECT_EQ(bus.num_msgs(l), 1u);
  EXPECT_TRUE(bus.readable(l));
  bus.next_msg(l);
  EXPECT_EQ(bus.num_msgs(l), 0u);
  EXPECT_FALSE(bus.readable(l));
  EXPECT_EQ(bus.len_left(l), 100u);
}

// §4.4: writable iff open for writing and not sending.
TEST_F(BusOpsTest, Writable) {
  KsockId k = bus.open(rw());
  EXPECT_TRUE(bus.writable(k));
  EXPECT_FALSE(bus.sending(k));
  ASSERT_TRUE(bus.write(k, entire("$.Fred").substr(0, 10)).ok());
  EXPECT_TRUE(bus.writable(k));  // a partly written message does not matter
}

// --- per-Ksock settings -----------------------------------------------------

// §4.6 MAXMSGS: 0 queries; any n >= 1 sets (no upper bound); lowering drops
// nothing, the queue just counts as full.
TEST_F(BusOpsTest, MaxMsgs) {
  KsockId s = bus.open(rw());
  KsockId l = bus.open(rw());
  EXPECT_EQ(bus.max_msgs(l, 0), 100u);
  EXPECT_EQ(bus.max_msgs(l, 1), 1u);
  EXPECT_EQ(bus.max_msgs(l, 0), 1u);
  EXPECT_EQ(bus.max_msgs(l, 5000000), 5000000u);
  EXPECT_EQ(bus.max_msgs(l, 3), 3u);
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  for (int i = 0; i < 3; ++i) send_ok(bus, s, announcement("$.Fred"));
  EXPECT_EQ(bus.max_msgs(l, 1), 1u);
  EXPECT_EQ(bus.num_msgs(l), 3u);
  send_ok(bus, s, announcement("$.Fred", "skipped"));
  EXPECT_EQ(bus.num_msgs(l), 3u);
  EXPECT_EQ(drain_names(bus, l).size(), 3u);
}

// §4.7: the default queue length comes from the bus limits.
TEST_F(BusOpsTest, DefaultMaxMsgsFromLimits) {
  BusLimits lim;
  lim.default_max_msgs = 7;
  Bus b2(1, lim);
  KsockId k = b2.open(rw());
  EXPECT_EQ(b2.max_msgs(k, 0), 7u);
  b2.check_invariants();
}

// §4.6 MSGONLYONCE: 1 on, 0 off, 0xFFFFFFFF query, else EINVAL; returns
// the previous value.
TEST_F(BusOpsTest, OnlyOnceValueConvention) {
  KsockId k = bus.open(rw());
  EXPECT_EQ(*bus.only_once(k, 0xFFFFFFFF), 0u);
  EXPECT_EQ(*bus.only_once(k, 1), 0u);
  EXPECT_EQ(*bus.only_once(k, 0xFFFFFFFF), 1u);
  EXPECT_EQ(*bus.only_once(k, 1), 1u);
  EXPECT_EQ(bus.only_once(k, 2).error(), Errc::einval);
  EXPECT_EQ(*bus.only_once(k, 0), 1u);
  EXPECT_EQ(*bus.only_once(k, 0xFFFFFFFF), 0u);
  KsockId other = bus.open(rw());
  EXPECT_EQ(*bus.only_once(other, 0xFFFFFFFF), 0u);  // per Ksock
}

// §4.6 VERBOSE: same convention, per bus, default off.
TEST_F(BusOpsTest, VerboseValueConvention) {
  EXPECT_FALSE(bus.verbose_on());
  EXPECT_EQ(*bus.verbose(0xFFFFFFFF), 0u);
  EXPECT_EQ(*bus.verbose(1), 0u);
  EXPECT_TRUE(bus.verbose_on());
  EXPECT_EQ(*bus.verbose(1), 1u);
  EXPECT_EQ(bus.verbose(5).error(), Errc::einval);
  EXPECT_EQ(*bus.verbose(0), 1u);
  EXPECT_FALSE(bus.verbose_on());
}

// §4.6 MAXMSGSIZE: 0 query, 1 absolute max, < 100 or > absolute → EINVAL.
TEST_F(BusOpsTest, MaxMsgSizeBounds) {
  EXPECT_EQ(*bus.max_msg_size(0), 1024u);
  EXPECT_EQ(*bus.max_msg_size(1), 409600u);
  EXPECT_EQ(bus.max_msg_size(2).error(), Errc::einval);
  EXPECT_EQ(bus.max_msg_size(99).error(), Errc::einval);
  EXPECT_EQ(bus.max_msg_size(409601).error(), Errc::einval);
  EXPECT_EQ(*bus.max_msg_size(0), 1024u);
  EXPECT_EQ(*bus.max_msg_size(100), 100u);
  EXPECT_EQ(*bus.max_msg_size(0), 100u);
  EXPECT_EQ(*bus.max_msg_size(409600), 409600u);
  EXPECT_EQ(*bus.max_msg_size(0), 409600u);
  EXPECT_EQ(*bus.max_msg_size(1), 409600u);
}

// §4.7 / §14-12: both limits are configurable.
TEST_F(BusOpsTest, MaxMsgSizeFromLimits) {
  BusLimits lim;
  lim.max_msg_size = 200;
  lim.abs_max_msg_size = 300;
  Bus b2(1, lim);
  EXPECT_EQ(*b2.max_msg_size(0), 200u);
  EXPECT_EQ(*b2.max_msg_size(1), 300u);
  EXPECT_EQ(b2.max_msg_size(301).error(), Errc::einval);
  EXPECT_EQ(*b2.max_msg_size(300), 300u);
}

// §3.5 / §4.2-4: writes are checked against the current limit with the
// writer's H; existing queued messages are unaffected by a change.
TEST_F(BusOpsTest, MaxMsgSizeAppliesToWrites) {
  KsockId s = bus.open(rw());
  KsockId s32 = bus.open(abi32());
  KsockId l = bus.open(rw());
  ASSERT_TRUE(bus.bind(l, 0, "$.Fred").ok());
  const std::string data(300, 'x');  // ENTIRE_LEN 88+8+300+4 = 400
  EXPECT_EQ(send(bus, s, announcement("$.Fred", data)).error, Errc::ok);
  ASSERT_EQ(*bus.max_msg_size(399), 399u);
  EXPECT_EQ(bus.write(s, entire("$.Fred", data)).error(), Errc::emsgsize);
  EXPECT_EQ(bus.send(s).error, Errc::enomsg);
  ASSERT_EQ(*bus.max_msg_size(400), 400u);
  EXPECT_EQ(send(bus, s, announcement("$.Fred", data)).error, Errc::ok);
  ASSERT_EQ(*bus.max_msg_size(384), 384u);  // 72+8+300+4 = 384
  EXPECT_TRUE(bus.write(s32, entire("$.Fred", data, 0, 72)).ok());
  EXPECT_EQ(bus.send(s32).error, Errc::ok);
  ASSERT_EQ(*bus.max_msg_size(100), 100u);
  EXPECT_EQ(bus.num_msgs(l), 3u);
  EXPECT_EQ(bus.next_msg(l), 400u);  // still readable in full
  std::string out;
  EXPECT_EQ(*bus.read(l, 1000, out), 400u);
}

// §4.2-4 with the default limit 1024: the largest data that fits.
TEST_F(BusOpsTest, DefaultLimitBoundary) {
  KsockId s = bus.open(rw());
  // 88 + 8 + 924 + 4 = 1024
  EXPECT_EQ(send(bus, s, announcement("$.Fred", std::string(924, 'y'))).error, Errc::ok);
  EXPECT_EQ(bus.write(s, entire("$.Fred", std::string(925, 'y'))).error(), Errc::emsgsize);
}

// --- effects ----------------------------------------------------------------

// Bus::take_touched: Ksocks whose queue changed are reported, ascending,
// once.
TEST_F(BusOpsTest, TakeTouched) {
  KsockId s = bus.open(rw());
  KsockId l1 = bus.open(rw());
  KsockId l2 = bus.open(rw());
  ASSERT_TRUE(bus.bind(l2, 0, "$.Fred").ok());
  ASSERT_TRUE(bus.bind(l1, 0, "$.Fred").ok());
  (void)bus.take_touched();
  send_ok(bus, s, announcement("$.Fred"));
  std::vector<KsockId> t = bus.take_touched();
  EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
  EXPECT_NE(std::find(t.begin(), t.end(), l1), t.end());
  EXPECT_NE(std::find(t.begin(), t.end(), l2), t.end());
  EXPECT_TRUE(bus.take_touched().empty());
  bus.next_msg(l2);
  t = bus.take_touched();
  EXPECT_NE(std::find(t.begin(), t.end(), l2), t.end());
}

}  // namespace
}  // namespace kbus::core
