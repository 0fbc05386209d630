// cppkbus_program.cpp - a program written as a user of the original cppkbus
// would write it (KBUS-SPEC.md §12.3): plain C++98, no exceptions, only
// <cppkbus/cppkbus.h>. It holds a whole conversation on bus 0 of the kbusd
// in $KBUS_DIR, which must be fresh except that one Ksock (id 1, opened by
// tests/cppkbus/cppkbus_program_test.cpp) listens to $.Talk.News:
//
//   three Ksocks (listener, replier, sender); replier bind events on; an
//   announcement; a request and its reply; a stateful request; a request
//   left queued; the replier closes, so the sender gets the Statuses and
//   the listener the unbind event; then a request with no replier.
//
// Every message and object is printed with ToString() or operator<<, one per
// line, for the driver to compare. Checks count; the program prints
// "N checks, F failed" last and exits 0 only if none failed.
#include <cppkbus/cppkbus.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

static int checks = 0;
static int failures = 0;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    ++checks;                                                                       \
    if (!(cond)) {                                                                  \
      ++failures;                                                                   \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                               \
  } while (0)

#define CHECK_RC(expr, expected)                                                           \
  do {                                                                                     \
    const int rc_ = (expr);                                                                \
    ++checks;                                                                              \
    if (rc_ != (expected)) {                                                               \
      ++failures;                                                                          \
      std::cerr << __FILE__ << ":" << __LINE__ << ": " << #expr << " gave " << rc_ << " (" \
                << cppkbus::Error::ToString(rc_) << "), expected " << (expected) << "\n";  \
    }                                                                                      \
  } while (0)

// Receives exactly one message into msg (after waiting for it) and prints it.
static void receive_one(cppkbus::Ksock& ksock, cppkbus::Message& msg, const char* who) {
  int ready = 0;
  CHECK_RC(ksock.WaitForMessage(ready, cppkbus::PollFlags::Receive, 10000), 1);
  CHECK(ready == cppkbus::PollFlags::Receive);
  CHECK_RC(ksock.Receive(msg), 1);
  std::cout << who << " got " << msg << "\n";
}

int main() {
  const cppkbus::Constants& k = cppkbus::Constants::Get();

  // Three ways to name the bus.
  cppkbus::Ksock listener(0);
  cppkbus::Ksock replier("/dev/kbus0");
  cppkbus::Device device0(0);
  cppkbus::Ksock sender(device0);
  std::cout << listener << "\n";  // not open yet
  CHECK_RC(listener.Open(), 0);
  CHECK_RC(replier.Open(), 0);
  CHECK_RC(sender.Open(), 0);
  CHECK(listener.IsOpen() && replier.IsOpen() && sender.IsOpen());
  std::cout << listener << "\n" << replier << "\n" << sender << "\n" << device0 << "\n";

  uint32_t listenerId = 0, replierId = 0, senderId = 0;
  CHECK_RC(listener.GetId(listenerId), 0);
  CHECK_RC(replier.GetId(replierId), 0);
  CHECK_RC(sender.GetId(senderId), 0);
  CHECK(listenerId == 2 && replierId == 3 && senderId == 4);

  // Replier bind events for the whole bus (the Device's own short-lived
  // Ksock is id 5), and a listener for them and for the talk.
  CHECK_RC(device0.ReportReplierBinds(true), 0);
  bool reporting = false;
  CHECK_RC(device0.ReportingReplierBinds(reporting), 0);  // Ksock 6
  CHECK(reporting);
  CHECK_RC(listener.Bind(k.kMessageNameReplierBindEvent), 0);
  CHECK_RC(listener.Bind("$.Talk.*"), 0);
  CHECK_RC(replier.Bind("$.Talk.Question", true), 0);
  uint32_t found = 0;
  CHECK_RC(device0.FindReplier(found, "$.Talk.Question"), 1);  // Ksock 7
  CHECK(found == replierId);
  CHECK_RC(device0.FindReplier(found, "$.Talk.Nobody"), 0);  // Ksock 8
  CHECK(found == 0);

  cppkbus::Message bindEvent;
  receive_one(listener, bindEvent, "listener");
  CHECK(bindEvent.IsReplierBindEvent());
  bool isBind = false;
  uint32_t binder = 0;
  std::string boundName;
  CHECK_RC(bindEvent.GetReplierBindEventData(isBind, binder, boundName), 0);
  CHECK(isBind && binder == replierId && boundName == "$.Talk.Question");

  // An announcement.
  const char news[] = "hello";
  cppkbus::Message announcement("$.Talk.News", news, std::strlen(news), 0);
  cppkbus::MessageId announcementId;
  CHECK_RC(sender.Send(announcement, &announcementId), 0);
  std::cout << "sent " << announcement << " as " << announcementId << "\n";
  cppkbus::Message heard;
  receive_one(listener, heard, "listener");
  cppkbus::MessageId heardId;
  CHECK_RC(heard.GetMessageId(heardId), 0);
  CHECK(heardId == announcementId);

  // A request, and its reply.
  cppkbus::Message request("$.Talk.Question", "why?", 4, 0);
  cppkbus::MessageId requestId;
  CHECK_RC(sender.SendRequest(request, &requestId), 0);
  CHECK(requestId > announcementId);
  cppkbus::Message question;
  receive_one(replier, question, "replier");
  CHECK(question.WantsUsToReply());
  uint32_t unreplied = 0;
  CHECK_RC(replier.HowManyMessagesUnrepliedTo(unreplied), 0);
  CHECK(unreplied == 1);
  cppkbus::Message listenedRequest;
  receive_one(listener, listenedRequest, "listener");
  CHECK(listenedRequest.IsRequest() && !listenedRequest.WantsUsToReply());

  cppkbus::Message answer("$.Talk.Answer", "because", 7, 0);
  cppkbus::MessageId answerId;
  CHECK_RC(replier.SendReply(answer, question, &answerId), 0);
  std::cout << "sent " << answer << " as " << answerId << "\n";
  cppkbus::Message reply;
  receive_one(sender, reply, "sender");
  CHECK(reply.IsReply());
  cppkbus::MessageId inReplyTo;
  CHECK_RC(reply.GetInReplyTo(inReplyTo), 0);
  CHECK(inReplyTo == requestId);
  cppkbus::Message listenedReply;
  receive_one(listener, listenedReply, "listener");

  // A stateful request to the same replier, which reads it and never
  // answers; and a plain request it never reads.
  cppkbus::Message again("$.Talk.Question", "again", 5, 0);
  cppkbus::MessageId againId;
  CHECK_RC(sender.SendStatefulRequest(again, reply, &againId), 0);
  CHECK(again.IsStatefulRequest());
  cppkbus::Message heldRequest;
  receive_one(replier, heldRequest, "replier");
  CHECK(heldRequest.IsStatefulRequest() && heldRequest.WantsUsToReply());
  cppkbus::Message queued("$.Talk.Question", true);
  cppkbus::MessageId queuedId;
  CHECK_RC(sender.Send(queued, &queuedId), 0);
  uint32_t unread = 0;
  CHECK_RC(replier.HowManyMessagesUnread(unread), 0);
  CHECK(unread == 1);

  // The replier goes: GoneAway for the queued request, Ignored for the one
  // it read (KBUS-SPEC.md §7.2), and an unbind event for the listener.
  std::cout << "closing " << replier << "\n";
  CHECK_RC(replier.Close(), 0);
  std::cout << replier << "\n";
  cppkbus::Message gone, ignored;
  receive_one(sender, gone, "sender");
  receive_one(sender, ignored, "sender");
  std::string name;
  CHECK_RC(gone.GetName(name), 0);
  CHECK(name == k.kMessageNameReplierGone);
  CHECK_RC(gone.GetInReplyTo(inReplyTo), 0);
  CHECK(inReplyTo == queuedId);
  CHECK_RC(ignored.GetName(name), 0);
  CHECK(name == k.kMessageNameReplierIgnored);
  CHECK_RC(ignored.GetInReplyTo(inReplyTo), 0);
  CHECK(inReplyTo == againId);
  uint32_t flags = 0;
  CHECK_RC(gone.GetFlags(flags), 0);
  std::cout << "status flags " << cppkbus::MessageFlags::ToString(flags) << "\n";

  cppkbus::Message listenedAgain, listenedQueued, unbindEvent;
  receive_one(listener, listenedAgain, "listener");
  receive_one(listener, listenedQueued, "listener");
  receive_one(listener, unbindEvent, "listener");
  CHECK_RC(unbindEvent.GetReplierBindEventData(isBind, binder, boundName), 0);
  CHECK(!isBind && binder == replierId && boundName == "$.Talk.Question");

  // Nobody answers now.
  cppkbus::Message orphan("$.Talk.Question", true);
  const int rc = sender.Send(orphan);
  CHECK_RC(rc, cppkbus::Error::MessageEADDRNOTAVAIL);
  std::cout << "no replier: " << static_cast<cppkbus::Error::Enum>(rc) << "\n";

  // Nothing left anywhere.
  cppkbus::Message none;
  CHECK_RC(sender.Receive(none), 0);
  CHECK_RC(listener.Receive(none), 0);
  int ready = -1;
  CHECK_RC(listener.WaitForMessage(ready, cppkbus::PollFlags::Receive, 0), 0);
  CHECK(ready == 0);
  CHECK_RC(listener.WaitForMessage(ready, cppkbus::PollFlags::Transmit, -1), 1);
  std::cout << "listener can " << cppkbus::PollFlags::ToString(ready) << "\n";
  std::cout << none << "\n";

  CHECK_RC(listener.Close(), 0);
  CHECK_RC(sender.Close(), 0);
  std::cout << checks << " checks, " << failures << " failed\n";
  return failures == 0 ? 0 : 1;
}
