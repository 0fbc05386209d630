// Facts about the kernel that kbusd relies on (STYLE.md 10). If a kernel or
// libc change breaks one, the failing test names the assumption.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace {

short revents(int fd) {
  pollfd p{fd, POLLIN | POLLOUT, 0};
  EXPECT_GE(::poll(&p, 1, 0), 0);
  return p.revents;
}

// The poll fd (docs/protocol.md §3.1): the daemon holds both ends of a
// socket pair and passes one end to the client. Writing on the peer makes
// the client's end readable; reading that byte back through the daemon's
// copy of the same end makes it unreadable again.
TEST(OsFacts, PollFdReadableIsDrivenByThePeer) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  const int client_copy = ::dup(sv[0]);  // what SCM_RIGHTS gives the client
  EXPECT_FALSE(revents(client_copy) & POLLIN);
  ASSERT_EQ(::send(sv[1], "r", 1, MSG_NOSIGNAL), 1);
  EXPECT_TRUE(revents(client_copy) & POLLIN);
  char c;
  ASSERT_EQ(::recv(sv[0], &c, 1, 0), 1);
  EXPECT_FALSE(revents(client_copy) & POLLIN);
  ::close(client_copy);
  ::close(sv[0]);
  ::close(sv[1]);
}

// With the minimum send buffer, a few writes through the daemon's copy make
// the client's end unwritable, and draining the peer makes it writable again.
TEST(OsFacts, PollFdWritableIsDrivenByFillingTheSendBuffer) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  const int one = 1;
  ASSERT_EQ(::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof one), 0);
  const int client_copy = ::dup(sv[0]);
  EXPECT_TRUE(revents(client_copy) & POLLOUT);
  char fill[256] = {};
  int writes = 0;
  while ((revents(sv[0]) & POLLOUT) && writes < 64) {
    ASSERT_GT(::send(sv[0], fill, sizeof fill, MSG_NOSIGNAL), 0);
    ++writes;
  }
  EXPECT_LT(writes, 64) << "a small send buffer must fill within a few writes";
  EXPECT_FALSE(revents(client_copy) & POLLOUT);
  char buf[4096];
  while (::recv(sv[1], buf, sizeof buf, 0) > 0) {
  }
  EXPECT_TRUE(revents(client_copy) & POLLOUT);
  ::close(client_copy);
  ::close(sv[0]);
  ::close(sv[1]);
}

// A client killed with SIGKILL: its peer sees end-of-file (hang-up = CLOSE).
TEST(OsFacts, KilledPeerGivesEndOfFile) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(sv[0]);
    ::pause();
    _exit(0);
  }
  ::close(sv[1]);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  pollfd p{sv[0], POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  EXPECT_TRUE(p.revents & (POLLIN | POLLHUP));
  char c;
  EXPECT_EQ(::recv(sv[0], &c, 1, 0), 0);
  ::close(sv[0]);
}

// SO_PEERCRED reports the connecting process (the bindings report's PID).
TEST(OsFacts, PeerCredentialsGiveTheClientPid) {
  char dir[] = "/tmp/kbus-os-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/s";
  const int l = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(l, 1), 0);
  const int c = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_EQ(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const int s = ::accept(l, nullptr, nullptr);
  ucred cred{};
  socklen_t len = sizeof cred;
  ASSERT_EQ(::getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len), 0);
  EXPECT_EQ(cred.pid, ::getpid());
  ::close(s);
  ::close(c);
  ::close(l);
  ::unlink(path.c_str());
  ::rmdir(dir);
}

// MSG_NOSIGNAL: writing to a closed peer fails with EPIPE instead of killing
// the daemon with SIGPIPE.
TEST(OsFacts, MsgNoSignalGivesEpipe) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ::close(sv[1]);
  errno = 0;
  EXPECT_EQ(::send(sv[0], "x", 1, MSG_NOSIGNAL), -1);
  EXPECT_EQ(errno, EPIPE);
  ::close(sv[0]);
}

// Connecting to a path with no socket file gives ENOENT: opening a bus that
// does not exist fails with ENOENT, as the original did (DESIGN.md §4).
TEST(OsFacts, ConnectToMissingSocketIsEnoent) {
  const int c = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, "/tmp/kbus-no-such-dir-at-all/kbus7");
  errno = 0;
  EXPECT_EQ(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a), -1);
  EXPECT_EQ(errno, ENOENT);
  ::close(c);
}

}  // namespace
