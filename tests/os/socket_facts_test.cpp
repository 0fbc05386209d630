// Socket facts the client relies on, beside tests/os/os_facts_test.cpp
// (STYLE.md 10): the poll fd travels as SCM_RIGHTS, and a stream socket
// keeps no message boundaries (so frames carry their lengths).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "support/child_process.hpp"

namespace kbus::test {
namespace {

struct Pair {
  int a = -1;
  int b = -1;
  explicit Pair(int flags = 0) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0, fds) == 0) {
      a = fds[0];
      b = fds[1];
    }
  }
  ~Pair() {
    if (a >= 0) ::close(a);
    if (b >= 0) ::close(b);
  }
};

short poll_now(int fd, short events) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, 0) == 1 ? p.revents : 0;
}

TEST(SocketFacts, ScmRightsPassesADescriptorAlongWithBytes) {
  Pair channel;
  Pair passed;
  ASSERT_GE(channel.a, 0);
  ASSERT_GE(passed.a, 0);
  char byte = 'h';
  iovec iov{&byte, 1};
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
  std::memcpy(CMSG_DATA(cm), &passed.a, sizeof(int));
  ASSERT_EQ(::sendmsg(channel.a, &mh, MSG_NOSIGNAL), 1);

  char got = 0;
  iovec riov{&got, 1};
  alignas(cmsghdr) char rcontrol[CMSG_SPACE(sizeof(int) * 4)] = {};
  msghdr rmh{};
  rmh.msg_iov = &riov;
  rmh.msg_iovlen = 1;
  rmh.msg_control = rcontrol;
  rmh.msg_controllen = sizeof rcontrol;
  ASSERT_EQ(::recvmsg(channel.b, &rmh, MSG_CMSG_CLOEXEC), 1);
  EXPECT_EQ(got, 'h');
  cmsghdr* rcm = CMSG_FIRSTHDR(&rmh);
  ASSERT_NE(rcm, nullptr);
  ASSERT_EQ(rcm->cmsg_type, SCM_RIGHTS);
  int fd;
  std::memcpy(&fd, CMSG_DATA(rcm), sizeof(int));
  EXPECT_NE(fd, passed.a);
  EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);
  // The received descriptor is the same socket: readiness driven through
  // the other end shows on it.
  EXPECT_EQ(poll_now(fd, POLLIN), 0);
  ASSERT_EQ(::send(passed.b, "r", 1, MSG_NOSIGNAL), 1);
  EXPECT_TRUE(poll_now(fd, POLLIN) & POLLIN);
  ::close(fd);
}

TEST(SocketFacts, StreamSocketsDoNotKeepMessageBoundaries) {
  // Why every frame carries its own length: two sends may arrive as one.
  Pair p;
  ASSERT_GE(p.a, 0);
  ASSERT_EQ(::send(p.a, "abc", 3, MSG_NOSIGNAL), 3);
  ASSERT_EQ(::send(p.a, "def", 3, MSG_NOSIGNAL), 3);
  char buf[16];
  EXPECT_EQ(::recv(p.b, buf, sizeof buf, 0), 6);
}

}  // namespace
}  // namespace kbus::test
