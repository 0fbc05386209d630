// The SEND algorithm, queues and status messages (KBUS-SPEC.md §5-§8)
// through the C++ client against a real daemon.
#include "integration/fixture.hpp"

namespace kbus::test {
namespace {

using SendTest = KbusTest;

Message with_flags(Message m, std::uint32_t flags) {
  m.hdr.flags |= flags;
  return m;
}

TEST_F(SendTest, SendWithNothingWrittenIsENOMSG) {
  Ksock k = open(0);
  EXPECT_EQ(err(k.try_send()), Errc::enomsg);
  EXPECT_EQ(k.last_sent(), (MessageId{0, 0}));
}

TEST_F(SendTest, AnnouncementsGetConsecutiveSerialsAndVanishWithoutListeners) {
  Ksock k = open(0);
  EXPECT_EQ(k.send_msg(make_announcement("$.Fred")), (MessageId{0, 1}));
  EXPECT_EQ(k.send_msg(make_announcement("$.Fred", "data")), (MessageId{0, 2}));
  EXPECT_EQ(k.num_messages(), 0u);
  // Serials are per bus.
  Ksock other = open(1);
  EXPECT_EQ(other.send_msg(make_announcement("$.Fred")), (MessageId{0, 1}));
}

TEST_F(SendTest, KbusSetsFromClearsSyntheticAndExtraAndKeepsUserFlags) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Fred");
  Message m = make_announcement("$.Fred", "x");
  m.hdr.from = 99;
  m.hdr.extra = 1234;
  m.hdr.to = 42;  // no effect on an Announcement
  m.hdr.orig_from = {7, 9};
  m.hdr.final_to = {8, 10};
  m.hdr.flags = flag::kSynthetic | flag::kWantYouToReply | 0x00F00000u | 0x10u;
  MessageId id = s.send_msg(m);
  Message got = next(l);
  EXPECT_EQ(got.hdr.id, id);
  EXPECT_EQ(got.hdr.from, s.id());
  EXPECT_EQ(got.hdr.extra, 0u);
  EXPECT_EQ(got.hdr.to, 42u);
  EXPECT_EQ(got.hdr.orig_from, (OrigFrom{7, 9}));
  EXPECT_EQ(got.hdr.final_to, (OrigFrom{8, 10}));
  EXPECT_EQ(got.hdr.flags, 0x00F00010u);
  EXPECT_EQ(got.data, "x");
}

TEST_F(SendTest, NonZeroNetworkIdsArePreserved) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Fred");
  Message m = make_announcement("$.Fred");
  m.hdr.id = {5, 77};
  EXPECT_EQ(s.send_msg(m), (MessageId{5, 77}));
  EXPECT_EQ(next(l).hdr.id, (MessageId{5, 77}));
  // Without a network id, whatever serial the sender put is replaced.
  m.hdr.id = {0, 77};
  EXPECT_EQ(s.send_msg(m), (MessageId{0, 1}));
}

TEST_F(SendTest, RequestWithoutReplierIsEADDRNOTAVAILButConsumesTheId) {
  Ksock s = open(0);
  EXPECT_EQ(err(s.try_send_msg(make_request("$.Fred"))), Errc::eaddrnotavail);
  EXPECT_EQ(s.last_sent(), (MessageId{0, 1}));
  EXPECT_EQ(s.send_msg(make_announcement("$.Fred")), (MessageId{0, 2}));
  EXPECT_EQ(s.num_unreplied_to(), 0u);
}

TEST_F(SendTest, RequestGoesToReplierWithYouAndToListenersWithout) {
  Ksock r = open(0);
  Ksock l = open(0);
  Ksock s = open(0);
  r.bind("$.Fred", true);
  l.bind("$.Fred");
  MessageId id = s.send_msg(make_request("$.Fred", "q"));
  Message rc = next(r);
  Message lc = next(l);
  EXPECT_EQ(rc.hdr.flags, flag::kWantAReply | flag::kWantYouToReply);
  EXPECT_EQ(lc.hdr.flags, flag::kWantAReply);
  EXPECT_TRUE(rc.wants_us_to_reply());
  EXPECT_FALSE(lc.wants_us_to_reply());
  EXPECT_EQ(rc.hdr.id, id);
  EXPECT_EQ(r.num_unreplied_to(), 1u);
  EXPECT_EQ(l.num_unreplied_to(), 0u);

  // The requester gets the Reply though it listens to nothing; listeners of
  // the name get a copy of the Reply.
  MessageId rid = r.send_msg(make_reply(rc, "a").value());
  EXPECT_EQ(r.num_unreplied_to(), 0u);
  Message reply = next(s);
  EXPECT_EQ(reply.hdr.id, rid);
  EXPECT_EQ(reply.hdr.in_reply_to, id);
  EXPECT_EQ(reply.hdr.to, s.id());
  EXPECT_EQ(reply.hdr.from, r.id());
  EXPECT_EQ(reply.data, "a");
  EXPECT_FALSE(reply.is_status());
  Message lreply = next(l);
  EXPECT_EQ(lreply.hdr.id, rid);
  EXPECT_TRUE(lreply.is_reply());
}

TEST_F(SendTest, ReplyErrors) {
  Ksock r = open(0);
  Ksock s = open(0);
  Ksock other = open(0);
  r.bind("$.Fred", true);
  MessageId id = s.send_msg(make_request("$.Fred"));
  Message req = next(r);

  // Wrong in_reply_to, or the wrong Ksock: ECONNREFUSED.
  Message bad = make_reply(req).value();
  bad.hdr.in_reply_to = {0, 999};
  EXPECT_EQ(err(r.try_send_msg(bad)), Errc::econnrefused);
  bad = make_reply(req).value();
  bad.hdr.to = other.id();
  EXPECT_EQ(err(r.try_send_msg(bad)), Errc::econnrefused);
  // No such Ksock: EADDRNOTAVAIL.
  bad.hdr.to = 999;
  EXPECT_EQ(err(r.try_send_msg(bad)), Errc::eaddrnotavail);

  // Only the Ksock that holds the Request may reply (docs/decisions.md
  // D10, tightening §14-10); a second Reply is refused.
  EXPECT_EQ(err(other.try_send_msg(make_reply(req, "by other").value())), Errc::econnrefused);
  EXPECT_TRUE(r.try_send_msg(make_reply(req, "by r").value()).ok());
  EXPECT_EQ(err(r.try_send_msg(make_reply(req).value())), Errc::econnrefused);
  Message got = next(s);
  EXPECT_EQ(got.hdr.in_reply_to, id);
  EXPECT_EQ(got.data, "by r");
  EXPECT_EQ(r.num_unreplied_to(), 0u);

  // The requester has gone: EADDRNOTAVAIL.
  MessageId id2 = s.send_msg(make_request("$.Fred"));
  Message req2 = next(r);
  EXPECT_EQ(req2.hdr.id, id2);
  s.close();
  settle(r);
  EXPECT_EQ(err(r.try_send_msg(make_reply(req2).value())), Errc::eaddrnotavail);
}

TEST_F(SendTest, StatefulRequests) {
  Ksock g = open(0);
  Ksock f = open(0);
  Ksock s = open(0);
  g.bind("$.Fred", true);
  s.send_msg(make_request("$.Fred"));
  Message req = next(g);
  g.send_msg(make_reply(req, "ok").value());
  Message rep = next(s);
  Message sreq = make_stateful_request(rep, "$.Fred", "again").value();
  EXPECT_EQ(sreq.hdr.to, g.id());
  EXPECT_TRUE(sreq.is_stateful_request());
  EXPECT_TRUE(s.try_send_msg(sreq).ok());
  Message got = next(g);
  EXPECT_EQ(got.hdr.to, g.id());
  EXPECT_TRUE(got.wants_us_to_reply());
  g.send_msg(make_reply(got).value());
  next(s);

  // The replier is someone else now: EPIPE; nobody at all: EADDRNOTAVAIL.
  g.unbind("$.Fred", true);
  f.bind("$.Fred", true);
  EXPECT_EQ(err(s.try_send_msg(sreq)), Errc::epipe);
  f.unbind("$.Fred", true);
  EXPECT_EQ(err(s.try_send_msg(sreq)), Errc::eaddrnotavail);
  EXPECT_EQ(f.num_messages(), 0u);
}

TEST_F(SendTest, FullReplierIsEBUSYOrEAGAIN) {
  Ksock r = open(0);
  Ksock s = open(0);
  r.bind("$.Fred", true);
  r.set_max_messages(1);
  s.send_msg(make_request("$.Fred"));
  EXPECT_EQ(err(s.try_send_msg(make_request("$.Fred"))), Errc::ebusy);
  // ALL_OR_FAIL does not change that; ALL_OR_WAIT makes it pending.
  EXPECT_EQ(err(s.try_send_msg(with_flags(make_request("$.Fred"), flag::kAllOrFail))),
            Errc::ebusy);
  EXPECT_EQ(err(s.try_send_msg(with_flags(make_request("$.Fred"), flag::kAllOrWait))),
            Errc::eagain);
  s.discard();
  EXPECT_EQ(r.num_messages(), 1u);
}

TEST_F(SendTest, SenderWithNoRoomForTheReplyIsENOLCK) {
  Ksock r = open(0);
  Ksock s = open(0);
  r.bind("$.Fred", true);
  s.set_max_messages(1);
  MessageId first = s.send_msg(make_request("$.Fred"));
  // One outstanding request fills a queue of one.
  EXPECT_EQ(err(s.try_send_msg(make_request("$.Fred"))), Errc::enolck);
  EXPECT_EQ(s.last_sent(), first);  // no id assigned
  // Announcements are not affected by the sender's own fullness.
  EXPECT_TRUE(s.try_send_msg(make_announcement("$.Jim")).ok());
  // The reply uses the reserved slot.
  r.send_msg(make_reply(next(r)).value());
  EXPECT_EQ(next(s).hdr.in_reply_to, first);
}

TEST_F(SendTest, FullListeners) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Fred");
  l.set_max_messages(1);
  MessageId m1 = s.send_msg(make_announcement("$.Fred", "1"));
  // Neither flag: the full listener silently misses it.
  EXPECT_TRUE(s.try_send_msg(make_announcement("$.Fred", "2")).ok());
  // ALL_OR_FAIL: EBUSY, and the id is used up.
  EXPECT_EQ(err(s.try_send_msg(with_flags(make_announcement("$.Fred"), flag::kAllOrFail))),
            Errc::ebusy);
  EXPECT_EQ(s.last_sent(), (MessageId{0, 3}));
  EXPECT_EQ(l.num_messages(), 1u);
  EXPECT_EQ(next(l).hdr.id, m1);
}

TEST_F(SendTest, AllOrWaitPendsUntilThereIsRoom) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Fred");
  l.set_max_messages(1);
  s.send_msg(make_announcement("$.Fred", "1"));
  EXPECT_TRUE(poll_writable(s.fileno()));
  EXPECT_EQ(err(s.try_send_msg(with_flags(make_announcement("$.Fred", "2"), flag::kAllOrWait))),
            Errc::eagain);
  MessageId pending = s.last_sent();
  EXPECT_EQ(pending, (MessageId{0, 2}));
  settle(s);
  EXPECT_FALSE(poll_writable(s.fileno()));
  // While pending: writes are EALREADY and change nothing.
  EXPECT_EQ(err(s.try_write_msg(make_announcement("$.Jim"))), Errc::ealready);
  EXPECT_EQ(err(s.try_send_msg(make_announcement("$.Jim"))), Errc::ealready);
  // SEND again retries (still EAGAIN), keeping the id.
  EXPECT_EQ(err(s.try_send()), Errc::eagain);
  EXPECT_EQ(s.last_sent(), pending);

  // Room appears: the daemon completes the send.
  EXPECT_EQ(next(l).data, "1");
  settle(s);
  EXPECT_TRUE(poll_writable(s.fileno()));
  Message got = next(l);
  EXPECT_EQ(got.hdr.id, pending);
  EXPECT_EQ(got.data, "2");
  // docs/decisions.md D1: the next SEND reports the completed pending send.
  auto done = s.try_send();
  ASSERT_TRUE(done.ok()) << errc_name(done.error());
  EXPECT_EQ(*done, pending);
  EXPECT_EQ(err(s.try_send()), Errc::enomsg);
}

TEST_F(SendTest, DiscardAbandonsAPendingSend) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Fred");
  l.set_max_messages(1);
  s.send_msg(make_announcement("$.Fred", "1"));
  EXPECT_EQ(err(s.try_send_msg(with_flags(make_announcement("$.Fred"), flag::kAllOrWait))),
            Errc::eagain);
  s.discard();
  settle(s);
  EXPECT_TRUE(poll_writable(s.fileno()));
  next(l);
  EXPECT_EQ(l.num_messages(), 0u);
  EXPECT_TRUE(s.try_send_msg(make_announcement("$.Fred", "3")).ok());
  EXPECT_EQ(next(l).data, "3");
}

TEST_F(SendTest, PendingRequestWhoseReplierVanishesGetsDisappeared) {
  Ksock r = open(0);
  Ksock s = open(0);
  r.bind("$.Fred", true);
  r.set_max_messages(1);
  MessageId first = s.send_msg(make_request("$.Fred"));
  EXPECT_EQ(err(s.try_send_msg(with_flags(make_request("$.Fred"), flag::kAllOrWait))),
            Errc::eagain);
  MessageId pending = s.last_sent();
  r.close();
  // GoneAway for the queued request, then the retry finds no replier.
  auto m1 = s.wait_for_msg(std::chrono::seconds(5));
  ASSERT_TRUE(m1);
  EXPECT_EQ(m1->name, status_name::kReplierGoneAway);
  EXPECT_EQ(m1->hdr.in_reply_to, first);
  auto m2 = s.wait_for_msg(std::chrono::seconds(5));
  ASSERT_TRUE(m2);
  EXPECT_EQ(m2->name, status_name::kReplierDisappeared);
  EXPECT_EQ(m2->hdr.in_reply_to, pending);
  EXPECT_EQ(m2->hdr.from, 0u);
  EXPECT_EQ(m2->hdr.flags, flag::kSynthetic);
  settle(s);
  EXPECT_TRUE(poll_writable(s.fileno()));
}

TEST_F(SendTest, UrgentMessagesJumpTheQueueNewestFirst) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Fred");
  s.send_msg(make_announcement("$.Fred", "normal"));
  s.send_msg(make_announcement("$.Fred", "urgent1", flag::kUrgent));
  s.send_msg(make_announcement("$.Fred", "urgent2", flag::kUrgent));
  EXPECT_EQ(next(l).data, "urgent2");
  Message u1 = next(l);
  EXPECT_EQ(u1.data, "urgent1");
  EXPECT_TRUE(u1.is_urgent());
  EXPECT_EQ(next(l).data, "normal");
}

TEST_F(SendTest, DuplicateBindingsGiveCopiesUnlessOnlyOnce) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Fred");
  l.bind("$.Fred");
  l.bind("$.*");
  s.send_msg(make_announcement("$.Fred"));
  EXPECT_EQ(l.num_messages(), 3u);
  l.only_once(Toggle::on);
  s.send_msg(make_announcement("$.Fred"));
  EXPECT_EQ(l.num_messages(), 4u);  // queued duplicates stay

  // A replier that also listens, with only-once: just the replier's copy.
  Ksock r = open(0);
  r.bind("$.Jim", true);
  r.bind("$.Jim");
  r.bind("$.*");
  r.only_once(Toggle::on);
  s.send_msg(make_request("$.Jim"));
  EXPECT_EQ(r.num_messages(), 1u);
  EXPECT_TRUE(next(r).wants_us_to_reply());
}

TEST_F(SendTest, OwnMessagesComeBackToListeners) {
  Ksock k = open(0);
  k.bind("$.Fred");
  k.bind("$.Fred", true);
  MessageId id = k.send_msg(make_request("$.Fred"));
  Message a = next(k);
  Message b = next(k);
  EXPECT_TRUE(a.wants_us_to_reply());  // replier push precedes listener pushes
  EXPECT_FALSE(b.wants_us_to_reply());
  k.send_msg(make_reply(a, "me").value());
  // The Reply reaches the requester (kind SENDER) and the listener binding.
  Message r1 = next(k);
  Message r2 = next(k);
  EXPECT_EQ(r1.hdr.in_reply_to, id);
  EXPECT_EQ(r2.hdr.in_reply_to, id);
  EXPECT_EQ(k.num_messages(), 0u);
}

TEST_F(SendTest, UnbindRemovesOnlyThatBindingsMessages) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Fred");
  s.send_msg(make_announcement("$.Fred", "m1"));
  l.bind("$.*");
  s.send_msg(make_announcement("$.Fred", "m2"));
  s.send_msg(make_announcement("$.Fred", "m3"));
  EXPECT_EQ(l.num_messages(), 5u);
  l.unbind("$.Fred");
  EXPECT_EQ(l.num_messages(), 2u);
  l.unbind("$.*");
  EXPECT_EQ(l.num_messages(), 0u);
}

void expect_status(const std::optional<Message>& m, std::string_view name, std::uint32_t from,
                   std::uint32_t to, MessageId in_reply_to) {
  ASSERT_TRUE(m.has_value()) << "expected " << name;
  EXPECT_EQ(m->name, name);
  EXPECT_EQ(m->hdr.from, from);
  EXPECT_EQ(m->hdr.to, to);
  EXPECT_EQ(m->hdr.in_reply_to, in_reply_to);
  EXPECT_EQ(m->hdr.flags, flag::kSynthetic);
  EXPECT_NE(m->hdr.id.serial_num, 0u);
  EXPECT_EQ(m->hdr.id.network_id, 0u);
  EXPECT_TRUE(m->is_status());
  EXPECT_EQ(m->kind(), "Status");
}

TEST_F(SendTest, UnboundStatusWhenTheReplierUnbindsBeforeReading) {
  Ksock r = open(0);
  Ksock s = open(0);
  Ksock all = open(0);
  all.bind("$.*");
  r.bind("$.Fred", true);
  MessageId id = s.send_msg(make_request("$.Fred"));
  r.unbind("$.Fred", true);
  EXPECT_EQ(r.num_messages(), 0u);
  expect_status(s.read_next_msg(), status_name::kReplierUnbound, r.id(), s.id(), id);
  // Listeners never see status messages.
  Message copy = next(all);
  EXPECT_EQ(copy.hdr.id, id);
  EXPECT_EQ(all.num_messages(), 0u);
}

TEST_F(SendTest, GoneAwayAndIgnoredWhenTheReplierCloses) {
  Ksock r = open(0);
  Ksock s = open(0);
  r.bind("$.Fred", true);
  MessageId popped = s.send_msg(make_request("$.Fred", "1"));
  MessageId queued = s.send_msg(make_request("$.Fred", "2"));
  EXPECT_EQ(next(r).hdr.id, popped);
  EXPECT_EQ(s.num_messages(), 0u);
  std::uint32_t rid = r.id();
  r.close();
  expect_status(s.wait_for_msg(std::chrono::seconds(5)), status_name::kReplierGoneAway, rid,
                s.id(), queued);
  expect_status(s.wait_for_msg(std::chrono::seconds(5)), status_name::kReplierIgnored, rid, s.id(),
                popped);
  EXPECT_EQ(s.num_messages(), 0u);
}

TEST_F(SendTest, StatusForStatefulRequestsToo) {
  Ksock r = open(0);
  Ksock s = open(0);
  r.bind("$.Fred", true);
  Message req = make_request("$.Fred");
  req.hdr.to = r.id();
  MessageId id = s.send_msg(req);
  std::uint32_t rid = r.id();
  r.close();
  expect_status(s.wait_for_msg(std::chrono::seconds(5)), status_name::kReplierGoneAway, rid,
                s.id(), id);
}

TEST_F(SendTest, ReplierBindEvents) {
  Ksock watcher = open(0);
  Ksock r = open(0);
  watcher.bind("$.KBUS.ReplierBindEvent");
  EXPECT_FALSE(watcher.report_replier_binds(Toggle::on));
  r.bind("$.Fred", true);
  r.bind("$.Listener");  // listener binds make no event
  r.unbind("$.Fred", true);
  Message bind = next(watcher);
  Message unbind = next(watcher);
  EXPECT_EQ(watcher.num_messages(), 0u);
  EXPECT_EQ(bind.name, status_name::kReplierBindEvent);
  EXPECT_EQ(bind.hdr.flags, flag::kSynthetic | flag::kAllOrFail);
  EXPECT_EQ(bind.hdr.from, 0u);
  EXPECT_EQ(bind.hdr.to, 0u);
  EXPECT_TRUE(bind.hdr.in_reply_to.is_zero());
  auto ev = decode_replier_bind_event(bind.data);
  ASSERT_TRUE(ev.ok());
  EXPECT_TRUE(ev->is_bind);
  EXPECT_EQ(ev->binder, r.id());
  EXPECT_EQ(ev->name, "$.Fred");
  EXPECT_EQ(bind.data.size(), 20u);
  EXPECT_EQ(bind.to_string(), "<ReplierBindEvent id=[0:" + std::to_string(bind.hdr.id.serial_num) +
                                  "], flags=0x204 (SYN,aFL), [Bind '$.Fred' for " +
                                  std::to_string(r.id()) + "]>");
  auto ev2 = decode_replier_bind_event(unbind.data);
  ASSERT_TRUE(ev2.ok());
  EXPECT_FALSE(ev2->is_bind);
  EXPECT_GT(unbind.hdr.id.serial_num, bind.hdr.id.serial_num);
}

TEST_F(SendTest, ReplierBindFailsWithEAGAINWhenAWatcherIsFull) {
  Ksock watcher = open(0);
  Ksock r = open(0);
  watcher.bind("$.KBUS.*");
  watcher.set_max_messages(1);
  watcher.report_replier_binds(Toggle::on);
  r.bind("$.A", true);
  EXPECT_EQ(err(r.try_bind("$.B", true)), Errc::eagain);
  EXPECT_EQ(r.find_replier("$.B"), std::nullopt);
  EXPECT_EQ(err(r.try_bind("$.A", true)), Errc::eaddrinuse);  // precedence
  EXPECT_EQ(err(r.try_unbind("$.A", true)), Errc::eagain);
  EXPECT_EQ(r.find_replier("$.A"), std::optional<std::uint32_t>(r.id()));
}

TEST_F(SendTest, ReportingReplierBindsListsExistingOnesToTheCaller) {
  Ksock r = open(0);
  Ksock asker = open(0);
  r.bind("$.A", true);
  r.bind("$.B.*", true);
  asker.report_replier_binds(Toggle::on);
  std::vector<std::string> names;
  while (auto m = asker.read_next_msg()) {
    auto ev = decode_replier_bind_event(m->data);
    ASSERT_TRUE(ev.ok());
    EXPECT_TRUE(ev->is_bind);
    EXPECT_EQ(ev->binder, r.id());
    names.push_back(ev->name);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"$.B.*", "$.A"}));  // newest first
}

TEST_F(SendTest, MessageSizeLimit) {
  Ksock l = open(0);
  Ksock s = open(0);
  l.bind("$.Big");
  // 88 + 8 + data + 4 must fit in 1024.
  std::uint32_t fits = 1024 - kNativeHeaderLen - padded_name_len(5) - 4;
  EXPECT_TRUE(s.try_send_msg(make_announcement("$.Big", std::string(fits, 'x'))).ok());
  EXPECT_EQ(err(s.try_send_msg(make_announcement("$.Big", std::string(fits + 1, 'x')))),
            Errc::emsgsize);
  // A 1000-byte name cannot be sent under the default limit.
  std::string longest = "$." + std::string(998, 'n');
  EXPECT_EQ(err(s.try_send_msg(make_announcement(longest))), Errc::emsgsize);
  // Raise the limit: big messages travel whole.
  s.set_max_message_size(409600);
  std::string big(300000, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  EXPECT_TRUE(s.try_send_msg(make_announcement("$.Big", big)).ok());
  next(l);
  Message got = next(l);
  EXPECT_EQ(got.data, big);
  EXPECT_EQ(err(s.try_send_msg(make_announcement("$.Big", std::string(409600, 'x')))),
            Errc::emsgsize);
}

TEST_F(SendTest, NamesInMessagesAreChecked) {
  Ksock s = open(0);
  EXPECT_EQ(err(s.try_send_msg(make_announcement("$.Fred.*"))), Errc::ebadmsg);
  EXPECT_EQ(err(s.try_send_msg(make_announcement("$.%"))), Errc::ebadmsg);
  EXPECT_EQ(err(s.try_send_msg(make_announcement("$.Fred."))), Errc::ebadmsg);
  EXPECT_EQ(err(s.try_send_msg(make_announcement("Fred"))), Errc::ebadmsg);
  EXPECT_EQ(err(s.try_send_msg(make_announcement(""))), Errc::einval);
  EXPECT_EQ(err(s.try_send_msg(make_announcement("$." + std::string(999, 'a')))),
            Errc::enametoolong);
  EXPECT_EQ(err(s.try_send_msg(make_announcement("$.a", "", flag::kAllOrFail | flag::kAllOrWait))),
            Errc::einval);
  EXPECT_EQ(s.send_msg(make_announcement("$.Fred")), (MessageId{0, 1}));
}

TEST_F(SendTest, QueueFullnessCountsOutstandingRequests) {
  Ksock r = open(0);
  Ksock s = open(0);
  r.bind("$.Req", true);
  s.bind("$.Ann");
  s.set_max_messages(2);
  s.send_msg(make_request("$.Req"));
  s.send_msg(make_request("$.Req"));
  // Two outstanding requests fill s: an announcement to it is skipped, or
  // refused with ALL_OR_FAIL.
  Ksock other = open(0);
  EXPECT_TRUE(other.try_send_msg(make_announcement("$.Ann")).ok());
  EXPECT_EQ(s.num_messages(), 0u);
  EXPECT_EQ(err(other.try_send_msg(make_announcement("$.Ann", "", flag::kAllOrFail))),
            Errc::ebusy);
  // But the replies have their reserved slots.
  r.send_msg(make_reply(next(r)).value());
  r.send_msg(make_reply(next(r)).value());
  EXPECT_EQ(s.num_messages(), 2u);
}

}  // namespace
}  // namespace kbus::test
