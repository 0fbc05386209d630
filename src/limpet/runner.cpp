// limpet/runner.cpp - see runner.hpp.
//
// One thread, one poll() loop over: the stop pipe (SIGINT/SIGTERM), the
// Ksock's poll fd (readable iff its queue is non-empty; writable iff no
// ALL_OR_WAIT send is pending), the link socket, and for a server the
// listening socket and at most one candidate connection still in its HELO
// exchange. Work per turn is bounded (a batch of messages each way), and
// each side is read only while the other can take more (a bounded output
// buffer towards the peer; no reading from the peer while a send to the
// bus is pending), so the flow control of the bus and of the socket carries
// through the limpet.
//
// Server: keeps listening. A new connection is a candidate until its TLS
// handshake (if any) and HELO are done, at most kHandshakeTimeout; only
// then does the server send its own HELO and make it the link - if it has
// none. While linked, every other connection is refused and logged, also
// one that names the current peer's network id (a takeover attempt, or the
// peer back after a cut this end has not noticed): the link is never
// replaced. For the latter, the old link's TCP socket is asked to probe
// its peer at once (probe_liveness): a peer host that forgot the
// connection answers with a reset and the link drops; a cut link ends at
// TCP_USER_TIMEOUT (15 s). The returning peer's next attempt then gets in.
// Client: reconnects after any loss with exponential backoff (100 ms
// doubling to --reconnect-max-ms).
#include "limpet/runner.hpp"
#include "util/args.hpp"
#include "util/signals.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "limpet/ksock_bus.hpp"
#include "limpet/limpet.hpp"
#include "limpet/link.hpp"

namespace kbus::limpet {

namespace {

using Clock = std::chrono::steady_clock;

// ---- signals: util::SignalPipe (SIGINT/SIGTERM as a readable fd; SIGPIPE
// ignored while the limpet runs) ----

// The PeerPort the Limpet talks to: the current link, if any.
class PeerRelay final : public PeerPort {
 public:
  Link* link = nullptr;
  void send_to_peer(const Message& m) override {
    if (link != nullptr) link->send_to_peer(m);
  }
};

void print_out(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

void print_err(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

// Per-turn budgets (STYLE.md 8).
constexpr std::uint32_t kBusBatch = 64;             // messages per READBATCH
constexpr std::uint32_t kBusBatchBytes = 256u << 10;  // bytes per READBATCH
constexpr int kBusBatches = 4;                      // READBATCHes per turn
constexpr int kPeerBatch = 256;
constexpr std::size_t kMaxPeerOutput = 4u << 20;  // stop reading the bus beyond this
// Server: connections still in their TLS/HELO handshake.
constexpr std::size_t kMaxCandidates = 4;
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);

}  // namespace

std::string usage(const std::string& program, const Style& style) {
  return "Usage: " + program +
         " (-s | -c) [options] (<host>:<port> | <path>)\n"
         "\n"
         "A limpet joins one KBUS bus to another limpet's bus over a socket\n"
         "(KBUS-SPEC.md section 10), speaking the original limpet wire protocol.\n"
         "\n"
         "  <host>:<port>      TCP/IP; the server listens on exactly that address\n"
         "                     (0.0.0.0 or [::] for every interface)\n"
         "  <path>             a Unix domain socket\n"
         "  -s, -server        be the socket server\n"
         "  -c, -client        be the socket client (reconnects after a loss)\n"
         "  -id <n>            network id, > 0, unique among connected limpets\n"
         "                     (default 1 for a client, 2 for a server)\n"
         "  -k, -kbus <n>      the bus (KBUS device) number, default 0 (also -b, --bus)\n"
         "  -m, -message <name>  the messages to proxy, default '$.*'\n"
         "  -v, -verbose <level> 0 quiet, 1 progress (default), 2 every message\n"
         "  -t <name>          stop on reading a message of that name from the bus\n"
         "  -d, --dir <dir>    the bus socket directory (default $KBUS_DIR, ...)\n"
         "  --max-messages <n> the limpet Ksock's queue limit, default 1000\n"
         "  --reconnect-max-ms <ms>  client: longest wait between attempts, default 5000\n"
         "\n"
         "TLS 1.3 with mutual authentication (both ends; without these the link is\n"
         "unauthenticated and unencrypted):\n"
         "  --tls-cert <file>  this limpet's certificate (PEM, may include the chain)\n"
         "  --tls-key <file>   its private key (PEM)\n"
         "  --tls-ca <file>    the CA certificate(s) the peer's certificate must chain to\n"
         "  --tls-peer-name <name>  the peer's certificate must be for this DNS name\n"
         "                     (subjectAltName, or CN if it has none)\n"
         "  --tls-peer-fingerprint <sha256>  the peer's certificate must have this\n"
         "                     SHA-256 fingerprint (openssl x509 -noout -fingerprint -sha256)\n"
         "  -h, -help          this text\n"
         "\n"
         "Arguments may come in any order; later ones win. Exit status: 0 stopped\n"
         "(SIGINT/SIGTERM or -t), " +
         std::to_string(style.usage) + " bad usage, " + std::to_string(style.failure) +
         " the bus or socket failed,\n" + std::to_string(style.misconfig) +
         " misconfiguration (same network id at both ends or twice on a bus,\n"
         "both ends on one bus).\n";
}

ParsedArgs parse_args(const std::vector<std::string>& args) {
  ParsedArgs p;
  Options& o = p.options;
  if (args.empty()) {
    p.outcome = ParsedArgs::Outcome::kHelp;
    return p;
  }
  auto error = [&](std::string text) {
    p.outcome = ParsedArgs::Outcome::kError;
    p.error = std::move(text);
    return p;
  };
  util::ArgReader r(args);
  while (const std::string* arg = r.next()) {
    const std::string& a = *arg;
    util::ArgReader::Number n;
    constexpr auto kMissing = util::ArgReader::Number::Status::kMissing;
    if (a == "-h" || a == "-help" || a == "--help") {
      p.outcome = ParsedArgs::Outcome::kHelp;
      return p;
    } else if (a == "-s" || a == "-server" || a == "--server") {
      o.role = Options::Role::kServer;
    } else if (a == "-c" || a == "-client" || a == "--client") {
      o.role = Options::Role::kClient;
    } else if (a == "-id" || a == "--id" || a == "--network-id") {
      n = r.number(1, 0xFFFFFFFFLL);
      if (n.status == kMissing) return error("switch " + a + " needs a network id");
      if (!n.ok()) return error("network id '" + n.text + "' must be a number greater than 0");
      o.network_id = static_cast<std::uint32_t>(n.value);
    } else if (a == "-k" || a == "-kbus" || a == "--kbus" || a == "-b" || a == "--bus") {
      n = r.number(0, 255);
      if (n.status == kMissing) return error("switch " + a + " needs a bus number");
      if (!n.ok()) return error("bus number '" + n.text + "' must be 0..255");
      o.bus = static_cast<int>(n.value);
    } else if (a == "-m" || a == "-message" || a == "--message") {
      if (!r.value(o.message_name)) return error("switch " + a + " needs a message name");
    } else if (a == "-v" || a == "-verbose" || a == "--verbose") {
      n = r.number(0, 2);
      if (n.status == kMissing) return error("switch " + a + " needs a level (0, 1 or 2)");
      if (!n.ok()) return error("verbosity '" + n.text + "' must be 0, 1 or 2");
      o.verbosity = static_cast<int>(n.value);
    } else if (a == "-t" || a == "--terminate") {
      std::string t;
      if (!r.value(t)) return error("switch " + a + " needs a message name");
      o.termination = t;
    } else if (a == "-d" || a == "--dir") {
      if (!r.value(o.dir)) return error("switch " + a + " needs a directory");
    } else if (a == "--max-messages") {
      n = r.number(1, 0xFFFFFFFFLL);
      if (!n.ok()) return error("--max-messages needs a number greater than 0");
      o.max_messages = static_cast<std::uint32_t>(n.value);
    } else if (a == "--reconnect-max-ms") {
      n = r.number(10, 3600000);
      if (!n.ok()) return error("--reconnect-max-ms needs a number of milliseconds (10..3600000)");
      o.reconnect_max_ms = static_cast<int>(n.value);
    } else if (a == "--tls-cert" || a == "--tls-key" || a == "--tls-ca" || a == "--tls-peer-name") {
      std::string v;
      if (!r.value(v) || v.empty()) {
        return error("switch " + a + (a == "--tls-peer-name" ? " needs a name" : " needs a file"));
      }
      (a == "--tls-cert" ? o.tls.cert : a == "--tls-key" ? o.tls.key : a == "--tls-ca" ? o.tls.ca
                                                                         : o.tls.peer_name) = v;
    } else if (a == "--tls-peer-fingerprint") {
      std::string v;
      if (!r.value(v)) return error("switch " + a + " needs a SHA-256 fingerprint");
      o.tls.peer_fingerprint = parse_fingerprint(v);
      if (!o.tls.peer_fingerprint) {
        return error("--tls-peer-fingerprint '" + v +
                     "' is not a SHA-256 fingerprint (64 hex digits, colons allowed)");
      }
    } else if (!a.empty() && a[0] == '-') {
      return error("unrecognised switch '" + a + "'");
    } else {
      o.address = a;
    }
  }
  if (o.role == Options::Role::kNone) return error("one of -s (server) or -c (client) is required");
  if (o.address.empty()) return error("an address (<host>:<port> or <path>) is required");
  if (!parse_address(o.address)) return error("bad address '" + o.address + "'");
  if (o.message_name.size() < 3) return error("message name '" + o.message_name + "' is too short");
  if ((!o.tls.peer_name.empty() || o.tls.peer_fingerprint) && !o.tls.enabled()) {
    return error("--tls-peer-name and --tls-peer-fingerprint need TLS: give --tls-cert, --tls-key "
                 "and --tls-ca too");
  }
  if (o.tls.enabled() && (o.tls.cert.empty() || o.tls.key.empty() || o.tls.ca.empty())) {
    std::string missing;
    if (o.tls.cert.empty()) missing += " --tls-cert";
    if (o.tls.key.empty()) missing += " --tls-key";
    if (o.tls.ca.empty()) missing += " --tls-ca";
    return error("TLS needs all three of --tls-cert, --tls-key and --tls-ca (missing:" + missing + ")");
  }
  return p;
}

namespace {

// One limpet process's state and its event loop, each job in its own
// member: the client's connecting, the server's accepting and its
// candidates, the link's I/O, and the bus's.
class Runner {
 public:
  Runner(const Options& o, const Address& addr, util::SignalPipe& stop, std::unique_ptr<TlsContext> tls)
      : o_(o),
        addr_(addr),
        stop_(stop),
        tls_(std::move(tls)),
        own_id_(o.effective_network_id()),
        server_(o.role == Options::Role::kServer),
        tag_("limpet " + std::to_string(own_id_) + ": "),
        bus_(o.bus, o.dir),
        limpet_(config(o), bus_, relay_, [this](LogLevel level, const std::string& text) { log(level, text); }),
        port_(addr.port) {}
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;
  ~Runner() {
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (server_ && !addr_.tcp && listen_fd_ >= 0) ::unlink(addr_.path.c_str());
  }

  // Starts the limpet and, for a server, listens; then runs turns until a
  // stop, the termination message or a fatal error. Returns the exit status.
  int run() {
    if (auto f = limpet_.start()) return fault_exit(*f);
    if (auto code = listen()) return *code;
    announce();
    for (;;) {
      if (auto code = turn()) return *code;
    }
  }

 private:
  // Server: accepted connections in their TLS/HELO handshake, oldest first.
  struct Candidate {
    std::unique_ptr<Link> link;
    Clock::time_point deadline;
    std::string from;
    short revents = 0;  // of the last poll (POLLIN for one accepted since)
  };
  // What one turn polls, and where each descriptor is in `fds`.
  struct PollSet {
    std::vector<pollfd> fds;
    std::size_t i_bus = 0, i_link = 0, i_listen = 0, i_cand = 0;
    Link* polled_link = nullptr;  // the link as it was when polled
    bool link_wants_read = false;
    int timeout = -1;
  };

  static LimpetConfig config(const Options& o) {
    LimpetConfig cfg;
    cfg.network_id = o.effective_network_id();
    cfg.message_name = o.message_name;
    cfg.termination = o.termination;
    cfg.max_messages = o.max_messages;
    cfg.trace = o.verbosity >= static_cast<int>(LogLevel::kTrace);
    return cfg;
  }

  void log(LogLevel level, const std::string& text) const {
    if (level == LogLevel::kError) {
      print_err(tag_ + text);
    } else if (static_cast<int>(level) <= o_.verbosity) {
      print_out(tag_ + text);
    }
  }
  int fault_exit(const Fault& f) const {
    print_err(tag_ + (f.kind == Fault::Kind::kMisconfig ? "misconfiguration: " : "error: ") + f.what);
    return f.kind == Fault::Kind::kMisconfig ? kExitMisconfig : kExitFailure;
  }
  int stopping() const {
    log(LogLevel::kInfo, "stopping");
    return kExitOk;
  }

  std::optional<int> listen() {
    if (!server_) return std::nullopt;
    std::string err;
    listen_fd_ = listen_on(addr_, port_, err);
    if (listen_fd_ < 0) {
      print_err(tag_ + "error: " + err);
      return kExitFailure;
    }
    return std::nullopt;
  }

  // The banner, and who may become the link.
  void announce() const {
    if (o_.verbosity >= 1) {
      std::string via = addr_.tcp ? "TCP/IP, address '" + addr_.host + "' port " + std::to_string(port_)
                                  : "Unix domain socket '" + addr_.path + "'";
      print_out(std::string("kbus Limpet: ") + (server_ ? "Server" : "Client") + " via " + via +
                " for KBUS " + std::to_string(o_.bus) + ", using network id " +
                std::to_string(own_id_) + ", listening for '" + o_.message_name + "'");
    }
    if (tls_) {
      std::string who = "a certificate signed by a CA in '" + o_.tls.ca + "'";
      if (!o_.tls.peer_name.empty()) who += ", for the name '" + o_.tls.peer_name + "'";
      if (o_.tls.peer_fingerprint) {
        who += ", with SHA-256 fingerprint " + format_fingerprint(o_.tls.peer_fingerprint->data());
      }
      log(LogLevel::kInfo, "TLS 1.3 with mutual authentication; our certificate '" + o_.tls.cert +
                               "' has SHA-256 fingerprint " + tls_->own_fingerprint() +
                               "; the peer must present " + who);
      return;
    }
    // Said once, whatever the verbosity: what plain mode exposes.
    print_err(tag_ + "warning: the link is unauthenticated and unencrypted (no --tls-cert/--tls-key/"
                     "--tls-ca): " +
              (!addr_.tcp ? std::string("it is protected only by the permissions of '" + addr_.path + "'")
               : server_  ? "anyone who can reach " + addr_.host + ":" + std::to_string(port_) +
                               " can become the link while none is up, and anyone on the path can read and "
                               "change the traffic"
                          : "anyone on the path to " + addr_.to_string() +
                               " can read and change the traffic, or pose as the server"));
  }

  // One turn of the loop: connect if due, flush, poll, then each side's work.
  std::optional<int> turn() {
    // (A stop shows in the poll below: fds[0].)
    if (auto code = connect_if_due()) return code;
    // What this turn queued for the peer goes out now, the last thing
    // before we sleep (see Link::send_to_peer).
    // A failure shows in poll() as POLLERR/POLLHUP, and the link section
    // then hands over what had arrived before dropping the link.
    if (link_ && link_->transport_ready() && link_->wants_write()) (void)link_->on_writable();

    PollSet ps = poll_set();
    int rc = ::poll(ps.fds.data(), static_cast<nfds_t>(ps.fds.size()), ps.timeout);
    if (rc < 0) {
      if (errno == EINTR) return std::nullopt;
      print_err(tag_ + "error: poll: " + std::strerror(errno));
      return kExitFailure;
    }
    if (ps.fds[0].revents & POLLIN) return stopping();
    for (std::size_t ci = 0; ci < candidates_.size(); ++ci) candidates_[ci].revents = ps.fds[ps.i_cand + ci].revents;
    if (limpet_.has_retries()) limpet_.retry();

    if (auto code = bus_io(ps.fds[ps.i_bus].revents)) return code;
    if (listen_fd_ >= 0 && (ps.fds[ps.i_listen].revents & POLLIN)) accept_candidate();
    if (auto code = advance_candidates()) return code;
    if (link_ && link_.get() == ps.polled_link) {
      if (auto code = link_io(ps.fds[ps.i_link].revents, ps.link_wants_read)) return code;
    }
    return peer_to_bus();
  }

  // Client: (re)connect when it is time.
  std::optional<int> connect_if_due() {
    if (server_ || link_ || Clock::now() < next_attempt_) return std::nullopt;
    std::string err;
    int fd = connect_to(addr_, 5000, stop_.fd(), err);
    if (fd >= 0) {
      link_ = std::make_unique<Link>(fd, own_id_, /*helo_first=*/true, tls_.get());
      log(LogLevel::kInfo, "connected to " + addr_.to_string());
      if (link_->on_writable() == Link::Io::kError) return drop_link(link_->error());
      return std::nullopt;
    }
    if (stop_.stopped()) return stopping();
    log(reported_connect_failure_ ? LogLevel::kTrace : LogLevel::kInfo,
        err + "; retrying (at most every " + std::to_string(o_.reconnect_max_ms) + " ms)");
    reported_connect_failure_ = true;
    next_attempt_ = Clock::now() + std::chrono::milliseconds(backoff_ms_);
    backoff_ms_ = std::min(backoff_ms_ * 2, o_.reconnect_max_ms);
    return std::nullopt;
  }

  // The descriptors of this turn and how long to wait for them.
  PollSet poll_set() {
    PollSet ps;
    ps.fds.reserve(5 + candidates_.size());
    ps.fds.push_back({stop_.fd(), POLLIN, 0});
    ps.i_bus = ps.fds.size();
    short bus_events = 0;
    if (!link_ || link_->out_pending() < kMaxPeerOutput) bus_events |= POLLIN;
    if (limpet_.bus_blocked()) bus_events |= POLLOUT;
    ps.fds.push_back({bus_.fileno(), bus_events, 0});
    ps.polled_link = link_.get();
    if (link_) {
      short ev = 0;
      ps.link_wants_read = !limpet_.bus_blocked() && link_->in_pending() < kMaxPeerOutput;
      if (ps.link_wants_read) ev |= POLLIN;
      if (link_->wants_write()) ev |= POLLOUT;
      ps.i_link = ps.fds.size();
      ps.fds.push_back({link_->fd(), ev, 0});
    }
    if (listen_fd_ >= 0) {
      ps.i_listen = ps.fds.size();
      ps.fds.push_back({listen_fd_, POLLIN, 0});
    }
    ps.i_cand = ps.fds.size();
    for (const Candidate& c : candidates_) {
      ps.fds.push_back({c.link->fd(), static_cast<short>(POLLIN | (c.link->wants_write() ? POLLOUT : 0)), 0});
    }
    auto at_most = [&](Clock::time_point when) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(when - Clock::now()).count();
      const int ms = static_cast<int>(std::max<long long>(0, left));
      ps.timeout = ps.timeout < 0 ? ms : std::min(ps.timeout, ms);
    };
    if (!server_ && !link_) at_most(next_attempt_);
    for (const Candidate& c : candidates_) at_most(c.deadline);
    if (limpet_.has_retries()) ps.timeout = ps.timeout < 0 ? 50 : std::min(ps.timeout, 50);
    // Messages already received but not yet handled (a batch limit was hit),
    // or bytes a budgeted read left behind (TLS: maybe inside the session,
    // where poll() cannot see them).
    if (peer_batch_full_ && link_ && limpet_.linked() && !limpet_.bus_blocked()) ps.timeout = 0;
    if (link_ && link_->read_more() && ps.link_wants_read) ps.timeout = 0;
    return ps;
  }

  // The bus: a pending send has completed; messages to read.
  std::optional<int> bus_io(short brev) {
    if ((brev & POLLOUT) && limpet_.bus_blocked()) limpet_.bus_writable();
    if (!(brev & (POLLIN | POLLHUP | POLLERR))) return std::nullopt;
    // READBATCH: everything queued (up to a batch) in one round trip to
    // the daemon - typically our own listener copy of what we just sent
    // and the next message, which NEXTREAD took two round trips for.
    for (int k = 0; k < kBusBatches; ++k) {
      if (link_ && link_->out_pending() >= kMaxPeerOutput) break;
      // The poll fd shows the queue after every operation: no round trip
      // to the daemon just to find the queue empty.
      if (k > 0) {
        pollfd q{bus_.fileno(), POLLIN, 0};
        if (::poll(&q, 1, 0) != 1 || !(q.revents & POLLIN)) break;
      }
      auto ms = bus_.read_batch(kBusBatch, kBusBatchBytes);
      if (!ms) {
        print_err(tag_ + "error: reading from bus " + std::to_string(o_.bus) + ": " +
                  errno_name(to_errno(ms.error())) + " (has kbusd gone?)");
        return kExitFailure;
      }
      for (const Message& m : *ms) {
        if (limpet_.from_bus(m) == Limpet::Action::kTerminate) {
          // What came before the termination message still goes out.
          if (link_ && link_->transport_ready()) (void)link_->on_writable();
          return kExitOk;
        }
      }
      if (ms->size() < kBusBatch) break;
    }
    return std::nullopt;
  }

  // Server: a new connection becomes a candidate.
  void accept_candidate() {
    std::string from;
    int fd = accept_from(listen_fd_, from);
    if (fd < 0) return;
    if (candidates_.size() >= kMaxCandidates) {
      log(LogLevel::kError, "dropping the connection from " + candidates_.front().from +
                                ": still in its handshake, and " + std::to_string(kMaxCandidates) +
                                " newer connections wait");
      candidates_.erase(candidates_.begin());
    }
    // Not polled yet: a read is tried at once (harmless if nothing came).
    candidates_.push_back({std::make_unique<Link>(fd, own_id_, /*helo_first=*/false, tls_.get()),
                           Clock::now() + kHandshakeTimeout, from, POLLIN});
    log(LogLevel::kInfo, "accepted a connection from " + from + (link_ ? "; checking who it is" : ""));
    if (candidates_.back().link->on_writable() == Link::Io::kError) {
      log(LogLevel::kError, "refusing the connection from " + from + ": " + candidates_.back().link->error());
      candidates_.pop_back();
    }
  }

  // Why candidate `c` is refused this turn, if it is.
  std::optional<std::string> refusal(Candidate& c) {
    Link::Io io = Link::Io::kOk;
    const short rev = c.revents;
    if (rev & POLLOUT) io = c.link->on_writable();
    if (io == Link::Io::kOk && (rev & (POLLIN | POLLHUP | POLLERR))) io = c.link->on_readable();
    if (io != Link::Io::kOk) return c.link->error();
    if (!c.link->handshake_done() && Clock::now() >= c.deadline) {
      return std::string(c.link->transport_ready() ? "no HELO" : "no TLS handshake") + " within " +
             std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kHandshakeTimeout).count()) + " s";
    }
    if (!c.link->handshake_done() || !link_) return std::nullopt;
    const std::uint32_t claimed = c.link->peer_id();
    std::string why = "it claims network id " + std::to_string(claimed) +
                      (c.link->secure() ? " (certificate " + c.link->peer_certificate() + ")" : "") +
                      ", but this limpet is linked with network id " + std::to_string(link_->peer_id()) +
                      " and a working link is never replaced";
    if (claimed == link_->peer_id()) {
      // The same peer back after a cut we have not seen, or an impostor:
      // make the kernel probe the old link now. A dead one is then
      // dropped, and the peer's next attempt gets in.
      probe_liveness(link_->fd());
      why += " (if the old link is dead, the peer gets in at its next attempt, once TCP "
             "keepalive has found it dead)";
    }
    return why;
  }

  // Server: candidates through their handshake; the first through becomes
  // the link if there is none.
  std::optional<int> advance_candidates() {
    for (std::size_t ci = 0; ci < candidates_.size();) {
      Candidate& c = candidates_[ci];
      if (auto refuse = refusal(c)) {
        log(LogLevel::kError, "refusing the connection from " + c.from + ": " + *refuse);
        candidates_.erase(candidates_.begin() + static_cast<std::ptrdiff_t>(ci));
        continue;
      }
      if (!c.link->handshake_done()) {
        ++ci;
        continue;
      }
      // Accepted: our HELO now, then the link is up, and whatever came
      // with its HELO is handled in this same turn.
      link_ = std::move(c.link);
      candidates_.erase(candidates_.begin() + static_cast<std::ptrdiff_t>(ci));
      link_->send_helo();
      if (link_->on_writable() == Link::Io::kError) {
        if (auto code = drop_link(link_->error())) return code;
        continue;
      }
      if (auto code = bring_up()) return code;
    }
    return std::nullopt;
  }

  // The link: writes, reads, the HELO completing, a loss.
  std::optional<int> link_io(short lrev, bool link_wants_read) {
    std::optional<std::string> lost;
    if (lrev & POLLOUT) {
      if (link_->on_writable() == Link::Io::kError) lost = link_->error();
    }
    if (!lost && ((lrev & (POLLIN | POLLHUP | POLLERR)) || (link_->read_more() && link_wants_read))) {
      const bool had_helo = link_->handshake_done();
      Link::Io io = link_->on_readable();
      if (!had_helo && link_->handshake_done()) {
        if (auto code = bring_up()) return code;
      }
      if (io != Link::Io::kOk) lost = link_->error();
    }
    // (What is queued now is written at the end of the turn.)
    if (!lost) return std::nullopt;
    // Hand over what had arrived before the loss, then drop the link.
    if (link_->handshake_done() && limpet_.linked()) {
      for (;;) {
        if (limpet_.bus_blocked()) break;
        auto m = link_->next_message();
        if (!m || !*m) break;
        limpet_.from_peer(**m);
      }
    }
    return drop_link(*lost);
  }

  // Messages from the peer, while the bus takes them.
  std::optional<int> peer_to_bus() {
    peer_batch_full_ = false;
    if (!link_ || !link_->handshake_done() || !limpet_.linked()) return std::nullopt;
    for (int k = 0;; ++k) {
      if (limpet_.bus_blocked()) break;
      if (k == kPeerBatch) {
        peer_batch_full_ = true;
        break;
      }
      auto m = link_->next_message();
      if (!m) {
        log(LogLevel::kError, "the other limpet sent a malformed message; dropping the link");
        return drop_link("malformed message");
      }
      if (!*m) break;
      limpet_.from_peer(**m);
    }
    return std::nullopt;
  }

  // Returns an exit status if the limpet cannot go on.
  std::optional<int> drop_link(const std::string& why) {
    const bool was_up = limpet_.linked();
    if (was_up || link_->handshake_done()) {
      log(LogLevel::kInfo, "link lost: " + why);
    } else if (why != last_link_error_) {
      // Never linked: refused (TLS, HELO) or cut during the handshake.
      const bool refused = why.find("before the HELO exchange") != std::string::npos;
      log(LogLevel::kError, "cannot link with " + addr_.to_string() + ": " + why +
                                (refused ? " (a limpet server closes a connection it refuses: "
                                           "its log says why)"
                                         : ""));
    } else {
      log(LogLevel::kTrace, "cannot link with " + addr_.to_string() + " (again): " + why);
    }
    last_link_error_ = was_up ? std::string() : why;
    relay_.link = nullptr;
    link_.reset();
    if (was_up) {
      if (auto f = limpet_.link_down()) return fault_exit(*f);
    }
    if (!server_) {
      next_attempt_ = Clock::now() + std::chrono::milliseconds(backoff_ms_);
      if (!was_up) backoff_ms_ = std::min(backoff_ms_ * 2, o_.reconnect_max_ms);
    }
    return std::nullopt;
  }

  // The HELO exchange is done: the link is up, unless the limpet finds the
  // two ends misconfigured.
  std::optional<int> bring_up() {
    if (auto f = limpet_.link_up(link_->peer_id())) {
      const int code = fault_exit(*f);
      if (f->kind == Fault::Kind::kMisconfig) linger_after_misconfig();
      return code;
    }
    relay_.link = link_.get();
    backoff_ms_ = 100;
    reported_connect_failure_ = false;
    last_link_error_.clear();
    log(LogLevel::kInfo, "linked with the limpet of network id " + std::to_string(link_->peer_id()) +
                             (link_->secure() ? " (TLS 1.3, peer certificate " + link_->peer_certificate() + ")"
                                              : std::string()));
    return std::nullopt;
  }

  // Stay (marker bound, link open) until the other end has seen the
  // misconfiguration too and hung up, at most 2 s: each end then reports
  // the error, whichever checked first.
  void linger_after_misconfig() {
    (void)link_->on_writable();
    link_->shutdown_write();  // our FIN tells it we are done
    const auto until = Clock::now() + std::chrono::seconds(2);
    while (Clock::now() < until) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()).count();
      pollfd p{link_->fd(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::max<long long>(left, 0))) <= 0) continue;
      if (link_->on_readable() != Link::Io::kOk) break;
    }
  }

  const Options& o_;
  const Address addr_;
  util::SignalPipe& stop_;
  std::unique_ptr<TlsContext> tls_;
  const std::uint32_t own_id_;
  const bool server_;
  const std::string tag_;
  KsockBus bus_;
  PeerRelay relay_;
  Limpet limpet_;
  int listen_fd_ = -1;
  std::uint16_t port_;
  std::unique_ptr<Link> link_;  // the link (client: maybe still in its handshake)
  std::vector<Candidate> candidates_;
  int backoff_ms_ = 100;
  Clock::time_point next_attempt_ = Clock::now();
  bool reported_connect_failure_ = false;
  std::string last_link_error_;   // client: the same failure again is logged at trace level
  bool peer_batch_full_ = false;  // the last turn stopped at kPeerBatch messages
};

}  // namespace

int run(const Options& o) {
  util::SignalPipe stop({SIGINT, SIGTERM}, /*ignore_sigpipe=*/true);
  auto addr = parse_address(o.address);
  if (!addr) {
    print_err("limpet: bad address '" + o.address + "'");
    return kExitUsage;
  }
  // TLS first: a bad certificate file is a usage error, found before the bus.
  std::unique_ptr<TlsContext> tls;
  if (o.tls.enabled()) {
    std::string err;
    tls = TlsContext::create(o.tls, o.role == Options::Role::kServer, err);
    if (!tls) {
      print_err("limpet " + std::to_string(o.effective_network_id()) + ": error: " + err);
      return kExitUsage;
    }
  }
  Runner runner(o, *addr, stop, std::move(tls));
  return runner.run();
}

int main_with_args(const std::string& program, const std::vector<std::string>& args, const Style& style) {
  ParsedArgs p = parse_args(args);
  if (args.empty() && !style.no_arguments_is_help) {
    p.outcome = ParsedArgs::Outcome::kError;
    p.error = "give -s (server) or -c (client), and an address (<host>:<port> or <path>)";
  }
  switch (p.outcome) {
    case ParsedArgs::Outcome::kHelp:
      std::fputs(usage(program, style).c_str(), stdout);
      return kExitOk;
    case ParsedArgs::Outcome::kError:
      if (style.full_usage_on_error) {
        std::fprintf(stderr, "%s: %s\n\n%s", program.c_str(), p.error.c_str(), usage(program, style).c_str());
      } else {
        std::fprintf(stderr, "%s: %s\nRun with --help for more information.\n", program.c_str(), p.error.c_str());
      }
      return style.usage;
    case ParsedArgs::Outcome::kRun:
      break;
  }
  // The limpet reads its bus in batches (READBATCH) over the socket: a
  // shared-memory receive queue would only be mirrored by kbusd and rebuilt
  // after every batch (docs/limpets.md "Benchmark": 280 us a round trip
  // through a Unix pair with it, 240 without), so its Ksock does without
  // one (docs/protocol.md §7: negotiated; KBUS_TRANSPORT=socket).
  ::setenv("KBUS_TRANSPORT", "socket", 1);
  int rc = kExitFailure;
  try {
    rc = run(p.options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program.c_str(), e.what());
  }
  switch (rc) {
    case kExitUsage: return style.usage;
    case kExitFailure: return style.failure;
    case kExitMisconfig: return style.misconfig;
    default: return rc;
  }
}

}  // namespace kbus::limpet
