// kbus_chaos - the chaos test of docs/reliability.md §1.
//
// One kbusd with several buses; on each bus, in separate processes:
// repliers (each the replier of its own name; they reply, sometimes late,
// sometimes never, and sometimes unbind and rebind), listeners (of
// `$.Chaos.*`, logging every message they read) and senders (Requests to
// the repliers' names, Announcements; they never bind, so every Reply or
// Status they read is their own answer). Every worker also, now and then,
// opens a second Ksock and closes it in the middle of a read, in the middle
// of a write, or in the middle of a frame. Meanwhile workers of every kind
// are killed with SIGKILL at random and started again.
//
// At the end repliers are stopped first (their Ksocks close: the bus owes
// statuses for what they held), then senders (each waits for its last
// answers), then listeners. Checked, from the workers' logs and the daemon:
//   1. every Request a surviving sender had accepted got exactly one answer
//      (Reply or Status), and no Request of any sender got two;
//   2. every listener saw messages in the one bus order: its own sequence
//      is in increasing id order, and any two listeners of a bus agree on
//      the order of the messages they both saw;
//   3. the daemon's descriptors return to their start value, its heap to
//      within a little of it, and it holds no connection or Ksock;
//   4. `kbus stats` lists no Ksock but its own.
// Even-numbered workers read through their shared-memory receive queue,
// odd ones through the socket only (docs/protocol.md §7).
// The figures (requests, answers, kills, messages) are printed.
//
// Usage: kbus_chaos [--seconds S] [--buses N] [--senders N] [--repliers N]
//                   [--listeners N] [--kill-every-ms MS] [--seed N] [--long]
// --long is --seconds 600 --senders 4 --repliers 3 --listeners 3
// --kill-every-ms 40. Exit status 0 when every check passed.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kbus/ksock.hpp"
#include "kbus/message.hpp"

using namespace kbus;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  double seconds = 8;
  int buses = 3;
  int senders = 2;
  int repliers = 2;
  int listeners = 2;
  int kill_every_ms = 150;
  unsigned seed = 1;
};

volatile sig_atomic_t g_stop = 0;
void on_term(int) { g_stop = 1; }

std::string g_dir;  // the daemon's socket directory
std::string g_logs;  // the workers' logs

// One line to a worker log, with one write(2): a SIGKILL loses at most the
// line being written, never a line already written.
class Log {
 public:
  explicit Log(const std::string& path)
      : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {}
  ~Log() { ::close(fd_); }
  void line(const std::string& s) {
    const std::string l = s + "\n";
    (void)!::write(fd_, l.data(), l.size());
  }

 private:
  int fd_;
};

// ---------------------------------------------------------------- tricks

// Opens a second Ksock and closes it half-way through something.
void trick(int bus, std::mt19937& rng, Log& log) {
  switch (rng() % 3) {
    case 0: {  // mid-read: a message made current, partly read
      auto k = Ksock::try_open(bus, Mode::read_write, g_dir);
      if (!k) return;
      k->bind("$.Chaos.Trick");
      k->send_msg(make_announcement("$.Chaos.Trick", std::string(100, 't')));
      if (k->next_msg() > 0) k->read_data(10);
      log.line("T read");
      break;  // closed here, with 90+ bytes unread
    }
    case 1: {  // mid-write: half a message written
      auto k = Ksock::try_open(bus, Mode::read_write, g_dir);
      if (!k) return;
      const std::string bytes = encode_entire(make_announcement("$.Chaos.Trick", "half"));
      k->write_data(std::string_view(bytes).substr(0, bytes.size() / 2));
      log.line("T write");
      break;
    }
    case 2: {  // mid-frame: HELLO, then half a frame, then close
      const std::string path = g_dir + "/kbus" + std::to_string(bus);
      const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        std::uint32_t hello[5] = {16, 64, 1, 3, kNativeHeaderLen};
        std::uint32_t half[3] = {200, 65, 0x7375624B};  // WRITE of 196 bytes: 8 sent
        (void)!::send(fd, hello, sizeof hello, MSG_NOSIGNAL);
        (void)!::send(fd, half, sizeof half, MSG_NOSIGNAL);
        log.line("T frame");
      }
      ::close(fd);
      break;
    }
  }
}

// ---------------------------------------------------------------- workers

std::string replier_name(int idx) { return "$.Chaos.R" + std::to_string(idx); }

int replier_main(int bus, int idx, unsigned seed, const std::string& logpath) {
  Log log(logpath);
  std::mt19937 rng(seed);
  Ksock k = Ksock::open(bus, Mode::read_write, g_dir);
  const std::string name = replier_name(idx);
  auto bind = [&] {
    // The killed predecessor's binding goes when kbusd sees it hang up.
    for (int i = 0; i < 1000 && !g_stop; ++i) {
      auto r = k.try_bind(name, true);
      if (r.ok()) return true;
      if (r.error() != Errc::eaddrinuse) throw Error(r.error(), "bind");
      std::this_thread::sleep_for(5ms);
    }
    return false;
  };
  if (!bind()) return g_stop ? 0 : 3;
  log.line("B");
  std::vector<Message> held;
  while (!g_stop) {
    auto m = k.wait_for_msg(50ms);
    if (m && m->wants_us_to_reply()) {
      const unsigned r = rng() % 100;
      if (r < 85) {
        auto s = k.try_send_msg(make_reply(*m, m->data).value());
        log.line(s.ok() ? "R" : "E " + errno_name(to_errno(s.error())));
      } else if (r < 92) {
        held.push_back(*m);  // later, or never (then Ignored at close)
      }  // else: never answered (Ignored at close)
    }
    if (!held.empty() && rng() % 4 == 0) {
      const std::size_t i = rng() % held.size();
      if (rng() % 3) {
        auto s = k.try_send_msg(make_reply(held[i]).value());
        log.line(s.ok() ? "R" : "E " + errno_name(to_errno(s.error())));
      }
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
    }
    if (rng() % 200 == 0) {  // queued Requests get Unbound
      k.unbind(name, true);
      log.line("U");
      if (!bind()) break;
    }
    if (rng() % 100 == 0) trick(bus, rng, log);
  }
  log.line("END");
  return 0;
}

int listener_main(int bus, int idx, unsigned seed, const std::string& logpath) {
  (void)idx;
  Log log(logpath);
  std::mt19937 rng(seed);
  Ksock k = Ksock::open(bus, Mode::read_write, g_dir);
  k.bind("$.Chaos.*");
  log.line("B");
  while (!g_stop) {
    auto m = k.wait_for_msg(50ms);
    if (m && m->name != "$.Chaos.Trick")
      log.line("M " + std::to_string(m->hdr.id.serial_num) + " " + m->name);
    if (rng() % 300 == 0) trick(bus, rng, log);
  }
  log.line("END");
  return 0;
}

int sender_main(int bus, int idx, unsigned seed, const std::string& logpath, int repliers) {
  (void)idx;
  Log log(logpath);
  std::mt19937 rng(seed);
  Ksock k = Ksock::open(bus, Mode::read_write, g_dir);
  log.line("B");
  int outstanding = 0;
  auto take = [&](const Message& m) {
    if (m.is_reply() && m.hdr.to == k.id()) {
      log.line("A " + std::to_string(m.hdr.in_reply_to.serial_num) + " " + m.name +
               (m.is_synthetic() ? " status" : " reply"));
      --outstanding;
    } else {
      log.line("? " + m.to_string());  // a sender binds nothing
    }
  };
  while (!g_stop) {
    if (outstanding < 20) {
      Message m;
      if (rng() % 5 == 0) {
        m = make_announcement("$.Chaos.News", std::string(rng() % 64, 'n'));
      } else {
        // Now and then a name nobody serves: EADDRNOTAVAIL.
        const int r = static_cast<int>(rng() % (repliers + 1));
        m = make_request(replier_name(r), std::string(rng() % 200, 'q'));
      }
      auto s = k.try_send_msg(m);
      if (s.ok())
        log.line((m.is_request() ? "S " : "N ") + std::to_string(s->serial_num));
      else
        log.line("X " + errno_name(to_errno(s.error())));
      if (s.ok() && m.is_request()) ++outstanding;
    }
    auto m = k.wait_for_msg(outstanding < 20 ? 1ms : 20ms);
    if (m) take(*m);
    if (rng() % 200 == 0) trick(bus, rng, log);
  }
  // Stopping: the repliers are gone by now, so every outstanding Request
  // is answered (by them, or by the bus for them).
  const auto deadline = Clock::now() + 20s;
  while (outstanding > 0 && Clock::now() < deadline) {
    auto m = k.wait_for_msg(100ms);
    if (m) take(*m);
  }
  log.line("END " + std::to_string(outstanding));
  return 0;
}

struct Worker {
  std::string role;  // "replier", "listener", "sender"
  int bus = 0;
  int idx = 0;
  int incarnation = 0;
  pid_t pid = -1;
  std::string log;
};

pid_t spawn(Worker& w, const Options& o, unsigned seed) {
  ++w.incarnation;
  w.log = g_logs + "/" + w.role + "-" + std::to_string(w.bus) + "-" + std::to_string(w.idx) +
          "-" + std::to_string(w.incarnation) + ".log";
  std::fflush(nullptr);
  // SIGTERM stays blocked until the child has its handler: a worker stopped
  // just after it started must still stop cleanly.
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ::sigprocmask(SIG_BLOCK, &term, &old);
  const pid_t pid = ::fork();
  if (pid != 0) ::sigprocmask(SIG_SETMASK, &old, nullptr);
  if (pid == 0) {
    ::close_range(3, ~0U, 0);
    struct sigaction sa {};
    sa.sa_handler = on_term;
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    // Both transports on every bus (docs/protocol.md §7): odd workers read
    // through the socket only, even ones through their shared-memory ring,
    // so kills land while a client is inside its ring as well.
    if (w.idx % 2) ::setenv("KBUS_TRANSPORT", "socket", 1);
    int code = 0;
    try {
      if (w.role == "replier") code = replier_main(w.bus, w.idx, seed, w.log);
      if (w.role == "listener") code = listener_main(w.bus, w.idx, seed, w.log);
      if (w.role == "sender") code = sender_main(w.bus, w.idx, seed, w.log, o.repliers);
    } catch (const std::exception& e) {
      Log(w.log).line(std::string("EXCEPTION ") + e.what());
      code = 2;
    }
    ::_exit(code);
  }
  w.pid = pid;
  return pid;
}

// waitpid with a deadline; the exit status, or -1 (then it is killed).
int reap(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return -1;
    }
    std::this_thread::sleep_for(2ms);
  }
}

// ---------------------------------------------------------------- the daemon

struct Daemon {
  pid_t pid = -1;
  std::string log;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& path) {
  std::vector<std::string> out;
  const std::string text = read_file(path);
  std::size_t at = 0;
  for (std::size_t nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1)
    out.push_back(text.substr(at, nl - at));
  return out;  // a last line without '\n' (cut by SIGKILL) is left out
}

Daemon start_daemon(int buses) {
  Daemon d;
  d.log = g_dir + "/kbusd.log";
  // Readiness (docs/reliability.md §7): kbusd writes one byte to the pipe
  // once it serves, or closes it unwritten if it cannot start.
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) {
    std::perror("pipe2");
    std::exit(2);
  }
  std::fflush(nullptr);
  d.pid = ::fork();
  if (d.pid == 0) {
    const int fd = ::open(d.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (ready[1] == 3)
      ::fcntl(3, F_SETFD, 0);
    else
      ::dup2(ready[1], 3);
    ::close_range(4, ~0U, 0);
    const std::string n = std::to_string(buses);
    ::execl(KBUSD_PATH, KBUSD_PATH, "--devices", n.c_str(), "--dir", g_dir.c_str(), "--ready-fd",
            "3", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(ready[1]);
  pollfd p{ready[0], POLLIN, 0};
  char byte = 0;
  if (::poll(&p, 1, 60000) != 1 || ::read(ready[0], &byte, 1) != 1) {
    ::kill(d.pid, SIGKILL);
    ::waitpid(d.pid, nullptr, 0);
    std::fprintf(stderr, "chaos: kbusd did not start:\n%s\n", read_file(d.log).c_str());
    std::exit(2);
  }
  ::close(ready[0]);
  return d;
}

// SIGUSR1 and the numbers of the status line it logs.
std::map<std::string, long long> daemon_status(const Daemon& d) {
  auto count = [&] {
    const std::string t = read_file(d.log);
    std::size_t n = 0;
    for (std::size_t at = 0; (at = t.find("kbusd: status:", at)) != std::string::npos; ++at) ++n;
    return n;
  };
  const std::size_t before = count();
  ::kill(d.pid, SIGUSR1);
  for (int i = 0; i < 2000 && count() == before; ++i) std::this_thread::sleep_for(2ms);
  const std::string t = read_file(d.log);
  const std::size_t at = t.rfind("kbusd: status:");
  long long conns = -1, ksocks = -1, buses = -1, fds = -1, rss = -1, heap = -1;
  if (at != std::string::npos)
    std::sscanf(t.c_str() + at,
                "kbusd: status: %lld connections, %lld ksocks, %lld buses, %lld fds, rss %lld "
                "kB, heap %lld bytes",
                &conns, &ksocks, &buses, &fds, &rss, &heap);
  return {{"connections", conns}, {"ksocks", ksocks}, {"fds", fds}, {"rss", rss}, {"heap", heap}};
}

// ---------------------------------------------------------------- checking

struct Checks {
  int passed = 0, failed = 0;
  void check(bool ok, const std::string& what) {
    if (ok) {
      ++passed;
    } else {
      ++failed;
      std::printf("chaos: FAILED: %s\n", what.c_str());
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--seconds") o.seconds = std::stod(next());
    else if (a == "--buses") o.buses = std::stoi(next());
    else if (a == "--senders") o.senders = std::stoi(next());
    else if (a == "--repliers") o.repliers = std::stoi(next());
    else if (a == "--listeners") o.listeners = std::stoi(next());
    else if (a == "--kill-every-ms") o.kill_every_ms = std::stoi(next());
    else if (a == "--seed") o.seed = static_cast<unsigned>(std::stoul(next()));
    else if (a == "--long") {
      o.seconds = 600;
      o.senders = 4;
      o.repliers = 3;
      o.listeners = 3;
      o.kill_every_ms = 40;
    } else {
      std::fprintf(stderr, "usage: kbus_chaos [--seconds S] [--buses N] [--senders N] "
                           "[--repliers N] [--listeners N] [--kill-every-ms MS] [--seed N] [--long]\n");
      return 2;
    }
  }
  char tmpl[] = "/tmp/kbus-chaos-XXXXXX";
  if (!::mkdtemp(tmpl)) return 2;
  g_dir = tmpl;
  g_logs = g_dir + "/logs";
  std::filesystem::create_directory(g_logs);
  ::signal(SIGPIPE, SIG_IGN);
  std::printf("chaos: %g s, %d buses, per bus %d senders, %d repliers, %d listeners, a kill every "
              "%d ms, seed %u, in %s\n",
              o.seconds, o.buses, o.senders, o.repliers, o.listeners, o.kill_every_ms, o.seed,
              g_dir.c_str());
  std::fflush(stdout);

  Daemon d = start_daemon(o.buses);
  {
    // A round trip on a Ksock closed again: the start-up probe's connection
    // has been dealt with by now, so this is the idle daemon.
    Ksock k = Ksock::open(0, Mode::read_write, g_dir);
    k.reset();
  }
  const auto start_status = daemon_status(d);
  std::mt19937 rng(o.seed);
  std::vector<Worker> workers;
  for (int b = 0; b < o.buses; ++b) {
    auto add = [&](const char* role, int n) {
      for (int i = 0; i < n; ++i) {
        Worker w;
        w.role = role;
        w.bus = b;
        w.idx = i;
        workers.push_back(w);
      }
    };
    add("replier", o.repliers);
    add("listener", o.listeners);
    add("sender", o.senders);
  }
  for (Worker& w : workers) spawn(w, o, rng());

  // The chaos: SIGKILL one worker at a time, at random, and start it again.
  Checks checks;
  std::map<std::string, int> kills;
  std::set<std::string> killed_logs;
  const auto end = Clock::now() + std::chrono::duration<double>(o.seconds);
  while (Clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(o.kill_every_ms / 2 + rng() % o.kill_every_ms));
    Worker& w = workers[rng() % workers.size()];
    ::kill(w.pid, SIGKILL);
    const int code = reap(w.pid, 10s);
    if (code != 128 + SIGKILL)
      checks.check(false, w.role + " " + w.log + " had exited (" + std::to_string(code) + ") before it was killed");
    killed_logs.insert(w.log);
    ++kills[w.role];
    spawn(w, o, rng());
  }

  // Stop: repliers first (what they hold is answered by the bus), then
  // senders (each waits for its last answers), then listeners.
  for (const char* role : {"replier", "sender", "listener"}) {
    for (Worker& w : workers)
      if (w.role == role) ::kill(w.pid, SIGTERM);
    for (Worker& w : workers) {
      if (w.role != role) continue;
      const int code = reap(w.pid, 40s);
      checks.check(code == 0, w.role + " " + w.log + " stopped with status " + std::to_string(code));
    }
  }

  // ---- 1. exactly one answer
  long requests = 0, answers = 0, replies = 0, statuses = 0, refused = 0, news = 0, tricks = 0;
  long unanswered = 0, doubled = 0, unknown = 0, strays = 0;
  std::map<std::string, long> by_status, by_refusal;
  std::map<int, std::vector<std::vector<std::pair<long, std::string>>>> listener_seqs;
  long listener_msgs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(g_logs)) {
    const std::string path = entry.path().string();
    const std::string file = entry.path().filename().string();
    const auto lines = lines_of(path);
    for (const auto& l : lines) {
      if (l.rfind("T ", 0) == 0) ++tricks;
      if (l.rfind("EXCEPTION", 0) == 0) checks.check(false, path + ": " + l);
    }
    if (file.rfind("sender-", 0) == 0) {
      std::map<long, int> sent;  // serial -> answers
      bool ended = false;
      for (const auto& l : lines) {
        std::istringstream in(l);
        std::string tag;
        in >> tag;
        if (tag == "S") {
          long s;
          in >> s;
          sent[s] = 0;
          ++requests;
        } else if (tag == "N") {
          ++news;
        } else if (tag == "X") {
          std::string e;
          in >> e;
          ++refused;
          ++by_refusal[e];
        } else if (tag == "A") {
          long s;
          std::string name, kind;
          in >> s >> name >> kind;
          ++answers;
          if (kind == "status") {
            ++statuses;
            ++by_status[name];
          } else {
            ++replies;
          }
          auto it = sent.find(s);
          if (it == sent.end()) {
            ++unknown;
            checks.check(false, path + ": an answer to a request it never sent: " + l);
          } else if (++it->second > 1) {
            ++doubled;
            checks.check(false, path + ": a second answer: " + l);
          }
        } else if (tag == "?") {
          ++strays;
          checks.check(false, path + ": a message that is not its answer: " + l);
        } else if (tag == "END") {
          ended = true;
          long left = -1;
          in >> left;
          checks.check(left == 0, path + ": " + std::to_string(left) + " requests never answered");
        }
      }
      if (ended) {
        for (const auto& [s, n] : sent) {
          if (n == 0) ++unanswered;
        }
      } else {
        checks.check(killed_logs.count(path) == 1, path + ": neither killed nor ended");
      }
    } else if (file.rfind("listener-", 0) == 0) {
      const int bus = std::stoi(file.substr(9));
      std::vector<std::pair<long, std::string>> seq;
      for (const auto& l : lines) {
        if (l.rfind("M ", 0) != 0) continue;
        std::istringstream in(l.substr(2));
        long s;
        std::string name;
        in >> s >> name;
        seq.emplace_back(s, name);
        ++listener_msgs;
      }
      listener_seqs[bus].push_back(std::move(seq));
    }
  }
  checks.check(unanswered == 0, std::to_string(unanswered) + " requests of surviving senders got no answer");
  checks.check(doubled == 0 && unknown == 0 && strays == 0, "answers twice or to nobody");
  checks.check(requests > 0 && answers > 0, "the run sent requests and got answers");

  // ---- 2. one bus order
  long pairs = 0, order_errors = 0;
  for (auto& [bus, seqs] : listener_seqs) {
    for (const auto& seq : seqs) {
      for (std::size_t i = 1; i < seq.size(); ++i) {
        if (seq[i].first <= seq[i - 1].first) {
          ++order_errors;
          if (order_errors < 5)
            std::printf("chaos: bus %d listener order: %ld after %ld\n", bus, seq[i].first,
                        seq[i - 1].first);
        }
      }
    }
    for (std::size_t a = 0; a < seqs.size(); ++a) {
      std::map<long, std::size_t> pos;
      for (std::size_t i = 0; i < seqs[a].size(); ++i) pos[seqs[a][i].first] = i;
      for (std::size_t b = a + 1; b < seqs.size(); ++b) {
        ++pairs;
        long last = -1;
        for (const auto& [s, name] : seqs[b]) {
          auto it = pos.find(s);
          if (it == pos.end()) continue;
          if (static_cast<long>(it->second) <= last) ++order_errors;
          last = static_cast<long>(it->second);
          if (seqs[a][it->second].second != name) ++order_errors;
        }
      }
    }
  }
  checks.check(order_errors == 0, std::to_string(order_errors) + " listener order disagreements");
  checks.check(listener_msgs > 0, "listeners saw messages");

  // ---- 3. the daemon let go of everything
  bool idle = false;
  std::map<std::string, long long> end_status;
  for (int i = 0; i < 500 && !idle; ++i) {
    end_status = daemon_status(d);
    idle = end_status["connections"] == 0 && end_status["ksocks"] == 0 &&
           end_status["fds"] == start_status.at("fds");
    if (!idle) std::this_thread::sleep_for(20ms);
  }
  checks.check(end_status["connections"] == 0, "connections left: " + std::to_string(end_status["connections"]));
  checks.check(end_status["ksocks"] == 0, "Ksocks left: " + std::to_string(end_status["ksocks"]));
  checks.check(end_status["fds"] == start_status.at("fds"),
               "descriptors: " + std::to_string(start_status.at("fds")) + " at start, " +
                   std::to_string(end_status["fds"]) + " at the end");
  const long long heap0 = start_status.at("heap"), heap1 = end_status["heap"];
  if (heap0 > 0)  // 0: not measurable (e.g. under AddressSanitizer)
    checks.check(heap1 - heap0 < 256 * 1024,
                 "heap: " + std::to_string(heap0) + " bytes at start, " + std::to_string(heap1) +
                     " at the end");

  // ---- 4. kbus stats: no Ksock but its own
  std::string stats;
  {
    const std::string cmd = std::string("KBUS_DIR=") + g_dir + " " + KBUS_CLI_PATH + " stats --raw";
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
      char buf[4096];
      std::size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) stats.append(buf, n);
      ::pclose(p);
    }
  }
  int ksock_lines = 0, dev_lines = 0;
  {
    std::istringstream in(stats);
    for (std::string l; std::getline(in, l);) {
      if (l.rfind("    ksock ", 0) == 0) ++ksock_lines;
      if (l.rfind("dev ", 0) == 0) ++dev_lines;
    }
  }
  checks.check(dev_lines == o.buses && ksock_lines == 1,
               "kbus stats lists " + std::to_string(ksock_lines) + " Ksocks:\n" + stats);

  ::kill(d.pid, SIGTERM);
  const int dcode = reap(d.pid, 10s);
  checks.check(dcode == 0, "kbusd exit status " + std::to_string(dcode));

  int total_kills = 0;
  for (const auto& [r, n] : kills) total_kills += n;
  std::string sts, refs;
  for (const auto& [n, c] : by_status) sts += " " + n + "=" + std::to_string(c);
  for (const auto& [n, c] : by_refusal) refs += " " + n + "=" + std::to_string(c);
  std::printf("chaos: %ld requests accepted, %ld answers (%ld replies, %ld statuses:%s), %ld sends "
              "refused (%s ), %ld announcements\n",
              requests, answers, replies, statuses, sts.c_str(), refused, refs.c_str(), news);
  std::printf("chaos: %d kills (%d repliers, %d listeners, %d senders), %ld half-done closes "
              "(mid-read, mid-write, mid-frame)\n",
              total_kills, kills["replier"], kills["listener"], kills["sender"], tricks);
  std::printf("chaos: %ld listener messages checked over %ld listener pairs\n", listener_msgs, pairs);
  std::printf("chaos: kbusd fds %lld -> %lld, heap %lld -> %lld bytes, rss %lld -> %lld kB\n",
              start_status.at("fds"), end_status["fds"], heap0, heap1, start_status.at("rss"),
              end_status["rss"]);
  std::printf("chaos: %d passed, %d failed\n", checks.passed, checks.failed);
  if (checks.failed == 0) std::filesystem::remove_all(g_dir);
  else std::printf("chaos: logs kept in %s\n", g_dir.c_str());
  return checks.failed == 0 ? 0 : 1;
}
