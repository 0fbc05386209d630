// bridge/fleet_fixture.hpp - a fleet on one machine for the bridge tests:
// a three-node nats-server cluster (routes, JetStream) on loopback ports of
// its own with a temporary store, three kbusd "hosts", and one bridge per
// host, each connected first to a different node.
//
// Every process's output is read by a thread into a line log, so tests wait
// on real signals - a log line, a message, a binding appearing - each wait
// bounded; nothing sleeps to wait.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kbus/ksock.hpp"
#include "support/test_daemon.hpp"

namespace kbus::test {

// A child process whose stdout+stderr are collected line by line.
class LoggedProcess {
 public:
  explicit LoggedProcess(std::vector<std::string> argv, std::string tag);
  ~LoggedProcess();
  LoggedProcess(const LoggedProcess&) = delete;
  LoggedProcess& operator=(const LoggedProcess&) = delete;

  // Waits (bounded) for a line containing `text` at index >= from; returns
  // its index, or -1 on timeout.
  long wait_for(const std::string& text, std::chrono::milliseconds timeout = std::chrono::seconds(20),
                std::size_t from = 0);
  std::size_t lines_seen();
  std::size_t count(const std::string& text);
  std::string all();
  void kill(int sig);
  int wait_exit(std::chrono::milliseconds timeout = std::chrono::seconds(20));
  pid_t pid() const { return pid_; }
  const std::string& tag() const { return tag_; }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string tag_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
  bool eof_ = false;
  int status_ = -1;
  bool reaped_ = false;
};

// A three-node NATS cluster with JetStream.
class NatsCluster {
 public:
  explicit NatsCluster(int nodes = 3);
  ~NatsCluster();
  std::string url(int i) const;
  // Every node's URL, node `first` first.
  std::string urls(int first) const;
  void kill_node(int i);  // SIGKILL
  // The node whose client URL is `url`, or -1.
  int index_of(const std::string& url) const;
  LoggedProcess& node(int i) { return *nodes_[i]; }

 private:
  // Starts n nodes on fresh ports: false (and a node's log) if one failed.
  bool start(int n, std::string& log);
  std::string dir_;
  std::vector<int> client_ports_, route_ports_;
  std::vector<std::unique_ptr<LoggedProcess>> nodes_;
};

std::string bridge_path();
// A loopback TCP port that was free a moment ago.
int free_port();

// One kbusd host with its bridge.
struct Host {
  std::unique_ptr<TestDaemon> daemon;
  std::unique_ptr<LoggedProcess> bridge;
  std::uint32_t id = 0;
  std::vector<std::string> bridge_args;
  // The URL the bridge says it is connected to now (its latest
  // "connected to" / "reconnected to" line).
  std::string connected_url();
  // Starts (or restarts) the bridge and waits for its "ready" line.
  void start_bridge();
};

class Fleet {
 public:
  // `extra` is added to every bridge's arguments.
  explicit Fleet(std::vector<std::string> extra = {}, int hosts = 3);
  NatsCluster nats;
  std::vector<Host> hosts;
  Ksock open(int host) { return hosts[host].daemon->open(0); }
};

// Polls `cond` until it holds or `timeout` passes (every 5 ms).
bool eventually(const std::function<bool()>& cond,
                std::chrono::milliseconds timeout = std::chrono::seconds(20));

// The next message on `k` within `timeout`, nullopt if none.
std::optional<Message> next_msg(Ksock& k, std::chrono::milliseconds timeout = std::chrono::seconds(20));

// A Request named `name` with `data`.
Message request(const std::string& name, const std::string& data);
Message announcement(const std::string& name, const std::string& data);

}  // namespace kbus::test
