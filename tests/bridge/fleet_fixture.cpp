// bridge/fleet_fixture.cpp - see fleet_fixture.hpp.
#include "bridge/fleet_fixture.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <stdexcept>

#include "support/child_process.hpp"

namespace kbus::test {

using Clock = std::chrono::steady_clock;

LoggedProcess::LoggedProcess(std::vector<std::string> argv, std::string tag) : tag_(std::move(tag)) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  std::fflush(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::dup2(p[1], 1);
    ::dup2(p[1], 2);
    ::close_range(3, ~0U, 0);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(p[1]);
  fd_ = p[0];
  reader_ = std::thread([this] {
    std::string buf;
    char chunk[4096];
    for (;;) {
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n <= 0) break;
      buf.append(chunk, static_cast<std::size_t>(n));
      std::size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        std::lock_guard<std::mutex> lock(mu_);
        lines_.push_back(buf.substr(0, nl));
        buf.erase(0, nl + 1);
        cv_.notify_all();
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (!buf.empty()) lines_.push_back(buf);
    eof_ = true;
    cv_.notify_all();
  });
}

LoggedProcess::~LoggedProcess() {
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
  }
  if (reader_.joinable()) reader_.join();
  ::close(fd_);
}

long LoggedProcess::wait_for(const std::string& text, std::chrono::milliseconds timeout,
                             std::size_t from) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto deadline = Clock::now() + timeout;
  std::size_t i = from;
  for (;;) {
    for (; i < lines_.size(); ++i) {
      if (lines_[i].find(text) != std::string::npos) return static_cast<long>(i);
    }
    if (eof_) return -1;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      for (; i < lines_.size(); ++i) {
        if (lines_[i].find(text) != std::string::npos) return static_cast<long>(i);
      }
      return -1;
    }
  }
}

std::size_t LoggedProcess::lines_seen() {
  std::lock_guard<std::mutex> lock(mu_);
  return lines_.size();
}

std::size_t LoggedProcess::count(const std::string& text) {
  std::lock_guard<std::mutex> lock(mu_);
  std::size_t n = 0;
  for (const auto& l : lines_) n += l.find(text) != std::string::npos;
  return n;
}

std::string LoggedProcess::all() {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& l : lines_) out += tag_ + "| " + l + "\n";
  return out;
}

void LoggedProcess::kill(int sig) {
  if (!reaped_) ::kill(pid_, sig);
}

int LoggedProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (reaped_) return status_;
  int rc = wait_for_exit(pid_, timeout);
  if (rc != -1) {
    reaped_ = true;
    status_ = rc;
  }
  return rc;
}

// A port nobody is listening on, below the kernel's ephemeral range: the
// ports of outgoing connections (the bridges' own, other tests') come from
// that range, so a port picked there could be taken before nats-server binds
// it. Randomised, so concurrent tests rarely pick the same; the cluster is
// started again with fresh ports if one is taken all the same.
int free_port() {
  int low = 32768;
  if (std::FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    int lo = 0, hi = 0;
    if (std::fscanf(f, "%d %d", &lo, &hi) == 2 && lo > 12000) low = lo;
    std::fclose(f);
  }
  static std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(10000, low - 1);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = pick(rng);
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) throw std::runtime_error("socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(s);
    if (ok) return port;
  }
  throw std::runtime_error("no free port below the ephemeral range");
}

NatsCluster::NatsCluster(int n) {
  char tmpl[] = "/tmp/kbus-nats-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  std::string log;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (start(n, log)) return;
    // A port was taken between picking and binding: again, with new ports.
    if (log.find("address already in use") == std::string::npos) break;
  }
  std::string cmd = "rm -rf '" + dir_ + "'";
  if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "cannot remove %s\n", dir_.c_str());
  throw std::runtime_error("nats-server did not start:\n" + log);
}

bool NatsCluster::start(int n, std::string& log) {
  nodes_.clear();
  client_ports_.clear();
  route_ports_.clear();
  for (int i = 0; i < n; ++i) {
    client_ports_.push_back(free_port());
    route_ports_.push_back(free_port());
  }
  for (int i = 0; i < n; ++i) {
    const std::string conf = dir_ + "/n" + std::to_string(i) + ".conf";
    std::ofstream f(conf);
    f << "server_name: n" << i << "\n"
      << "listen: 127.0.0.1:" << client_ports_[i] << "\n"
      << "jetstream { store_dir: \"" << dir_ << "/store" << i
      << "\", max_memory_store: 64MB, max_file_store: 256MB }\n"
      << "cluster {\n  name: kbustest\n  listen: 127.0.0.1:" << route_ports_[i] << "\n  routes: [\n";
    for (int j = 0; j < n; ++j) {
      if (j != i) f << "    nats-route://127.0.0.1:" << route_ports_[j] << "\n";
    }
    f << "  ]\n}\n";
    f.close();
    nodes_.push_back(std::make_unique<LoggedProcess>(
        std::vector<std::string>{NATS_SERVER_PATH, "-c", conf}, "nats" + std::to_string(i)));
  }
  for (auto& node : nodes_) {
    if (node->wait_for("Server is ready") < 0) {
      log = node->all();
      nodes_.clear();
      return false;
    }
  }
  return true;
}

NatsCluster::~NatsCluster() {
  nodes_.clear();
  std::string cmd = "rm -rf '" + dir_ + "'";
  if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "cannot remove %s\n", dir_.c_str());
}

std::string NatsCluster::url(int i) const {
  return "nats://127.0.0.1:" + std::to_string(client_ports_[i]);
}

std::string NatsCluster::urls(int first) const {
  std::string out = url(first);
  for (int i = 0; i < static_cast<int>(client_ports_.size()); ++i) {
    if (i != first) out += "," + url(i);
  }
  return out;
}

void NatsCluster::kill_node(int i) {
  nodes_[i]->kill(SIGKILL);
  nodes_[i]->wait_exit();
}

int NatsCluster::index_of(const std::string& u) const {
  for (int i = 0; i < static_cast<int>(client_ports_.size()); ++i) {
    if (url(i) == u) return i;
  }
  return -1;
}

std::string bridge_path() { return KBUS_BRIDGE_PATH; }

std::string Host::connected_url() {
  std::string out;
  std::size_t from = 0;
  for (;;) {
    long i = bridge->wait_for("connected to nats://", std::chrono::milliseconds(0), from);
    if (i < 0) return out;
    std::string all = bridge->all();
    // The line itself: the all() text, line i.
    std::size_t pos = 0;
    for (long k = 0; k < i; ++k) pos = all.find('\n', pos) + 1;
    std::string line = all.substr(pos, all.find('\n', pos) - pos);
    out = line.substr(line.find("nats://"));
    from = static_cast<std::size_t>(i) + 1;
  }
}

void Host::start_bridge() {
  bridge.reset();
  std::vector<std::string> argv = bridge_args;
  bridge = std::make_unique<LoggedProcess>(argv, "bridge" + std::to_string(id));
  if (bridge->wait_for("ready:", std::chrono::seconds(60)) < 0) {
    throw std::runtime_error("bridge did not start:\n" + bridge->all());
  }
}

Fleet::Fleet(std::vector<std::string> extra, int n) : nats(3) {
  hosts.resize(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    Host& h = hosts[static_cast<std::size_t>(i)];
    h.daemon = std::make_unique<TestDaemon>(1);
    h.id = static_cast<std::uint32_t>(i + 1);
    // Host 1 runs `kbus bridge`, the others kbus-bridge: the same code.
    if (i == 1) {
      h.bridge_args = {kbus_cli_path(), "bridge"};
    } else {
      h.bridge_args = {bridge_path()};
    }
    std::vector<std::string> args = {"-d", h.daemon->dir(), "--id", std::to_string(h.id),
                                     "--lease-ms", "3000", "--claims-poll-ms", "200",
                                     "--bindings-poll-ms", "100", "--probe-ms", "500",
                                     "--request-timeout-ms", "8000", "--kv-replicas", "3",
                                     "--kv-timeout-ms", "2000"};
    h.bridge_args.insert(h.bridge_args.end(), args.begin(), args.end());
    h.bridge_args.insert(h.bridge_args.end(), extra.begin(), extra.end());
    h.bridge_args.push_back(nats.urls(i % 3));
  }
  for (auto& h : hosts) h.start_bridge();
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (cond()) return true;
    ::usleep(5000);
  }
  return cond();
}

std::optional<Message> next_msg(Ksock& k, std::chrono::milliseconds timeout) {
  return k.wait_for_msg(timeout);
}

Message request(const std::string& name, const std::string& data) { return make_request(name, data); }
Message announcement(const std::string& name, const std::string& data) {
  return make_announcement(name, data);
}

}  // namespace kbus::test
