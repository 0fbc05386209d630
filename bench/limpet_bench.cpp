// kbus_bench_limpet: what a limpet pair costs. Request/reply round trip and
// announcement throughput through one limpet pair (two kbusd, two
// kbus-limpet processes, over a Unix socket, over TCP on 127.0.0.1, and over
// TLS 1.3 on 127.0.0.1 with certificates made by the openssl command),
// beside the same on a single bus, in the same run, reported as ratios.
//
//   kbus_bench_limpet [--iterations N] [--announcements N] [--payload BYTES]
//                     [--links unix,tcp,tls]   (which pairs, in that order)
//
// Round trip: a requester on bus A, an echoing replier on bus B (single
// bus: both on A); every path set up at once, each on its own daemons, and
// measured interleaved (blocks of 50 round trips on each path in turn) so
// that the machine's other load weighs on all alike. Throughput: a sender on A sends N announcements with
// ALL_OR_WAIT (so nothing is dropped: every queue on the way applies back
// pressure, as the limpet carries the flag across), a listener on B counts
// them; the figure is N over the time from the first send to the last
// arrival.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "kbus/ksock.hpp"

namespace {

using Clock = std::chrono::steady_clock;

using Rtt = bench::Summary;  // p50_us, p99_us, mean_us
using bench::summarise;

[[noreturn]] void die(const std::string& what) { bench::fatal(what); }

std::string make_dir() { return bench::make_temp_dir("kbus-limpet-bench"); }
using bench::start_kbusd;
using bench::start_limpet;

pid_t start_echo(const std::string& dir) {
  int ready[2];
  if (pipe(ready) != 0) die("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    auto k = kbus::Ksock::open(0, kbus::Mode::read_write, dir);
    k.bind("$.Bench.Echo", true);
    (void)!write(ready[1], "r", 1);
    for (;;) {
      auto m = k.wait_for_msg();
      if (!m || !m->wants_us_to_reply()) continue;
      auto rep = kbus::make_reply(*m, m->data);
      if (rep.ok()) (void)k.try_send_msg(*rep);
    }
  }
  char c;
  if (read(ready[0], &c, 1) != 1) die("echo replier did not start");
  close(ready[0]);
  close(ready[1]);
  return pid;
}

void wait_replier(kbus::Ksock& k, const std::string& name) {
  for (int i = 0; i < 5000; ++i) {
    auto r = k.try_find_replier(name);
    if (r.ok() && r->has_value()) return;
    poll(nullptr, 0, 2);
  }
  die("no replier for " + name + " (the limpets did not link?)");
}

// CPU time (ns, /proc/PID/schedstat) and context switches (/proc/PID/status)
// of a process so far: what a round trip costs, whatever the machine's load.
struct ProcCost {
  double cpu_ns = 0;
  double switches = 0;
};

ProcCost proc_cost(pid_t pid) {
  ProcCost c;
  const std::string base = "/proc/" + std::to_string(pid);
  if (std::FILE* f = std::fopen((base + "/schedstat").c_str(), "r")) {
    unsigned long long ns = 0;
    if (std::fscanf(f, "%llu", &ns) == 1) c.cpu_ns = static_cast<double>(ns);
    std::fclose(f);
  }
  if (std::FILE* f = std::fopen((base + "/status").c_str(), "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f)) {
      unsigned long long n = 0;
      if (std::sscanf(line, "voluntary_ctxt_switches: %llu", &n) == 1 ||
          std::sscanf(line, "nonvoluntary_ctxt_switches: %llu", &n) == 1) {
        c.switches += static_cast<double>(n);
      }
    }
    std::fclose(f);
  }
  return c;
}

ProcCost total_cost(const std::vector<pid_t>& pids) {
  ProcCost t;
  for (pid_t p : pids) {
    ProcCost c = proc_cost(p);
    t.cpu_ns += c.cpu_ns;
    t.switches += c.switches;
  }
  return t;
}

// Announcements from `send_dir` to a listener on `listen_dir`: messages/s.
double throughput(const std::string& send_dir, const std::string& listen_dir, int count,
                  std::size_t payload) {
  int ready[2], done[2];
  if (pipe(ready) != 0 || pipe(done) != 0) die("pipe");
  pid_t listener = fork();
  if (listener == 0) {
    auto k = kbus::Ksock::open(0, kbus::Mode::read, listen_dir);
    k.set_max_messages(1000);
    k.bind("$.Bench.Flow");
    (void)!write(ready[1], "r", 1);
    int got = 0;
    while (got < count) {
      auto m = k.wait_for_msg(std::chrono::seconds(20));
      if (!m) break;
      ++got;
    }
    const double t = std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
    char buf[64];
    int n = std::snprintf(buf, sizeof buf, "%d %.9f\n", got, t);
    (void)!write(done[1], buf, static_cast<std::size_t>(n));
    _exit(0);
  }
  char c;
  if (read(ready[0], &c, 1) != 1) die("listener did not start");
  auto k = kbus::Ksock::open(0, kbus::Mode::read_write, send_dir);
  const kbus::Message m =
      kbus::make_announcement("$.Bench.Flow", std::string(payload, 'y'), kbus::flag::kAllOrWait);
  const auto t0 = Clock::now();
  for (int i = 0; i < count; ++i) {
    auto r = k.try_send_msg(m);
    if (!r && r.error() == kbus::Errc::eagain) {
      // Pending: the daemon completes it when there is room.
      k.wait(kbus::ready::kWritable, std::chrono::seconds(20));
    } else if (!r) {
      die("send failed: " + kbus::errno_name(kbus::to_errno(r.error())));
    }
  }
  char buf[64] = {};
  std::size_t len = 0;
  while (len < sizeof buf - 1) {
    ssize_t n = read(done[0], buf + len, sizeof buf - 1 - len);
    if (n <= 0) break;
    len += static_cast<std::size_t>(n);
    if (std::memchr(buf, '\n', len)) break;
  }
  waitpid(listener, nullptr, 0);
  int got = 0;
  double t_end = 0;
  std::sscanf(buf, "%d %lf", &got, &t_end);
  if (got != count) std::fprintf(stderr, "warning: the listener got %d of %d\n", got, count);
  const double t_start = std::chrono::duration<double>(t0.time_since_epoch()).count();
  for (int fd : {ready[0], ready[1], done[0], done[1]}) close(fd);
  return got / (t_end - t_start);
}

// A CA and a certificate for each limpet, made with the openssl command in
// `dir` (as docs/limpets.md shows). Returns false if openssl is missing.
bool make_certificates(const std::string& dir) {
  const std::string q = "'" + dir + "'";
  std::string cmd =
      "cd " + q + " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      "-keyout ca.key -out ca.pem -days 2 -subj '/CN=bench CA' && "
      "for n in alpha beta; do "
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $n.key -out $n.csr "
      "-subj /CN=$n && printf 'subjectAltName=DNS:%s\\nextendedKeyUsage=serverAuth,clientAuth\\n' $n "
      "> $n.ext && openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      "-extfile $n.ext -out $n.pem || exit 1; done >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

void stop(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 5000, announcements = 20000;
  std::size_t payload = 64;
  std::string links = "unix,tcp,tls";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--iterations" && i + 1 < argc) iterations = std::atoi(argv[++i]);
    else if (a == "--announcements" && i + 1 < argc) announcements = std::atoi(argv[++i]);
    else if (a == "--payload" && i + 1 < argc) payload = std::strtoul(argv[++i], nullptr, 10);
    else if (a == "--links" && i + 1 < argc) links = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: kbus_bench_limpet [--iterations N] [--announcements N] [--payload BYTES] "
                   "[--links unix,tcp,tls]\n");
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  enum class Link { kNone, kUnix, kTcp, kTls };
  std::vector<Link> kinds = {Link::kNone};  // the single bus first
  for (std::size_t at = 0; at <= links.size();) {
    std::size_t comma = links.find(',', at);
    if (comma == std::string::npos) comma = links.size();
    const std::string k = links.substr(at, comma - at);
    if (k == "unix") kinds.push_back(Link::kUnix);
    else if (k == "tcp") kinds.push_back(Link::kTcp);
    else if (k == "tls") kinds.push_back(Link::kTls);
    else die("--links: '" + k + "' is not unix, tcp or tls");
    at = comma + 1;
  }

  // Every path is set up at once, each on its own daemons (a limpet pair
  // joins bus A of one daemon to bus B of another), and the round trips are
  // measured interleaved - blocks of kBlock on each path in turn - so that
  // whatever else the machine does weighs on every path alike and the
  // ratios mean something even on a busy machine.
  struct Path {
    std::string name;
    std::string da, db;  // db == da for the single bus
    pid_t ka = -1, kb = -1, server = -1, client = -1, echo = -1;
    std::unique_ptr<kbus::Ksock> requester;
    std::vector<double> ns;
    ProcCost daemon_cost, limpet_cost;  // summed over the measured blocks
    double tp = 0;
  };
  std::vector<Path> paths;
  const std::string certs = make_dir();
  const bool have_tls = make_certificates(certs);
  if (!have_tls) std::fprintf(stderr, "warning: cannot make certificates with openssl: no TLS row\n");
  for (Link kind : kinds) {
    if (kind == Link::kTls && !have_tls) continue;
    Path p;
    p.da = make_dir();
    p.ka = start_kbusd(p.da);
    if (kind == Link::kNone) {
      p.name = "single bus";
      p.db = p.da;
      p.kb = -1;
    } else {
      p.name = kind == Link::kUnix  ? "limpet pair, Unix socket"
               : kind == Link::kTcp ? "limpet pair, TCP 127.0.0.1"
                                    : "limpet pair, TLS 1.3 (TCP)";
      p.db = make_dir();
      p.kb = start_kbusd(p.db);
      int port = 0;
      const std::string path = p.da + "/limpet.sock";
      const bool tcp = kind != Link::kUnix;
      std::vector<std::string> sargs = {"-s", "-id", "2", "-d", p.da, tcp ? "127.0.0.1:0" : path};
      std::vector<std::string> cargs = {"-c", "-id", "1", "-d", p.db};
      if (kind == Link::kTls) {
        sargs.insert(sargs.end(), {"--tls-cert", certs + "/alpha.pem", "--tls-key", certs + "/alpha.key",
                                   "--tls-ca", certs + "/ca.pem", "--tls-peer-name", "beta"});
        cargs.insert(cargs.end(), {"--tls-cert", certs + "/beta.pem", "--tls-key", certs + "/beta.key",
                                   "--tls-ca", certs + "/ca.pem", "--tls-peer-name", "alpha"});
      }
      p.server = start_limpet(sargs, &port);
      cargs.push_back(tcp ? "127.0.0.1:" + std::to_string(port) : path);
      p.client = start_limpet(cargs, nullptr);
    }
    p.echo = start_echo(p.db);
    p.requester = std::make_unique<kbus::Ksock>(kbus::Ksock::open(0, kbus::Mode::read_write, p.da));
    wait_replier(*p.requester, "$.Bench.Echo");
    paths.push_back(std::move(p));
  }

  constexpr int kBlock = 50;
  const kbus::Message req = kbus::make_request("$.Bench.Echo", std::string(payload, 'x'));
  const int warmup = std::max(1, iterations / 10 / kBlock);
  const int blocks = std::max(1, iterations / kBlock);
  int measured_rtts = 0;
  for (int b = 0; b < warmup + blocks; ++b) {
    const bool keep = b >= warmup;
    if (keep) measured_rtts += kBlock;
    for (Path& p : paths) {
      const std::vector<pid_t> daemons = p.kb > 0 ? std::vector<pid_t>{p.ka, p.kb} : std::vector<pid_t>{p.ka};
      const std::vector<pid_t> limpets =
          p.server > 0 ? std::vector<pid_t>{p.server, p.client} : std::vector<pid_t>{};
      const ProcCost d0 = total_cost(daemons), l0 = total_cost(limpets);
      for (int i = 0; i < kBlock; ++i) {
        auto t0 = Clock::now();
        const kbus::MessageId id = p.requester->send_msg(req);
        for (;;) {
          auto m = p.requester->wait_for_msg(std::chrono::seconds(10));
          if (!m) die("no reply within 10 s on " + p.name);
          if (m->hdr.in_reply_to == id) break;
        }
        auto t1 = Clock::now();
        if (keep) p.ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
      }
      if (keep) {
        const ProcCost d1 = total_cost(daemons), l1 = total_cost(limpets);
        p.daemon_cost.cpu_ns += d1.cpu_ns - d0.cpu_ns;
        p.limpet_cost.cpu_ns += l1.cpu_ns - l0.cpu_ns;
        p.limpet_cost.switches += l1.switches - l0.switches;
      }
    }
  }
  for (Path& p : paths) {
    p.requester.reset();
    stop(p.echo);
    p.tp = throughput(p.da, p.db, announcements, payload);
  }
  for (Path& p : paths) {
    stop(p.client);
    stop(p.server);
    stop(p.ka);
    if (p.kb > 0) stop(p.kb);
    (void)!std::system(("rm -rf " + p.da + (p.db != p.da ? " " + p.db : std::string())).c_str());
  }
  (void)!std::system(("rm -rf " + certs).c_str());

  std::printf("limpets: request/reply round trip (%d iterations, interleaved in blocks of %d) and "
              "announcement throughput (%d, ALL_OR_WAIT), payload %zu B\n",
              blocks * kBlock, kBlock, announcements, payload);
  std::printf("%-28s %9s %9s %9s %7s %12s %8s %9s %9s %9s\n", "path", "p50 us", "p99 us", "mean us",
              "p50 x", "msgs/s", "tput x", "kbusd us", "limpet us", "limpet cs");
  const Rtt single = summarise(paths[0].ns);
  for (const Path& p : paths) {
    const Rtt r = summarise(p.ns);
    const double n = measured_rtts;
    char limpet_us[32] = "-", limpet_cs[32] = "-";
    if (p.server > 0) {
      std::snprintf(limpet_us, sizeof limpet_us, "%.1f", p.limpet_cost.cpu_ns / 1000.0 / n);
      std::snprintf(limpet_cs, sizeof limpet_cs, "%.1f", p.limpet_cost.switches / n);
    }
    std::printf("%-28s %9.1f %9.1f %9.1f %7.2f %12.0f %8.2f %9.1f %9s %9s\n", p.name.c_str(), r.p50_us,
                r.p99_us, r.mean_us, r.p50_us / single.p50_us, p.tp, p.tp / paths[0].tp,
                p.daemon_cost.cpu_ns / 1000.0 / n, limpet_us, limpet_cs);
  }
  std::printf("(kbusd us, limpet us: CPU time of the daemons / of both limpets per round trip; "
              "limpet cs: their context switches per round trip)\n");
  return 0;
}
