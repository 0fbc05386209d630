// limpet/limpet_fixture.cpp - see limpet_fixture.hpp.
#include "limpet/limpet_fixture.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <cstdlib>
#include <stdexcept>
#include <thread>

namespace kbus::test {

using Clock = std::chrono::steady_clock;

std::string limpet_path() { return KBUS_LIMPET_PATH; }

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (Clock::now() >= deadline) return false;
    ::poll(nullptr, 0, 2);  // a pause between checks of a condition
  }
}

LimpetProc::LimpetProc(std::vector<std::string> args, bool via_cli,
                       std::vector<std::string> prefix, bool merge_stderr) {
  std::vector<std::string> argv;
  if (merge_stderr) argv = {"/bin/sh", "-c", "exec \"$@\" 2>&1", "sh"};
  if (!prefix.empty()) {
    argv.insert(argv.end(), prefix.begin(), prefix.end());
  } else if (via_cli) {
    argv.insert(argv.end(), {kbus_cli_path(), "limpet"});
  } else {
    argv.push_back(limpet_path());
  }
  argv.insert(argv.end(), args.begin(), args.end());
  proc_ = std::make_unique<SpawnedProcess>(argv);
  banner_ = proc_->line(std::chrono::seconds(10));
  seen_ = banner_ + "\n";
  const auto at = banner_.find(" port ");
  if (at != std::string::npos) port_ = static_cast<std::uint16_t>(std::atoi(banner_.c_str() + at + 6));
}

bool LimpetProc::wait_for_line(const std::string& text, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    std::string l = proc_->line(left);
    if (l == "<timeout>" || l == "<eof>") return false;
    seen_ += l + "\n";
    if (l.find(text) != std::string::npos) return true;
  }
}

LimpetPair::LimpetPair(const TestDaemon& server_side, const TestDaemon& client_side,
                       const std::string& address, std::uint32_t server_id, std::uint32_t client_id,
                       std::vector<std::string> extra, std::vector<std::string> server_only,
                       std::vector<std::string> client_only, bool merge_stderr) {
  std::vector<std::string> sargs = {"-s", "-id", std::to_string(server_id), "-d", server_side.dir(),
                                    address};
  sargs.insert(sargs.end(), extra.begin(), extra.end());
  sargs.insert(sargs.end(), server_only.begin(), server_only.end());
  server = std::make_unique<LimpetProc>(sargs, false, std::vector<std::string>{}, merge_stderr);
  client_address = address;
  if (server->port() != 0) client_address = "127.0.0.1:" + std::to_string(server->port());
  std::vector<std::string> cargs = {"-c", "-id", std::to_string(client_id), "-d", client_side.dir(),
                                    client_address};
  cargs.insert(cargs.end(), extra.begin(), extra.end());
  cargs.insert(cargs.end(), client_only.begin(), client_only.end());
  client = std::make_unique<LimpetProc>(cargs, false, std::vector<std::string>{}, merge_stderr);
  EXPECT_TRUE(server->wait_for_line("linked with")) << server->seen() << server->err();
  EXPECT_TRUE(client->wait_for_line("linked with")) << client->seen() << client->err();
}

// ---- certificates ----

namespace {

// Made with the openssl command line only (as docs/limpets.md shows).
const char* const kMakeCerts = R"SH(
set -e
cd "$1"
q() { out=$("$@" 2>&1) || { echo "failed: $*: $out" >&2; exit 1; }; }
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
q openssl req -x509 $ec -keyout ca.key -out ca.pem -days 3 -subj "/CN=kbus test CA"
q openssl req -x509 $ec -keyout other-ca.key -out other-ca.pem -days 3 -subj "/CN=another CA"
for c in ca other-ca; do
  mkdir -p $c.db; : > $c.db/index.txt; echo 01 > $c.db/serial
  printf '[ ca ]
default_ca = d
[ d ]
database = %s
new_certs_dir = %s
serial = %s
certificate = %s
private_key = %s
default_md = sha256
policy = p
unique_subject = no
[ p ]
commonName = supplied
'     "$PWD/$c.db/index.txt" "$PWD/$c.db" "$PWD/$c.db/serial" "$PWD/$c.pem" "$PWD/$c.key" > $c.cnf
done
leaf() {  # file CN ca [startdate enddate]
  q openssl req $ec -keyout $1.key -out $1.csr -subj "/CN=$2"
  printf '[ x ]
subjectAltName = DNS:%s
extendedKeyUsage = serverAuth, clientAuth
basicConstraints = CA:FALSE
' "$2" > $1.ext
  if [ -n "$4" ]; then dates="-startdate $4 -enddate $5"; else dates="-days 2"; fi
  q openssl ca -batch -config $3.cnf $dates -extfile $1.ext -extensions x -in $1.csr -out $1.pem
}
leaf alpha alpha ca
leaf beta beta ca
leaf gamma gamma ca
leaf rogue beta other-ca
leaf expired beta ca 20200101000000Z 20200201000000Z
)SH";

}  // namespace

TestCerts::TestCerts() {
  char tmpl[] = "/tmp/kbus-limpet-certs-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  auto r = run_process({"/bin/sh", "-c", kMakeCerts, "sh", dir_}, {}, {}, std::chrono::seconds(60));
  if (r.exit_code != 0) throw std::runtime_error("making test certificates failed: " + r.err);
}

TestCerts::~TestCerts() { run_process({"/bin/rm", "-rf", dir_}); }

std::vector<std::string> TestCerts::args(const std::string& name, const std::string& ca) const {
  return {"--tls-cert", pem(name), "--tls-key", key(name), "--tls-ca", pem(ca)};
}

std::string TestCerts::fingerprint(const std::string& name) const {
  auto r = run_process({"/usr/bin/openssl", "x509", "-in", pem(name), "-noout", "-fingerprint", "-sha256"});
  const auto eq = r.out.find('=');
  std::string fp = eq == std::string::npos ? r.out : r.out.substr(eq + 1);
  while (!fp.empty() && (fp.back() == '\n' || fp.back() == '\r')) fp.pop_back();
  return fp;
}

// ---- the relay ----

namespace {

int listen_loopback(std::uint16_t& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = 0;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 8) != 0) return -1;
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  port = ntohs(sa.sin_port);
  return fd;
}

int connect_loopback(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Closes without a FIN or RST: in repair mode the kernel drops the socket
// silently (as a host that restarted has forgotten it).
bool silent_close(int fd) {
  // First let the other end acknowledge all we sent (its delayed ACK would
  // otherwise meet no socket and draw a reset), at most 2 s.
  for (int i = 0; i < 200; ++i) {
    tcp_info ti{};
    socklen_t len = sizeof ti;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 || ti.tcpi_unacked == 0) break;
    ::poll(nullptr, 0, 10);
  }
  int on = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &on, sizeof on) != 0) return false;
  ::close(fd);
  return true;
}

void reset_close(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

int relay_main(Channel& ch, std::uint16_t target) {
  std::uint16_t port = 0;
  int lfd = listen_loopback(port);
  if (lfd < 0) return 1;
  ch.say(std::to_string(port));
  std::vector<std::pair<int, int>> conns;  // (accepted, to target)
  bool refusing = false;
  int accepted = 0;
  for (;;) {
    std::vector<pollfd> p;
    p.push_back({ch.in_fd(), POLLIN, 0});
    p.push_back({lfd, POLLIN, 0});
    for (auto& c : conns) {
      p.push_back({c.first, POLLIN, 0});
      p.push_back({c.second, POLLIN, 0});
    }
    if (::poll(p.data(), p.size(), -1) < 0) continue;
    if (p[0].revents) {
      if (!ch.line_ready(std::chrono::milliseconds(0)) && (p[0].revents & POLLHUP)) return 0;
      while (ch.line_ready(std::chrono::milliseconds(0))) {
        std::string cmd = ch.hear();
        if (cmd == "cut") {
          for (auto& c : conns) {
            reset_close(c.first);
            reset_close(c.second);
          }
          conns.clear();
          refusing = true;
          ch.say("cut");
        } else if (cmd == "vanish") {
          bool ok = true;
          for (auto& c : conns) {
            if (!silent_close(c.second)) {
              ok = false;
              ::close(c.second);
            }
            reset_close(c.first);
          }
          conns.clear();
          ch.say(ok ? "vanished" : "norepair");
        } else if (cmd == "heal") {
          refusing = false;
          ch.say("healed");
        } else if (cmd == "count") {
          ch.say(std::to_string(accepted));
        } else if (cmd == "<eof>") {
          return 0;
        }
      }
      continue;  // the connection list may have changed
    }
    if (p[1].revents & POLLIN) {
      int a = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
      if (a >= 0) {
        if (refusing) {
          reset_close(a);
        } else {
          int t = connect_loopback(target);
          if (t < 0) {
            reset_close(a);
          } else {
            ++accepted;
            conns.push_back({a, t});
          }
        }
      }
    }
    std::vector<std::size_t> dead;
    const std::size_t polled = (p.size() - 2) / 2;  // connections added above were not polled
    for (std::size_t i = 0; i < polled; ++i) {
      for (int side = 0; side < 2; ++side) {
        const pollfd& q = p[2 + 2 * i + static_cast<std::size_t>(side)];
        if (!(q.revents & (POLLIN | POLLHUP | POLLERR))) continue;
        int from = side == 0 ? conns[i].first : conns[i].second;
        int to = side == 0 ? conns[i].second : conns[i].first;
        char buf[65536];
        ssize_t n = ::recv(from, buf, sizeof buf, 0);
        if (n <= 0 || !write_all(to, buf, static_cast<std::size_t>(n))) {
          dead.push_back(i);
          break;
        }
      }
    }
    for (auto it = dead.rbegin(); it != dead.rend(); ++it) {
      ::close(conns[*it].first);
      ::close(conns[*it].second);
      conns.erase(conns.begin() + static_cast<std::ptrdiff_t>(*it));
    }
  }
}

}  // namespace

TcpRelay::TcpRelay(std::uint16_t target_port) {
  actor_ = std::make_unique<Actor>([target_port](Channel& ch) { return relay_main(ch, target_port); });
  port_ = static_cast<std::uint16_t>(std::stoi(actor_->hear()));
}

void TcpRelay::cut() {
  actor_->tell("cut");
  EXPECT_EQ(actor_->hear(), "cut");
}

bool TcpRelay::vanish() {
  actor_->tell("vanish");
  return actor_->hear() == "vanished";
}

void TcpRelay::heal() {
  actor_->tell("heal");
  EXPECT_EQ(actor_->hear(), "healed");
}

int TcpRelay::accepted() {
  actor_->tell("count");
  return std::stoi(actor_->hear());
}

// ---- repliers and requesters ----

std::unique_ptr<Actor> start_replier(const std::string& dir, const std::string& name,
                                     int answer_first) {
  auto a = std::make_unique<Actor>([dir, name, answer_first](Channel& ch) {
    Ksock k = Ksock::open(0, Mode::read_write, dir);
    k.bind(name, true);
    ch.say("ready " + std::to_string(k.id()));
    int answered = 0;
    for (;;) {
      auto m = k.wait_for_msg();
      if (!m || !m->wants_us_to_reply()) continue;
      if (answered >= answer_first) {
        ch.say("holding");
        continue;
      }
      auto rep = make_reply(*m, m->data);
      if (rep.ok()) (void)k.try_send_msg(*rep);
      ++answered;
    }
    return 0;
  });
  std::string l = a->hear();
  EXPECT_EQ(l.rfind("ready", 0), 0u) << l;
  return a;
}

std::map<MessageId, std::vector<Message>> collect_answers(Ksock& k, const std::set<MessageId>& ids,
                                                          std::chrono::milliseconds timeout) {
  std::map<MessageId, std::vector<Message>> got;
  const auto deadline = Clock::now() + timeout;
  auto done = [&] {
    for (auto& id : ids) {
      if (got.find(id) == got.end()) return false;
    }
    return true;
  };
  while (!done()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    auto m = k.wait_for_msg(left);
    if (!m) continue;
    if (ids.count(m->hdr.in_reply_to)) got[m->hdr.in_reply_to].push_back(*m);
  }
  return got;
}

std::optional<Message> round_trip(Ksock& requester, const std::string& name, const std::string& data) {
  auto id = requester.try_send_msg(make_request(name, data));
  if (!id) return std::nullopt;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    auto m = requester.wait_for_msg(left);
    if (m && m->hdr.in_reply_to == *id) return m;
  }
}

bool wait_replier(Ksock& k, const std::string& name, std::optional<std::uint32_t> not_this,
                  std::chrono::milliseconds timeout) {
  return eventually(
      [&] {
        auto r = k.try_find_replier(name);
        return r.ok() && r->has_value() && (!not_this || **r != *not_this);
      },
      timeout);
}

bool wait_no_replier(Ksock& k, const std::string& name, std::chrono::milliseconds timeout) {
  return eventually(
      [&] {
        auto r = k.try_find_replier(name);
        return r.ok() && !r->has_value();
      },
      timeout);
}

}  // namespace kbus::test
