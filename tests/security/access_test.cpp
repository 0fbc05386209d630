// Access to the buses (docs/reliability.md §5) with two Unix users,
// kbus-test-a and kbus-test-b: the bus sockets' owner, group and mode
// decide who may open a bus (EACCES for the others, at open), and kbusd
// can drop root once its sockets exist. Needs root (to create the users
// and to switch to them); skipped with a message otherwise.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "kbus/ksock.hpp"
#include "security/security_support.hpp"
#include "support/child_process.hpp"
#include "support/test_daemon.hpp"

namespace kbus::test {
namespace {

using namespace std::chrono_literals;

class AccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    auto users = test_users(why);
    if (!users) GTEST_SKIP() << why;
    a = users->first;
    b = users->second;
    // A directory in a parent only root may write, as /run/kbus is in /run:
    // handed to --user, it is still trusted by every client
    // (docs/reliability.md §9).
    top = make_public_dir();
    dir = top + "/run";
    ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  }
  void TearDown() override {
    if (!top.empty()) std::filesystem::remove_all(top);
  }

  // Opens bus `bus` of `dir` as user `u` in a child; "ok <id>" or the errno name.
  std::string open_as(const TestUser& u, int bus = 0) {
    Actor child([&](Channel& ch) {
      become(u);
      auto k = Ksock::try_open(bus, Mode::read_write, dir);
      if (k.ok()) {
        k->reset();
        ch.say("ok " + std::to_string(k->id()));
      } else {
        ch.say(errno_name(to_errno(k.error())));
      }
      return 0;
    });
    std::string got = child.hear();
    child.wait();
    return got;
  }

  TestUser a, b;
  std::string top, dir;
};

std::string proc_status_field(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return line.substr(field.size() + 1);
  return "";
}

TEST_F(AccessTest, ByDefaultEveryoneMayOpen) {
  KbusdProcess d(dir, 1);
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/kbus0").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0666u);
  EXPECT_EQ(open_as(a).rfind("ok", 0), 0u);
  EXPECT_EQ(open_as(b).rfind("ok", 0), 0u);
  EXPECT_EQ(d.stop(), 0);
}

TEST_F(AccessTest, ModeAndGroupDecideWhoMayOpen) {
  KbusdProcess d(dir, 2, {"--mode", "0660", "--group", a.name});
  for (int bus : {0, 1}) {
    struct stat st {};
    ASSERT_EQ(::stat((dir + "/kbus" + std::to_string(bus)).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    EXPECT_EQ(st.st_gid, a.gid);
    EXPECT_EQ(st.st_uid, 0u);
  }
  EXPECT_EQ(open_as(a, 0).rfind("ok", 0), 0u);
  EXPECT_EQ(open_as(a, 1).rfind("ok", 0), 0u);
  EXPECT_EQ(open_as(b, 0), "EACCES");
  EXPECT_EQ(open_as(b, 1), "EACCES");
  // A refused open leaves nothing behind in the daemon.
  Ksock root = Ksock::open(0, Mode::read_write, dir);
  EXPECT_EQ(root.id(), 2u);  // the refused opens never reached the bus
  EXPECT_EQ(d.stop(), 0);
}

TEST_F(AccessTest, OwnerAndModeDecideWhoMayOpen) {
  KbusdProcess d(dir, 1, {"--mode", "0600", "--owner", b.name});
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/kbus0").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, b.uid);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(open_as(b).rfind("ok", 0), 0u);
  EXPECT_EQ(open_as(a), "EACCES");
  EXPECT_EQ(d.stop(), 0);
}

TEST_F(AccessTest, BadAccessOptionsAreRefusedAtStart) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--mode", "0999"}, {"--mode", "rw"}, {"--group", "no-such-group-kbus"},
        {"--owner", "no-such-user-kbus"}, {"--user", "no-such-user-kbus"}}) {
    std::vector<std::string> argv = {kbusd_path(), "--dir", dir + "/x"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run_process(argv);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << args[1] << ": " << r.err;
    EXPECT_NE(r.err, "") << args[0];
  }
}

// --user: the daemon creates its sockets as root, then runs as that user for
// good (KbusdProcess waits for its readiness, which comes only after the
// drop: docs/reliability.md §7); NEWDEVICE still works (the directory is
// handed over) and new sockets get the configured group and mode.
TEST_F(AccessTest, DropsRootAfterCreatingItsSockets) {
  KbusdProcess d(dir, 1, {"--user", a.name, "--group", b.name, "--mode", "0660"});
  const std::string uids = proc_status_field(d.pid(), "Uid");
  std::istringstream u(uids);
  unsigned real = 0, eff = 0, saved = 0, fs = 0;
  u >> real >> eff >> saved >> fs;
  EXPECT_EQ(real, a.uid) << uids;
  EXPECT_EQ(eff, a.uid) << uids;
  EXPECT_EQ(saved, a.uid) << uids;
  std::istringstream g(proc_status_field(d.pid(), "Gid"));
  unsigned greal = 0, geff = 0;
  g >> greal >> geff;
  EXPECT_EQ(geff, a.gid);
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/kbus0").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);  // made while still root
  EXPECT_EQ(st.st_gid, b.gid);

  // NEWDEVICE from user b (in the socket group): a socket the dropped daemon
  // made itself, owned by a, group b, mode 0660.
  Actor child([&](Channel& ch) {
    become(b);
    Ksock k = Ksock::open(0, Mode::read_write, dir);
    ch.say(std::to_string(k.new_device()));
    Ksock k1 = Ksock::open(1, Mode::read_write, dir);
    ch.say(std::to_string(k1.id()));
    return 0;
  });
  EXPECT_EQ(child.hear(), "1");
  EXPECT_EQ(child.hear(), "1");
  child.wait();
  ASSERT_EQ(::stat((dir + "/kbus1").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, a.uid);
  EXPECT_EQ(st.st_gid, b.gid);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(open_as(a, 1).rfind("ok", 0), 0u);  // the owner
  // It exits cleanly and removes its sockets, as that user.
  EXPECT_EQ(d.stop(), 0) << d.log();
  EXPECT_FALSE(std::filesystem::exists(dir + "/kbus0"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/kbus1"));
}

// docs/reliability.md §7 (DESIGN.md §8): READY=1 goes to $NOTIFY_SOCKET
// (here an abstract "@name" socket) only once the sockets exist and root is
// dropped: the datagram's own credentials carry the new uid.
TEST_F(AccessTest, ReadyIsNotifiedOnlyAfterRootIsDropped) {
  const std::string name = "@kbus-test-ready-" + std::to_string(::getpid());
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  const int on = 1;
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on), 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path + 1, name.data() + 1, name.size() - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr),
                   static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size())),
            0)
      << std::strerror(errno);

  const KbusdChild c = spawn_kbusd(
      {"--devices", "2", "--dir", dir, "--user", a.name, "--group", b.name, "--mode", "0660"},
      dir + "/kbusd.log", {{"NOTIFY_SOCKET", name}});
  ::close(c.ready_fd);
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 30000), 1) << "no READY=1 within 30 s";
  char buf[512];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  iovec iov{buf, sizeof buf};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(fd, &msg, 0);
  ASSERT_GT(n, 0);
  // At this moment: the sockets exist (made as root) and the daemon runs as a.
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(n)).rfind("READY=1\n", 0), 0u);
  const cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  ASSERT_NE(cm, nullptr);
  ASSERT_EQ(cm->cmsg_type, SCM_CREDENTIALS);
  ucred cred{};
  std::memcpy(&cred, CMSG_DATA(cm), sizeof cred);
  EXPECT_EQ(cred.pid, c.pid);
  EXPECT_EQ(cred.uid, a.uid);
  EXPECT_EQ(cred.gid, a.gid);
  for (const char* sock : {"/kbus0", "/kbus1"}) {
    struct stat st {};
    ASSERT_EQ(::stat((dir + sock).c_str(), &st), 0) << sock;
    EXPECT_EQ(st.st_uid, 0u) << sock;
  }
  std::istringstream u(proc_status_field(c.pid, "Uid"));
  unsigned real = 0, eff = 0;
  u >> real >> eff;
  EXPECT_EQ(eff, a.uid);
  EXPECT_EQ(open_as(b, 1).rfind("ok", 0), 0u);
  ::kill(c.pid, SIGTERM);
  pollfd q{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&q, 1, 30000), 1);
  const ssize_t m = ::recv(fd, buf, sizeof buf, 0);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(std::max<ssize_t>(m, 0))), "STOPPING=1");
  EXPECT_EQ(wait_for_exit(c.pid, std::chrono::seconds(30)), 0);
  EXPECT_FALSE(std::filesystem::exists(dir + "/kbus0"));
  ::close(fd);
}

}  // namespace
}  // namespace kbus::test
