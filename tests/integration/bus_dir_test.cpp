// Where a client looks for a bus (docs/protocol.md §1, kbus(1) FILES): a
// user other than root looks in their own directory ($XDG_RUNTIME_DIR/kbus)
// and falls back to the system bus directory (/run/kbus, kbusd.service)
// for a bus they do not have themselves. $KBUS_DIR is used as given, and
// root looks in the system directory only.
#include "client/bus_dir.hpp"

#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "kbus/ksock.hpp"
#include "support/child_process.hpp"

namespace kbus::test {
namespace {

namespace fs = std::filesystem;

// A socket file at `path`, as a bus socket is (nobody need listen: the
// lookup only asks whether the bus exists there).
int make_socket(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw std::runtime_error("cannot bind " + path);
  return fd;
}

class BusDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kbus-dirs-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root = tmpl;
    ::chmod(root.c_str(), 0755);
    user_dir = root + "/user/kbus";
    system_dir = root + "/system";
    fs::create_directories(user_dir);
    fs::create_directories(system_dir);
    for (const auto& d : {root + "/user", user_dir, system_dir}) ::chmod(d.c_str(), 0755);
    // The user has bus 0 of their own; the system has buses 0 and 1; a
    // plain file is no bus.
    fds = {make_socket(user_dir + "/kbus0"), make_socket(system_dir + "/kbus0"),
           make_socket(system_dir + "/kbus1")};
    std::ofstream(system_dir + "/kbus3") << "not a socket";
  }
  void TearDown() override {
    for (int fd : fds) ::close(fd);
    fs::remove_all(root);
  }

  // Runs `check` in a child process that is not root (nobody, when the
  // test runs as root) with XDG_RUNTIME_DIR=<root>/user and no KBUS_DIR;
  // the child says "ok" or what went wrong.
  std::string as_user(const std::function<std::string()>& check) {
    Actor child([&](Channel& ch) {
      if (::geteuid() == 0) {
        passwd* pw = ::getpwnam("nobody");
        if (!pw) {
          ch.say("no user nobody");
          return 1;
        }
        const gid_t g = pw->pw_gid;
        if (::setgroups(1, &g) != 0 || ::setgid(g) != 0 || ::setuid(pw->pw_uid) != 0) {
          ch.say("cannot become nobody");
          return 1;
        }
      }
      ::unsetenv("KBUS_DIR");
      ::setenv("XDG_RUNTIME_DIR", (root + "/user").c_str(), 1);
      ch.say(check());
      return 0;
    });
    std::string got = child.hear();
    child.wait();
    return got;
  }

  std::string root, user_dir, system_dir;
  std::vector<int> fds;
};

std::string expect_dir(int bus, const std::string& system_dir, const std::string& want) {
  const std::string got = client::bus_dir_for(bus, system_dir);
  return got == want ? "ok" : "bus " + std::to_string(bus) + ": " + got + " != " + want;
}

// docs/protocol.md §1: the user's own bus first; the system's when the
// user has none of that number; the user's directory when neither has it
// (so that ENOENT names the user's directory).
TEST_F(BusDirTest, UserFallsBackToTheSystemDirectoryPerBus) {
  EXPECT_EQ(as_user([&] {
              for (auto [bus, want] : {std::pair{0, user_dir},
                                       {1, system_dir},
                                       {2, user_dir},
                                       {3, user_dir},
                                       {-1, user_dir}}) {
                std::string r = expect_dir(bus, system_dir, want);
                if (r != "ok") return r;
              }
              // The public call without a bus number never falls back.
              if (default_bus_dir() != user_dir) return "default_bus_dir() = " + default_bus_dir();
              return std::string("ok");
            }),
            "ok");
}

TEST_F(BusDirTest, KbusDirIsUsedAsGivenWithoutFallback) {
  EXPECT_EQ(as_user([&] {
              const std::string mine = root + "/elsewhere";
              ::setenv("KBUS_DIR", mine.c_str(), 1);
              std::string r = expect_dir(1, system_dir, mine);
              if (r == "ok" && default_bus_dir(1) != mine)
                r = "default_bus_dir(1) ignores KBUS_DIR";
              return r;
            }),
            "ok");
}

TEST_F(BusDirTest, RootUsesTheSystemDirectory) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (CI runs as root)";
  Actor child([&](Channel& ch) {
    ::unsetenv("KBUS_DIR");
    ::setenv("XDG_RUNTIME_DIR", (root + "/user").c_str(), 1);
    ch.say(expect_dir(0, system_dir, system_dir) + " " + expect_dir(2, system_dir, system_dir) +
           " " + default_bus_dir(0));
    return 0;
  });
  EXPECT_EQ(child.hear(), "ok ok /run/kbus");
  child.wait();
}

}  // namespace
}  // namespace kbus::test
