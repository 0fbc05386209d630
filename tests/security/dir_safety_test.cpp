// The socket directory must be safe (docs/reliability.md §9,
// docs/decisions.md D27; DESIGN.md §4 names the directory, §6 "no client
// can speak as another"): kbusd and the clients use a directory only if it
// is owned by the effective uid or root (or handed over by root, like
// /run/kbus) and nobody else may write to it. kbusd works in it through a
// descriptor: it never follows a planted link, never removes anything but
// a socket. Real kbusd processes, run as the throwaway users kbus-test-a
// and kbus-test-b (created with useradd) or as root; needs root, skipped
// otherwise. Every start waits on --ready-fd (docs/reliability.md §7).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
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

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// A kbusd started as user `who` (nullptr: root) with umask `mask`, waited
// for on --ready-fd: it serves (ready) or it exited (failed, with its exit
// code); its output goes to `log`, opened here as root.
class Kbusd {
 public:
  Kbusd(const TestUser* who, std::vector<std::string> args, std::string log, mode_t mask = 022)
      : log_(std::move(log)) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    const int out = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0) throw std::runtime_error("cannot open " + log_);
    args.insert(args.begin(), kbusd_path());
    args.push_back("--ready-fd");
    args.push_back(std::to_string(p[1]));
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::fcntl(p[1], F_SETFD, 0);
      try {
        if (who != nullptr) become(*who);
      } catch (...) {
        ::_exit(120);
      }
      ::umask(mask);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out);
    ::close(p[1]);
    ready_ = wait_ready(p[0], 30s) == Readiness::ready;
    if (!ready_) {
      exit_code_ = wait_for_exit(pid_, 30s);
      pid_ = -1;
    }
  }
  ~Kbusd() { stop(); }
  Kbusd(const Kbusd&) = delete;
  Kbusd& operator=(const Kbusd&) = delete;

  bool ready() const { return ready_; }
  int exit_code() const { return exit_code_; }
  std::string log() const { return slurp(log_); }
  int stop() {
    if (pid_ <= 0) return exit_code_;
    ::kill(pid_, SIGTERM);
    exit_code_ = wait_for_exit(pid_, 10s);
    if (exit_code_ == -1) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
    return exit_code_;
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
  bool ready_ = false;
  int exit_code_ = -1;
};

class DirSafetyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    auto users = test_users(why);
    if (!users) GTEST_SKIP() << why;
    a = users->first;
    b = users->second;
    base = make_public_dir();  // root, 0755: "a parent only root may write", like /run
    tmp = base + "/tmp";       // like /tmp: everyone may create in it
    ASSERT_EQ(::mkdir(tmp.c_str(), 0755), 0);
    ASSERT_EQ(::chmod(tmp.c_str(), 01777), 0);
  }
  void TearDown() override {
    if (!base.empty()) fs::remove_all(base);
  }

  std::string log(const std::string& name) { return base + "/" + name + ".log"; }

  // A directory `path` made by `owner` (nullptr: root) with `mode`.
  void make_dir(const std::string& path, const TestUser* owner, mode_t mode) {
    ASSERT_EQ(::mkdir(path.c_str(), mode), 0) << path;
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    if (owner != nullptr) {
      ASSERT_EQ(::chown(path.c_str(), owner->uid, owner->gid), 0);
    }
  }

  // Opens bus 0 of `dir` as `who` (nullptr: root) with Ksock::open: "ok
  // <id>", or "<ERRNO> <what()>"; what the library wrote on stderr is put
  // in `stderr_text`.
  std::string open_as(const TestUser* who, const std::string& dir,
                      std::string* stderr_text = nullptr) {
    const std::string err_path = base + "/client-stderr.txt";
    fs::remove(err_path);
    Actor child([&](Channel& ch) {
      const int fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 2);
      if (who != nullptr) become(*who);
      try {
        Ksock k = Ksock::open(0, Mode::read_write, dir);
        ch.say("ok " + std::to_string(k.id()));
      } catch (const Error& e) {
        ch.say(errno_name(e.code().value()) + " " + e.what());
      }
      return 0;
    });
    std::string got = child.hear();
    child.wait();
    if (stderr_text != nullptr) *stderr_text = slurp(err_path);
    return got;
  }

  TestUser a, b;
  std::string base, tmp;
};

// The attack of issue 13: user b makes /tmp/kbus-<a's uid> first and serves
// it. a's kbusd refuses it (not "another kbusd already serves": b's lock is
// never reached), and a's clients - C++, so the C API and the tools too -
// refuse to talk to b's daemon, with EPERM and the message.
TEST_F(DirSafetyTest, AnotherUsersDirectoryStopsKbusdAndClients) {
  const std::string dir = tmp + "/kbus-" + std::to_string(a.uid);
  make_dir(dir, &b, 0755);
  Kbusd bs(&b, {"--dir", dir}, log("b"));
  ASSERT_TRUE(bs.ready()) << bs.log();

  Kbusd as(&a, {"--dir", dir}, log("a"));
  EXPECT_FALSE(as.ready());
  EXPECT_EQ(as.exit_code(), 1);
  const std::string expected = "kbusd: unsafe bus directory " + dir + ": it is owned by uid " +
                               std::to_string(b.uid) + " (kbus-test-b), expected uid " +
                               std::to_string(a.uid) + " (kbus-test-a) or root";
  EXPECT_TRUE(contains(as.log(), expected)) << as.log();
  EXPECT_TRUE(contains(as.log(), "remove it, or set KBUS_DIR")) << as.log();
  EXPECT_FALSE(contains(as.log(), "another kbusd")) << as.log();

  std::string err;
  const std::string got = open_as(&a, dir, &err);
  EXPECT_EQ(got.rfind("EPERM kbus open: unsafe bus directory " + dir + ": it is owned by uid " +
                          std::to_string(b.uid),
                      0),
            0u)
      << got;
  EXPECT_TRUE(contains(err, "kbus: unsafe bus directory " + dir)) << err;
  // Root does not trust it either.
  EXPECT_EQ(open_as(nullptr, dir).rfind("EPERM", 0), 0u);
  // Nobody said HELLO to b's daemon: b's own first Ksock gets id 1.
  EXPECT_EQ(open_as(&b, dir), "ok 1");
}

// A directory others (or its group) may write to: they could replace the
// sockets. kbusd refuses it, as a user and as root; a client refuses to
// talk to a daemon that is serving there, and talks to it once it is fixed.
TEST_F(DirSafetyTest, WritableDirectoryIsRefused) {
  const std::string open_dir = base + "/open";
  make_dir(open_dir, &a, 0777);
  Kbusd as(&a, {"--dir", open_dir}, log("a"));
  EXPECT_FALSE(as.ready());
  EXPECT_TRUE(contains(as.log(), "kbusd: unsafe bus directory " + open_dir +
                                     ": it is writable by others (mode 0777), so they could "
                                     "replace the bus sockets: chmod go-w " + open_dir))
      << as.log();
  EXPECT_FALSE(fs::exists(open_dir + "/.kbusd.lock"));  // refused before touching anything

  const std::string group_dir = base + "/group";
  make_dir(group_dir, &a, 0770);
  Kbusd ag(&a, {"--dir", group_dir}, log("ag"));
  EXPECT_FALSE(ag.ready());
  EXPECT_TRUE(contains(ag.log(), "writable by its group (mode 0770)")) << ag.log();

  const std::string root_open = base + "/root-open";
  make_dir(root_open, nullptr, 01777);
  Kbusd root(nullptr, {"--dir", root_open}, log("root"));
  EXPECT_FALSE(root.ready());
  EXPECT_TRUE(contains(root.log(), "writable by others (mode 01777)")) << root.log();

  // A daemon serving in a good directory that then becomes writable.
  const std::string mine = base + "/mine";
  make_dir(mine, &a, 0700);
  Kbusd d(&a, {"--dir", mine}, log("mine"));
  ASSERT_TRUE(d.ready()) << d.log();
  ASSERT_EQ(::chmod(mine.c_str(), 0777), 0);
  std::string err;
  EXPECT_EQ(open_as(&a, mine, &err).rfind("EPERM kbus open: unsafe bus directory " + mine, 0), 0u);
  EXPECT_TRUE(contains(err, "writable by others (mode 0777)")) << err;
  // The kbus tool says it too, and what to do.
  const ProcessResult cli = run_process({kbus_cli_path(), "stats", "-d", mine});
  EXPECT_EQ(cli.exit_code, 1);
  EXPECT_TRUE(contains(cli.err, "kbus: unsafe bus directory " + mine)) << cli.err;
  EXPECT_TRUE(contains(cli.err, "EPERM: refused to use " + mine + "/kbus0")) << cli.err;
  ASSERT_EQ(::chmod(mine.c_str(), 0700), 0);
  EXPECT_EQ(open_as(&a, mine), "ok 1");  // the refused opens never said HELLO
}

// kbusd as root in a directory its service user owns (/run/kbus after
// --user, or systemd's RuntimeDirectory=): that user plants a link named
// .kbusd.lock. kbusd does not follow it - the target is not created - and
// says why; other things at that name are refused the same way.
TEST_F(DirSafetyTest, PlantedLockFileIsNeverFollowedOrUsed) {
  const std::string sys = base + "/sys";
  make_dir(sys, &a, 0755);
  const std::string target = base + "/made-by-root";
  ASSERT_EQ(::symlink(target.c_str(), (sys + "/.kbusd.lock").c_str()), 0);
  Kbusd root(nullptr, {"--dir", sys}, log("root"));
  EXPECT_FALSE(root.ready());
  EXPECT_EQ(root.exit_code(), 1);
  EXPECT_TRUE(contains(root.log(), sys + "/.kbusd.lock is a symbolic link, not kbusd's lock file"))
      << root.log();
  EXPECT_FALSE(fs::exists(fs::symlink_status(target))) << "kbusd created the link's target";
  EXPECT_TRUE(fs::is_symlink(sys + "/.kbusd.lock"));
  EXPECT_FALSE(fs::exists(sys + "/kbus0"));

  fs::remove(sys + "/.kbusd.lock");
  ASSERT_EQ(::mkfifo((sys + "/.kbusd.lock").c_str(), 0644), 0);
  Kbusd fifo(nullptr, {"--dir", sys}, log("fifo"));
  EXPECT_FALSE(fifo.ready());
  EXPECT_TRUE(contains(fifo.log(), ".kbusd.lock: it is a FIFO, not kbusd's lock file: remove it"))
      << fifo.log();
  EXPECT_TRUE(fs::is_fifo(sys + "/.kbusd.lock"));  // refused, not removed

  // A lock file of a third user (neither kbusd's, root's nor the
  // directory owner's) could be held by that user to keep kbusd out.
  fs::remove(sys + "/.kbusd.lock");
  { std::ofstream(sys + "/.kbusd.lock") << ""; }
  ASSERT_EQ(::chown((sys + "/.kbusd.lock").c_str(), b.uid, b.gid), 0);
  Kbusd third(nullptr, {"--dir", sys}, log("third"));
  EXPECT_FALSE(third.ready());
  EXPECT_TRUE(contains(third.log(), "it is owned by uid " + std::to_string(b.uid) +
                                        " (kbus-test-b), not by kbusd's user or root"))
      << third.log();
  EXPECT_TRUE(fs::is_regular_file(sys + "/.kbusd.lock"));  // refused, not removed

  // The directory owner's own lock file (a kbusd of that user that was
  // killed) is taken over.
  ASSERT_EQ(::chown((sys + "/.kbusd.lock").c_str(), a.uid, a.gid), 0);
  Kbusd ok(nullptr, {"--dir", sys}, log("ok"));
  EXPECT_TRUE(ok.ready()) << ok.log();
}

// Only a socket named kbusN is ever removed or replaced: a regular file, a
// symbolic link or a directory of that name is an error that names it, and
// is left as it was.
TEST_F(DirSafetyTest, OnlyASocketIsEverReplaced) {
  const std::string d = base + "/d";
  make_dir(d, nullptr, 0755);
  const std::string kbus0 = d + "/kbus0";

  { std::ofstream(kbus0) << "precious"; }
  Kbusd file(nullptr, {"--dir", d}, log("file"));
  EXPECT_FALSE(file.ready());
  EXPECT_TRUE(contains(file.log(), kbus0 + " is a regular file, not a bus socket: kbusd leaves it "
                                           "alone; remove it yourself"))
      << file.log();
  EXPECT_EQ(slurp(kbus0), "precious");
  EXPECT_FALSE(fs::exists(d + "/.kbusd.lock"));  // a failed start leaves no lock file behind

  fs::remove(kbus0);
  const std::string target = base + "/target";
  { std::ofstream(target) << "target"; }
  ASSERT_EQ(::symlink(target.c_str(), kbus0.c_str()), 0);
  Kbusd link(nullptr, {"--dir", d}, log("link"));
  EXPECT_FALSE(link.ready());
  EXPECT_TRUE(contains(link.log(), kbus0 + " is a symbolic link, not a bus socket")) << link.log();
  EXPECT_TRUE(fs::is_symlink(kbus0));
  EXPECT_EQ(slurp(target), "target");

  // The second bus's name is taken by a directory: the first bus's socket,
  // already made, is removed again.
  fs::remove(kbus0);
  ASSERT_EQ(::mkdir((d + "/kbus1").c_str(), 0755), 0);
  Kbusd dir(nullptr, {"--dir", d, "--devices", "2"}, log("dir"));
  EXPECT_FALSE(dir.ready());
  EXPECT_TRUE(contains(dir.log(), d + "/kbus1 is a directory, not a bus socket")) << dir.log();
  EXPECT_TRUE(fs::is_directory(d + "/kbus1"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(kbus0)));
  fs::remove(d + "/kbus1");

  // A socket file left by a kbusd that died is replaced (§6 of
  // docs/reliability.md): kbusd serves.
  const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, kbus0.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(s);
  Kbusd stale(nullptr, {"--dir", d}, log("stale"));
  ASSERT_TRUE(stale.ready()) << stale.log();
  EXPECT_EQ(open_as(nullptr, d), "ok 1");
  EXPECT_EQ(stale.stop(), 0);
  EXPECT_FALSE(fs::exists(fs::symlink_status(kbus0)));
}

// The good cases: a user's own 0700 directory; a directory kbusd makes
// itself (0700 plus search permission for whom --mode admits, whatever the
// umask; sockets with exactly --mode). A user's own directory is that
// user's alone: another user's client refuses it (only root's directories,
// or ones root handed over, are shared - the system bus).
TEST_F(DirSafetyTest, OwnDirectoriesAndDirectoriesKbusdMakesAreUsed) {
  const std::string mine = base + "/mine";
  make_dir(mine, &a, 0700);
  Kbusd own(&a, {"--dir", mine}, log("own"));
  ASSERT_TRUE(own.ready()) << own.log();
  EXPECT_EQ(open_as(&a, mine), "ok 1");

  const std::string home = base + "/home-a";
  make_dir(home, &a, 0755);
  const std::string made = home + "/kbus";
  Kbusd open_bus(&a, {"--dir", made}, log("made"), 077);
  ASSERT_TRUE(open_bus.ready()) << open_bus.log();
  struct stat st {};
  ASSERT_EQ(::stat(made.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, a.uid);
  EXPECT_EQ(st.st_mode & 07777, 0711u);       // others may reach the 0666 sockets, not list
  EXPECT_EQ(mode_of(made + "/kbus0"), 0666u);  // --mode exactly, despite umask 077
  EXPECT_EQ(open_as(&a, made), "ok 1");
  const std::string other = open_as(&b, made);
  EXPECT_TRUE(contains(other, "EPERM kbus open: unsafe bus directory " + made +
                                  ": it is owned by uid " + std::to_string(a.uid) +
                                  " (kbus-test-a), expected uid " + std::to_string(b.uid) +
                                  " (kbus-test-b) or root"))
      << other;
  EXPECT_EQ(open_bus.stop(), 0);

  const std::string priv = home + "/private";
  Kbusd private_bus(&a, {"--dir", priv, "--mode", "0600"}, log("private"));
  ASSERT_TRUE(private_bus.ready()) << private_bus.log();
  EXPECT_EQ(mode_of(priv), 0700u);
  EXPECT_EQ(mode_of(priv + "/kbus0"), 0600u);
  EXPECT_EQ(open_as(&a, priv), "ok 1");

  // Root's kbusd makes a directory that everyone trusts and, with the
  // default --mode 0666, everyone may use (the original's /dev/kbusN).
  const std::string shared = base + "/shared";
  Kbusd root_bus(nullptr, {"--dir", shared}, log("shared"), 077);
  ASSERT_TRUE(root_bus.ready()) << root_bus.log();
  EXPECT_EQ(mode_of(shared), 0711u);
  EXPECT_EQ(mode_of(shared + "/kbus0"), 0666u);
  EXPECT_EQ(open_as(&b, shared), "ok 1");
  EXPECT_EQ(open_as(&a, shared), "ok 2");
}

// A second kbusd on a directory another one holds: refused, and it leaves
// the lock file - the first one's - where it is (D27: only what this kbusd
// locked is ever removed).
TEST_F(DirSafetyTest, SecondKbusdLeavesTheHeldLockAlone) {
  const std::string d = base + "/d";
  make_dir(d, nullptr, 0755);
  Kbusd first(nullptr, {"--dir", d}, log("first"));
  ASSERT_TRUE(first.ready()) << first.log();
  Kbusd second(nullptr, {"--dir", d}, log("second"));
  EXPECT_FALSE(second.ready());
  EXPECT_TRUE(contains(second.log(), "another kbusd already serves " + d)) << second.log();
  EXPECT_TRUE(fs::exists(d + "/.kbusd.lock"));
  EXPECT_EQ(open_as(nullptr, d), "ok 1");
  EXPECT_EQ(first.stop(), 0);
  EXPECT_FALSE(fs::exists(d + "/.kbusd.lock"));
}

// The system style: root's kbusd makes /run/kbus-like directory in a parent
// only root may write, gives it to its --user, and the members of --group
// (here b) reach it - the directory is a's now, and every client trusts it
// because only root can have put it there. Started again as root, kbusd
// uses it again.
TEST_F(DirSafetyTest, SystemStyleDirectoryHandedToTheServiceUser) {
  const std::string sys = base + "/kbus";
  {
    Kbusd first(nullptr, {"--dir", sys, "--user", a.name, "--group", b.name, "--mode", "0660"},
                log("first"));
    ASSERT_TRUE(first.ready()) << first.log();
    struct stat st {};
    ASSERT_EQ(::stat(sys.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, a.uid);
    EXPECT_EQ(st.st_gid, b.gid);
    EXPECT_EQ(st.st_mode & 07777, 0710u);
    EXPECT_EQ(mode_of(sys + "/kbus0"), 0660u);
    EXPECT_EQ(open_as(&b, sys), "ok 1");
    EXPECT_EQ(open_as(nullptr, sys), "ok 2");
    EXPECT_EQ(first.stop(), 0);
  }
  Kbusd again(nullptr, {"--dir", sys, "--user", a.name, "--group", b.name, "--mode", "0660"},
              log("again"));
  ASSERT_TRUE(again.ready()) << again.log();
  EXPECT_EQ(open_as(&b, sys), "ok 1");
  // The same directory in a parent everyone may write to proves nothing.
  const std::string moved = tmp + "/kbus";
  EXPECT_EQ(again.stop(), 0);
  fs::rename(sys, moved);
  EXPECT_EQ(open_as(&b, moved).rfind("EPERM", 0), 0u);
}

}  // namespace
}  // namespace kbus::test
