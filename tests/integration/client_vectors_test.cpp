// The C++ client against a fake daemon that plays a script of the byte
// vectors in tests/vectors/protocol.json (docs/protocol.md §6): every request
// the client writes must be exactly the vector's bytes, and the client must
// read the vector replies as the protocol says.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "kbus/ksock.hpp"
#include "kbus/message.hpp"

namespace kbus {
namespace {

using namespace std::chrono_literals;

std::map<std::string, std::string> load_vectors() {
  std::ifstream in(std::string(KBUS_SOURCE_DIR) + "/tests/vectors/protocol.json");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  std::map<std::string, std::string> v;
  static const std::regex re(R"re("name":\s*"([^"]+)"[\s\S]*?"hex":\s*"([0-9a-f]*)")re");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it) {
    std::string hex = (*it)[2];
    std::string bytes;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
      bytes += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    v[(*it)[1]] = bytes;
  }
  return v;
}

std::string u32(std::uint32_t x) {
  std::string s(4, '\0');
  std::memcpy(s.data(), &x, 4);
  return s;
}
std::string reply(std::int32_t status, const std::string& payload = {}) {
  return u32(static_cast<std::uint32_t>(4 + payload.size())) +
         u32(static_cast<std::uint32_t>(status)) + payload;
}

// One step of the fake daemon: read a frame (recorded), or send bytes.
struct Step {
  bool read = true;
  std::string bytes;   // to send
  bool with_fd = false;
  bool hangup = false;  // close the connection here
};

class FakeDaemon {
 public:
  FakeDaemon() {
    char tmpl[] = "/tmp/kbus-fake-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    listen_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string path = dir_ + "/kbus0";
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    ::bind(listen_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(listen_, 4);
    ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, poll_pair_);
  }
  ~FakeDaemon() {
    if (thread_.joinable()) thread_.join();
    ::close(listen_);
    ::close(poll_pair_[0]);
    ::close(poll_pair_[1]);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::string& dir() const { return dir_; }

  void run(std::vector<Step> script) {
    thread_ = std::thread([this, script = std::move(script)] {
      int c = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
      std::string buf;
      for (const Step& s : script) {
        if (s.hangup) {
          ::close(c);
          return;
        }
        if (s.read) {
          received_.push_back(read_frame(c, buf));
        } else if (s.with_fd) {
          send_with_fd(c, s.bytes, poll_pair_[0]);
        } else {
          ::send(c, s.bytes.data(), s.bytes.size(), MSG_NOSIGNAL);
        }
      }
      // The client closes: expect EOF, then close our side.
      char x;
      while (::recv(c, &x, 1, 0) > 0) {
      }
      ::close(c);
    });
  }
  // The frames received, in order (valid after the client closed).
  std::vector<std::string> received() {
    if (thread_.joinable()) thread_.join();
    return received_;
  }

 private:
  static std::string read_frame(int fd, std::string& buf) {
    for (;;) {
      if (buf.size() >= 4) {
        std::uint32_t len;
        std::memcpy(&len, buf.data(), 4);
        if (buf.size() >= 4 + std::size_t{len}) {
          std::string f = buf.substr(0, 4 + len);
          buf.erase(0, 4 + len);
          return f;
        }
      }
      char tmp[65536];
      ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) return "<eof>";
      buf.append(tmp, static_cast<std::size_t>(n));
    }
  }
  static void send_with_fd(int c, const std::string& bytes, int fd) {
    iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    ::sendmsg(c, &mh, MSG_NOSIGNAL);
  }

  std::string dir_;
  int listen_ = -1;
  int poll_pair_[2] = {-1, -1};
  std::thread thread_;
  std::vector<std::string> received_;
};

Step rd() { return Step{true, {}, false, false}; }

// These vectors are the socket protocol's: the shared-memory receive queue
// (docs/protocol.md §7) is declined, except where a test says otherwise.
struct SocketOnly {
  SocketOnly() { ::setenv("KBUS_TRANSPORT", "socket", 1); }
  ~SocketOnly() { ::unsetenv("KBUS_TRANSPORT"); }
};
Step wr(const std::string& b, bool fd = false) { return Step{false, b, fd, false}; }
Step hangup() { return Step{false, {}, false, true}; }

TEST(ClientVectorsTest, RequestsAreTheVectorBytesAndRepliesAreReadAsSpecified) {
  SocketOnly socket_only;
  if (kNativeHeaderLen != kHeaderLen64) GTEST_SKIP() << "the message vectors are for H=88";
  auto v = load_vectors();
  ASSERT_GE(v.size(), 30u);
  FakeDaemon fake;
  fake.run({
      rd(), wr(v["frame_hello_reply"]),          // HELLO
      rd(), wr(v["frame_pollfd_reply"], true),   // POLLFD (fileno)
      rd(), wr(reply(0)),                        // BIND replier $.Fred
      rd(), wr(reply(0)),                        // UNBIND $.Fred.*
      rd(), wr(v["frame_replier_reply"]),        // REPLIER $.Fred
      rd(), wr(v["frame_error_ebadmsg"]),        // BIND -> EBADMSG
      rd(), wr(v["frame_nextmsg_reply"]),        // NEXTMSG
      rd(), wr(reply(88)),                       // WRITE pointy header
      rd(), wr(v["frame_send_reply"]),           // SEND with pointy payload
      rd(), wr(reply(104)),                      // WRITE entire
      rd(), wr(v["frame_send_eagain"]),          // SEND -> EAGAIN
      rd(), wr(reply(0, u32(10))),               // MAXMSGS 10
      rd(), wr(reply(0, u32(0))),                // MSGONLYONCE query
      rd(), wr(reply(0)),                        // READ -> EOF
      rd(), wr(v["frame_send_reply"]),           // SENDMSG
      rd(), wr(v["frame_nextread_reply"]),       // NEXTREAD
      rd(), wr(v["frame_nextread_reply"]),       // WAITREAD
      rd(), wr(reply(0)),                        // RESET
      rd(), wr(v["frame_unknown_reply"]),        // KSOCKID -> ENOTTY
      rd(), rd(), wr(reply(0)), wr(reply(0)),    // WAITREAD timed out + RESET
  });

  {
    Ksock k = Ksock::open(0, Mode::read_write, fake.dir());
    EXPECT_EQ(k.id(), 1u);
    EXPECT_EQ(k.bus(), 0u);
    EXPECT_GE(k.fileno(), 0);
    k.bind("$.Fred", true);
    k.unbind("$.Fred.*");
    EXPECT_EQ(k.find_replier("$.Fred"), std::optional<std::uint32_t>(3));
    EXPECT_EQ(k.try_bind("$.Jim").error(), Errc::ebadmsg);
    EXPECT_EQ(k.next_msg(), 100u);
    k.write_msg(make_announcement("$.Fred", "dada"), Form::pointy);
    EXPECT_EQ(k.send(), (MessageId{0, 5}));
    EXPECT_EQ(k.write_data(encode_entire(make_announcement("$.Fred", "dada"))), 104u);
    EXPECT_EQ(k.try_send().error(), Errc::eagain);
    EXPECT_EQ(k.set_max_messages(10), 10u);
    EXPECT_FALSE(k.only_once());
    EXPECT_EQ(k.read_data(4096), "");
    EXPECT_EQ(k.send_msg(make_announcement("$.Fred")), (MessageId{0, 5}));
    Message expect = make_announcement("$.Fred", "dada");
    expect.hdr.id = {0, 5};
    expect.hdr.from = 3;
    EXPECT_EQ(k.read_next_msg(), std::optional<Message>(expect));
    EXPECT_EQ(k.wait_for_msg(), std::optional<Message>(expect));
    k.reset();
    EXPECT_EQ(k.try_ksock_id().error(), Errc::enotty);
    EXPECT_EQ(k.wait_for_msg(10ms), std::nullopt);
  }

  auto got = fake.received();
  ASSERT_EQ(got.size(), 21u);
  EXPECT_EQ(got[0], v["frame_hello"]);
  EXPECT_EQ(got[1], v["frame_pollfd"]);
  got.erase(got.begin() + 1);
  EXPECT_EQ(got[1], v["frame_bind_replier"]);
  EXPECT_EQ(got[2], v["frame_unbind_listener"]);
  EXPECT_EQ(got[3], v["frame_replier_query"]);
  EXPECT_EQ(got[4].substr(4, 4), u32(2));
  EXPECT_EQ(got[5], v["frame_nextmsg"]);
  // The pointy header: WRITE of H bytes whose pointer fields are non-zero.
  ASSERT_EQ(got[6].size(), 8u + 88u);
  EXPECT_EQ(got[6].substr(4, 4), u32(65));
  EXPECT_NE(got[6].substr(8 + 64, 8), std::string(8, '\0'));
  EXPECT_NE(got[6].substr(8 + 72, 8), std::string(8, '\0'));
  EXPECT_EQ(got[6].substr(8, 64), v["pointy_header_h88"].substr(0, 64));
  EXPECT_EQ(got[6].substr(8 + 80), v["pointy_header_h88"].substr(80));
  EXPECT_EQ(got[7], v["frame_send_pointy"]);
  EXPECT_EQ(got[8], v["frame_write"]);
  EXPECT_EQ(got[9], v["frame_send_empty"]);
  EXPECT_EQ(got[10], v["frame_maxmsgs"]);
  EXPECT_EQ(got[11], v["frame_onlyonce_query"]);
  EXPECT_EQ(got[12], v["frame_read"]);
  EXPECT_EQ(got[13], v["frame_sendmsg"]);
  EXPECT_EQ(got[14], u32(4) + u32(68));  // NEXTREAD
  EXPECT_EQ(got[15], v["frame_waitread"]);
  EXPECT_EQ(got[16], v["frame_reset"]);
  EXPECT_EQ(got[17], u32(4) + u32(4));  // KSOCKID
  EXPECT_EQ(got[18], v["frame_waitread"]);
  EXPECT_EQ(got[19], v["frame_reset"]);
}

TEST(ClientVectorsTest, ADaemonThatHangsUpMidReplyIsECONNRESET) {
  SocketOnly socket_only;
  auto v = load_vectors();
  FakeDaemon fake;
  fake.run({rd(), wr(v["frame_hello_reply"]), rd(), wr(reply(0, u32(7)).substr(0, 6)), hangup()});
  Ksock k = Ksock::open(0, Mode::read_write, fake.dir());
  EXPECT_EQ(k.try_num_messages().error(), Errc::econnreset);
  EXPECT_EQ(k.try_num_messages().error(), Errc::econnreset);
}

// docs/protocol.md §3.1: a successful POLLFD reply must carry the descriptor.
TEST(ClientVectorsTest, APollFdReplyWithoutADescriptorIsEPROTO) {
  SocketOnly socket_only;
  auto v = load_vectors();
  FakeDaemon fake;
  fake.run({rd(), wr(v["frame_hello_reply"]), rd(), wr(v["frame_pollfd_reply"], false)});
  Ksock k = Ksock::open(0, Mode::read_write, fake.dir());
  EXPECT_EQ(k.try_wait(ready::kReadable, 10ms).error(), Errc::eproto);
  EXPECT_EQ(k.fileno(), -1);
}

// The descriptor is asked for once, on first use, and then kept.
TEST(ClientVectorsTest, ThePollFdIsAskedForOnceOnFirstUse) {
  SocketOnly socket_only;
  auto v = load_vectors();
  FakeDaemon fake;
  fake.run({rd(), wr(v["frame_hello_reply"]), rd(), wr(v["frame_pollfd_reply"], true)});
  {
    Ksock k = Ksock::open(0, Mode::read_write, fake.dir());
    const int fd = k.fileno();
    EXPECT_GE(fd, 0);
    EXPECT_EQ(k.fileno(), fd);
    EXPECT_EQ(k.try_wait(ready::kReadable, 1ms).value(), 0u);
  }
  auto got = fake.received();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1], v["frame_pollfd"]);
}

// docs/protocol.md §7: a kbusd that does not know SHMRING answers ENOTTY;
// the client then reads over the socket (NEXTREAD), as before.
TEST(ClientVectorsTest, AKbusdWithoutSharedMemoryLeavesTheSocket) {
  auto v = load_vectors();
  FakeDaemon fake;
  fake.run({rd(), wr(v["frame_hello_reply"]), rd(), wr(v["frame_pollfd_reply"], true), rd(),
            wr(reply(-ENOTTY, "")), rd(), wr(reply(0, ""))});
  {
    Ksock k = Ksock::open(0, Mode::read_write, fake.dir());
    EXPECT_EQ(k.read_next_msg(), std::nullopt);
  }
  auto got = fake.received();
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[1], v["frame_pollfd"]);
  // SHMRING 1: length 8, op 80, step 1.
  EXPECT_EQ(got[2], u32(8) + u32(80) + u32(1));
  EXPECT_EQ(got[3].substr(4, 4), u32(68));  // NEXTREAD
}

}  // namespace
}  // namespace kbus
