// capi/translate_test.cpp - every table of capi/translate.hpp, exhaustively
// where the domain is small and by its boundaries where it is not.
#include "capi/translate.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace kbus::capi {
namespace {

TEST(CapiTranslate, ErrcToCResultIsMinusErrnoForEveryValue) {
  EXPECT_EQ(to_c_result(Errc::ok), 0);
  // Every Errc kbus names, and every other errno number an Errc may carry.
  const Errc named[] = {Errc::eaddrinuse,   Errc::eaddrnotavail, Errc::ealready, Errc::ebadmsg,
                        Errc::ebusy,        Errc::econnrefused,  Errc::einval,   Errc::emsgsize,
                        Errc::enametoolong, Errc::enoent,        Errc::enolck,   Errc::enomsg,
                        Errc::epipe,        Errc::efault,        Errc::enomem,   Errc::eagain,
                        Errc::ebadf,        Errc::enotty,        Errc::eproto,   Errc::econnreset,
                        Errc::etimedout,    Errc::eacces};
  for (Errc e : named) EXPECT_EQ(to_c_result(e), -to_errno(e)) << errno_name(to_errno(e));
  for (int err = 1; err < 256; ++err) EXPECT_EQ(to_c_result(static_cast<Errc>(err)), -err);
  EXPECT_EQ(to_c_result(Errc::eaddrinuse), -EADDRINUSE);
  EXPECT_EQ(to_c_result(Errc::enomsg), -ENOMSG);
}

int result_of(std::function<void()> thrower) {
  return guard([&]() -> int {
    thrower();
    return 42;
  });
}

TEST(CapiTranslate, ExceptionsBecomeNegativeErrnos) {
  EXPECT_EQ(result_of([] {}), 42);
  for (int err = 1; err < 256; ++err) {
    EXPECT_EQ(result_of([err] { throw kbus::Error(err); }), -err);
    EXPECT_EQ(result_of([err] { throw std::system_error(err, std::generic_category()); }), -err);
  }
  EXPECT_EQ(result_of([] { throw kbus::Error(Errc::epipe, "x"); }), -EPIPE);
  EXPECT_EQ(result_of([] { throw kbus::Error(0); }), -EFAULT);
  EXPECT_EQ(result_of([] { throw std::system_error(0, std::generic_category()); }), -EFAULT);
  EXPECT_EQ(result_of([] { throw std::bad_alloc(); }), -ENOMEM);
  EXPECT_EQ(result_of([] { throw std::runtime_error("x"); }), -EFAULT);
  EXPECT_EQ(result_of([] { throw std::out_of_range("x"); }), -EFAULT);
  EXPECT_EQ(result_of([] { throw 17; }), -EFAULT);
  EXPECT_EQ(result_of([] { throw "text"; }), -EFAULT);
}

TEST(CapiTranslate, OpenFlagsToMode) {
  const int extra[] = {0, O_NONBLOCK, O_CLOEXEC, O_CREAT | O_TRUNC, O_APPEND | O_SYNC, ~O_ACCMODE};
  for (int bits : extra) {
    bits &= ~O_ACCMODE;
    auto r = mode_from_open_flags(O_RDONLY | bits);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, Mode::read);
    r = mode_from_open_flags(O_WRONLY | bits);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, Mode::write);
    r = mode_from_open_flags(O_RDWR | bits);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, Mode::read_write);
    EXPECT_EQ(mode_from_open_flags(O_ACCMODE | bits).error(), Errc::einval);
  }
}

TEST(CapiTranslate, RequestToToggle) {
  EXPECT_EQ(*toggle_from_request(0), Toggle::off);
  EXPECT_EQ(*toggle_from_request(1), Toggle::on);
  EXPECT_EQ(*toggle_from_request(0xFFFFFFFFu), Toggle::query);
  // Everything else is EINVAL: the low and high 64 Ki values, and a stride
  // through the rest.
  for (std::uint32_t v = 2; v < 0x10000; ++v)
    ASSERT_EQ(toggle_from_request(v).error(), Errc::einval);
  for (std::uint32_t v = 0xFFFF0000u; v < 0xFFFFFFFFu; ++v) {
    ASSERT_EQ(toggle_from_request(v).error(), Errc::einval);
  }
  for (std::uint64_t v = 0x10000; v < 0xFFFF0000u; v += 65521) {
    ASSERT_EQ(toggle_from_request(static_cast<std::uint32_t>(v)).error(), Errc::einval);
  }
}

TEST(CapiTranslate, DeviceNames) {
  struct Case {
    const char* name;
    bool ok;
    int bus;
    const char* dir;
  };
  const Case cases[] = {
      {"/dev/kbus0", true, 0, ""},
      {"/dev/kbus1", true, 1, ""},
      {"/dev/kbus255", true, 255, ""},
      {"/dev/kbus999", true, 999, ""},  // no such bus: ENOENT when opened
      {"/tmp/x/kbus3", true, 3, "/tmp/x"},
      {"run/kbus2", true, 2, "run"},
      {"/kbus4", true, 4, "/"},
      {"/dev/kbus", false, 0, ""},
      {"/dev/kbus1000", false, 0, ""},
      {"/dev/kbus01", false, 0, ""},
      {"/dev/kbus-1", false, 0, ""},
      {"/dev/kbus+1", false, 0, ""},
      {"/dev/kbus1x", false, 0, ""},
      {"/dev/kbusx", false, 0, ""},
      {"/dev/null", false, 0, ""},
      {"/dev/kbus0/", false, 0, ""},
      {"kbus0", false, 0, ""},
      {"", false, 0, ""},
  };
  for (const auto& c : cases) {
    auto d = parse_device_name(c.name);
    ASSERT_EQ(d.has_value(), c.ok) << c.name;
    if (!d) continue;
    EXPECT_EQ(d->bus, c.bus) << c.name;
    EXPECT_EQ(d->dir, c.dir) << c.name;
  }
}

TEST(CapiTranslate, WaitForBitsAndPollEvents) {
  for (int wait_for = 0; wait_for < 16; ++wait_for) {
    short expected = 0;
    if (wait_for & 1) expected |= POLLIN;
    if (wait_for & 2) expected |= POLLOUT;
    EXPECT_EQ(poll_events_from_wait_for(wait_for), expected) << wait_for;
  }
  const short bits[] = {POLLIN, POLLOUT, POLLHUP, POLLERR, POLLPRI, POLLNVAL};
  for (int combo = 0; combo < 64; ++combo) {
    short revents = 0;
    for (int i = 0; i < 6; ++i) {
      if (combo & (1 << i)) revents |= bits[i];
    }
    int expected = ((revents & POLLIN) ? KBUS_KSOCK_READABLE : 0) |
                   ((revents & POLLOUT) ? KBUS_KSOCK_WRITABLE : 0);
    EXPECT_EQ(ready_from_poll_revents(revents), expected) << combo;
  }
}

Header distinct_header() {
  Header h;
  h.id = {1, 2};
  h.in_reply_to = {3, 4};
  h.to = 5;
  h.from = 6;
  h.orig_from = {7, 8};
  h.final_to = {9, 10};
  h.extra = 11;
  h.flags = 0xFFFF030Fu;
  return h;
}

TEST(CapiTranslate, HeaderFieldByField) {
  const Header h = distinct_header();
  kbus_message_t c;
  std::memset(&c, 0xAB, sizeof c);
  header_to_c(h, c);
  EXPECT_EQ(c.id.network_id, 1u);
  EXPECT_EQ(c.id.serial_num, 2u);
  EXPECT_EQ(c.in_reply_to.network_id, 3u);
  EXPECT_EQ(c.in_reply_to.serial_num, 4u);
  EXPECT_EQ(c.to, 5u);
  EXPECT_EQ(c.from, 6u);
  EXPECT_EQ(c.orig_from.network_id, 7u);
  EXPECT_EQ(c.orig_from.local_id, 8u);
  EXPECT_EQ(c.final_to.network_id, 9u);
  EXPECT_EQ(c.final_to.local_id, 10u);
  EXPECT_EQ(c.extra, 11u);
  EXPECT_EQ(c.flags, 0xFFFF030Fu);
  // Guards, lengths and pointers are not the header translation's business.
  EXPECT_EQ(c.start_guard, 0xABABABABu);
  EXPECT_EQ(c.name_len, 0xABABABABu);
  EXPECT_EQ(c.data_len, 0xABABABABu);
  EXPECT_EQ(c.end_guard, 0xABABABABu);
  EXPECT_EQ(header_from_c(c), h);

  EXPECT_EQ(from_c(to_c(MessageId{0xFFFFFFFFu, 1})), (MessageId{0xFFFFFFFFu, 1}));
  EXPECT_EQ(from_c(to_c(OrigFrom{2, 0xFFFFFFFFu})), (OrigFrom{2, 0xFFFFFFFFu}));
}

TEST(CapiTranslate, MessagesBothForms) {
  Message m;
  m.hdr = distinct_header();
  m.name = "$.Fred";
  m.data = std::string("da\0ta!", 6);

  // C++ -> C entire, byte for byte the entire form of §3.5.
  kbus_message_t* c = new_c_entire(m);
  ASSERT_NE(c, nullptr);
  const std::string bytes = encode_entire(m, sizeof(kbus_message_t));
  ASSERT_EQ(static_cast<std::size_t>(kbus_msg_sizeof(c)), bytes.size());
  EXPECT_EQ(std::memcmp(c, bytes.data(), bytes.size()), 0);
  EXPECT_TRUE(kbus_msg_is_entire(c));
  // ... and back.
  EXPECT_EQ(message_from_c(*c), m);
  std::free(c);

  // A pointy C message.
  kbus_message_t p;
  std::memset(&p, 0, sizeof p);
  header_to_c(m.hdr, p);
  p.start_guard = KBUS_MSG_START_GUARD;
  p.end_guard = KBUS_MSG_END_GUARD;
  p.name = const_cast<char*>(m.name.data());
  p.name_len = static_cast<std::uint32_t>(m.name.size());
  p.data = m.data.data();
  p.data_len = static_cast<std::uint32_t>(m.data.size());
  EXPECT_EQ(message_from_c(p), m);
  p.data = nullptr;
  p.data_len = 0;
  Message no_data = m;
  no_data.data.clear();
  EXPECT_EQ(message_from_c(p), no_data);

  // Raw header bytes.
  std::string_view raw = header_bytes(p);
  ASSERT_EQ(raw.size(), sizeof(kbus_message_t));
  kbus_message_t back = header_from_bytes(raw);
  EXPECT_EQ(std::memcmp(&back, &p, sizeof p), 0);
  kbus_message_t short_one = header_from_bytes(raw.substr(0, 8));
  EXPECT_EQ(short_one.start_guard, KBUS_MSG_START_GUARD);
  EXPECT_EQ(short_one.flags, 0u);
  EXPECT_EQ(short_one.name, nullptr);
}

// new_c_entire for every padding case (name and data lengths mod 4).
TEST(CapiTranslate, NewCEntireIsEncodeEntireForEveryPadding) {
  for (std::size_t n = 1; n <= 9; ++n) {
    for (std::size_t d = 0; d <= 9; ++d) {
      Message m;
      m.hdr = distinct_header();
      m.name = std::string(n, 'n');
      m.data = std::string(d, 'd');
      kbus_message_t* c = new_c_entire(m);
      ASSERT_NE(c, nullptr);
      const std::string bytes = encode_entire(m, sizeof(kbus_message_t));
      ASSERT_EQ(static_cast<std::size_t>(kbus_msg_sizeof(c)), bytes.size());
      EXPECT_EQ(std::memcmp(c, bytes.data(), bytes.size()), 0) << n << " " << d;
      std::free(c);
    }
  }
}

kbus_message_t* c_entire(const char* name, const char* data) {
  kbus_message_t* m = nullptr;
  EXPECT_EQ(kbus_msg_create_entire(&m, name, static_cast<std::uint32_t>(std::strlen(name)), data,
                                   static_cast<std::uint32_t>(std::strlen(data)), 0),
            0);
  return m;
}

TEST(CapiTranslate, MessageFromCallerVerdicts) {
  Message out;
  // Entire, good: the message, header fields and all.
  kbus_message_t* e = c_entire("$.Entire", "12345");
  e->to = 7;
  e->flags = 0x100;
  ASSERT_EQ(message_from_caller(e, out), CallerMessage::ok);
  EXPECT_EQ(out, message_from_c(*e));
  EXPECT_EQ(out.data, "12345");
  EXPECT_EQ(out.hdr.to, 7u);
  // Pointy, good: what it points at.
  char name[] = "$.Pointy";
  char data[] = "abc";
  kbus_message_t* p = nullptr;
  ASSERT_EQ(kbus_msg_create(&p, name, 8, data, 3, 0), 0);
  ASSERT_EQ(message_from_caller(p, out), CallerMessage::ok);
  EXPECT_EQ(out, message_from_c(*p));
  p->data = nullptr;
  p->data_len = 0;
  ASSERT_EQ(message_from_caller(p, out), CallerMessage::ok);
  EXPECT_EQ(out.data, "");

  // Only the daemon can say: bad guards, names too long or empty,
  // inconsistent pointers (§3.4).
  e->start_guard = 0;
  EXPECT_EQ(message_from_caller(e, out), CallerMessage::other);
  e->start_guard = KBUS_MSG_START_GUARD;
  e->end_guard = 0;
  EXPECT_EQ(message_from_caller(e, out), CallerMessage::other);
  e->end_guard = KBUS_MSG_END_GUARD;
  *kbus_msg_end_ptr(reinterpret_cast<kbus_entire_message_t*>(e)) = 0;
  EXPECT_EQ(message_from_caller(e, out), CallerMessage::other);
  *kbus_msg_end_ptr(reinterpret_cast<kbus_entire_message_t*>(e)) = KBUS_MSG_END_GUARD;
  ASSERT_EQ(message_from_caller(e, out), CallerMessage::ok);
  e->data = data;
  EXPECT_EQ(message_from_caller(e, out), CallerMessage::other);
  e->data = nullptr;
  p->data = data;  // data_len 0 with a data pointer
  EXPECT_EQ(message_from_caller(p, out), CallerMessage::other);
  p->data = nullptr;
  p->data_len = 3;  // data_len without a data pointer
  EXPECT_EQ(message_from_caller(p, out), CallerMessage::other);
  p->data_len = 0;
  p->name_len = 0;
  EXPECT_EQ(message_from_caller(p, out), CallerMessage::other);
  p->name_len = 1001;
  EXPECT_EQ(message_from_caller(p, out), CallerMessage::other);
  p->name_len = 8;
  p->start_guard = 1;
  EXPECT_EQ(message_from_caller(p, out), CallerMessage::other);
  p->start_guard = KBUS_MSG_START_GUARD;
  // An entire message too long for kbus_msg_sizeof: EFAULT, unread.
  e->data_len = 0x7FFFFFF0u;
  EXPECT_EQ(message_from_caller(e, out), CallerMessage::fault);
  e->data_len = 5;
  std::free(e);
  std::free(p);
}

TEST(CapiTranslate, MessagesFromCallerFindTheBadAddress) {
  if (!can_check_caller_memory()) GTEST_SKIP() << "process_vm_readv is not allowed here";
  // An entire message whose end runs off the mapped memory, and a pointy
  // one whose data pointer is bad, among good ones.
  const long page = ::sysconf(_SC_PAGESIZE);
  void* two = ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(two, MAP_FAILED);
  ASSERT_EQ(::munmap(static_cast<char*>(two) + page, page), 0);
  auto* cut = reinterpret_cast<kbus_message_t*>(static_cast<char*>(two) + page -
                                                sizeof(kbus_message_t) - 16);
  kbus_message_t* good = c_entire("$.Good", "good");
  std::memcpy(cut, good, sizeof(kbus_message_t));
  cut->data_len = 100;  // 16 bytes are mapped after the header
  kbus_message_t* wild = nullptr;
  ASSERT_EQ(kbus_msg_create(&wild, "$.Wild", 6, reinterpret_cast<void*>(16), 4, 0), 0);
  kbus_message_t* other = c_entire("$.Other", "other");

  const kbus_message_t* msgs[] = {good, cut, other, wild, good, other};
  constexpr std::size_t kN = sizeof msgs / sizeof msgs[0];
  CallerMessage verdicts[kN];
  Message out[kN];
  messages_from_caller(msgs, kN, verdicts, out);
  const CallerMessage expected[kN] = {CallerMessage::ok, CallerMessage::fault,
                                      CallerMessage::ok, CallerMessage::other,
                                      CallerMessage::ok, CallerMessage::ok};
  for (std::size_t i = 0; i < kN; ++i) {
    EXPECT_EQ(verdicts[i], expected[i]) << i;
    if (verdicts[i] == CallerMessage::ok) {
      EXPECT_EQ(out[i], message_from_c(*msgs[i])) << i;
    }
  }
  // Each alone says the same.
  for (std::size_t i = 0; i < kN; ++i) {
    Message one;
    EXPECT_EQ(message_from_caller(msgs[i], one), expected[i]) << i;
  }
  // Messages close together are read in one piece with what lies between;
  // a bad address among them is still found.
  char* base = static_cast<char*>(two);
  const int size = kbus_msg_sizeof(good);
  auto* a = reinterpret_cast<kbus_message_t*>(base);
  auto* b = reinterpret_cast<kbus_message_t*>(base + size + 8);
  auto* z = reinterpret_cast<kbus_message_t*>(base + 2 * size + 40);
  std::memcpy(a, good, size);
  std::memcpy(b, other, kbus_msg_sizeof(other));
  std::memcpy(z, good, size);
  std::memset(kbus_msg_data_ptr(b), 'B', b->data_len);
  const kbus_message_t* close[] = {a, b, z, cut, other, a};
  messages_from_caller(close, 6, verdicts, out);
  const CallerMessage close_expected[] = {CallerMessage::ok, CallerMessage::ok,
                                          CallerMessage::ok, CallerMessage::fault,
                                          CallerMessage::ok, CallerMessage::ok};
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(verdicts[i], close_expected[i]) << i;
    if (verdicts[i] == CallerMessage::ok) {
      EXPECT_EQ(out[i], message_from_c(*close[i])) << i;
    }
  }
  EXPECT_EQ(out[1].data, "BBBBB");
  const kbus_message_t* close_ok[] = {a, b, z};
  messages_from_caller(close_ok, 3, verdicts, out);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(verdicts[i], CallerMessage::ok) << i;
    EXPECT_EQ(out[i], message_from_c(*close_ok[i])) << i;
  }

  // Many: more than one process_vm_readv's worth, a bad one late.
  std::vector<const kbus_message_t*> many(700, other);
  many[650] = cut;
  std::vector<CallerMessage> vs(many.size());
  std::vector<Message> outs(many.size());
  messages_from_caller(many.data(), many.size(), vs.data(), outs.data());
  for (std::size_t i = 0; i < many.size(); ++i) {
    EXPECT_EQ(vs[i], i == 650 ? CallerMessage::fault : CallerMessage::ok) << i;
    if (i != 650) {
      EXPECT_EQ(outs[i].data, "other") << i;
    }
  }
  std::free(good);
  std::free(wild);
  std::free(other);
  ::munmap(two, page);
}

TEST(CapiTranslate, CopyFromCallerChecksTheMemory) {
  std::string out;
  const char text[] = "hello";
  EXPECT_TRUE(copy_from_caller(out, text, 5));
  EXPECT_EQ(out, "hello");
  EXPECT_TRUE(copy_from_caller(out, nullptr, 0));
  EXPECT_EQ(out, "");
  EXPECT_FALSE(copy_from_caller(out, nullptr, 3));
  if (!can_check_caller_memory()) GTEST_SKIP() << "process_vm_readv is not allowed here";

  EXPECT_FALSE(copy_from_caller(out, reinterpret_cast<const void*>(16), 4));
  // A range that runs off the end of the mapped memory.
  const long page = ::sysconf(_SC_PAGESIZE);
  void* two = ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(two, MAP_FAILED);
  ASSERT_EQ(::munmap(static_cast<char*>(two) + page, page), 0);
  char* end = static_cast<char*>(two) + page;
  std::memcpy(end - 4, "tail", 4);
  EXPECT_TRUE(copy_from_caller(out, end - 4, 4));
  EXPECT_EQ(out, "tail");
  EXPECT_FALSE(copy_from_caller(out, end - 4, 8));
  ::munmap(two, page);
}

}  // namespace
}  // namespace kbus::capi
