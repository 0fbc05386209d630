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
// Server: keeps listening. A new connection whose HELO names the same peer
// network id replaces the current link (the peer reconnected after a cut
// this end has not noticed yet); any other is refused while linked.
// Client: reconnects after any loss with exponential backoff (100 ms
// doubling to --reconnect-max-ms).
#include "limpet/runner.hpp"
#include "util/signals.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>

#include "limpet/ksock_bus.hpp"
#include "limpet/limpet.hpp"
#include "limpet/link.hpp"

namespace kbus::limpet {

namespace {

using Clock = std::chrono::steady_clock;

// ---- the command line ----

bool parse_number(const std::string& s, long long lo, long long hi, long long& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str() || *end != '\0' || v < lo || v > hi) return false;
  out = v;
  return true;
}

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
constexpr int kBusBatch = 256;
constexpr int kPeerBatch = 256;
constexpr std::size_t kMaxPeerOutput = 4u << 20;  // stop reading the bus beyond this

}  // namespace

std::string usage(const std::string& program) {
  return "Usage: " + program +
         " (-s | -c) [options] (<host>:<port> | <path>)\n"
         "\n"
         "A limpet joins one KBUS bus to another limpet's bus over a socket\n"
         "(KBUS-SPEC.md section 10), speaking the original limpet wire protocol.\n"
         "\n"
         "  <host>:<port>      TCP/IP; the server listens there (an address that is\n"
         "                     not this machine's means every address)\n"
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
         "  -h, -help          this text\n"
         "\n"
         "Arguments may come in any order; later ones win. Exit status: 0 stopped\n"
         "(SIGINT/SIGTERM or -t), 1 bad usage, 2 the bus or socket failed,\n"
         "3 misconfiguration (same network id at both ends or twice on a bus,\n"
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
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string& out) -> bool {
      if (i + 1 >= args.size()) return false;
      out = args[++i];
      return true;
    };
    auto number = [&](long long lo, long long hi, long long& out) -> int {
      std::string v;
      if (!value(v)) return 1;             // missing
      if (!parse_number(v, lo, hi, out)) return 2;  // bad
      return 0;
    };
    long long n = 0;
    if (a == "-h" || a == "-help" || a == "--help") {
      p.outcome = ParsedArgs::Outcome::kHelp;
      return p;
    } else if (a == "-s" || a == "-server" || a == "--server") {
      o.role = Options::Role::kServer;
    } else if (a == "-c" || a == "-client" || a == "--client") {
      o.role = Options::Role::kClient;
    } else if (a == "-id" || a == "--id" || a == "--network-id") {
      int rc = number(1, 0xFFFFFFFFLL, n);
      if (rc == 1) return error("switch " + a + " needs a network id");
      if (rc == 2) return error("network id '" + args[i] + "' must be a number greater than 0");
      o.network_id = static_cast<std::uint32_t>(n);
    } else if (a == "-k" || a == "-kbus" || a == "--kbus" || a == "-b" || a == "--bus") {
      int rc = number(0, 255, n);
      if (rc == 1) return error("switch " + a + " needs a bus number");
      if (rc == 2) return error("bus number '" + args[i] + "' must be 0..255");
      o.bus = static_cast<int>(n);
    } else if (a == "-m" || a == "-message" || a == "--message") {
      if (!value(o.message_name)) return error("switch " + a + " needs a message name");
    } else if (a == "-v" || a == "-verbose" || a == "--verbose") {
      int rc = number(0, 2, n);
      if (rc == 1) return error("switch " + a + " needs a level (0, 1 or 2)");
      if (rc == 2) return error("verbosity '" + args[i] + "' must be 0, 1 or 2");
      o.verbosity = static_cast<int>(n);
    } else if (a == "-t" || a == "--terminate") {
      std::string t;
      if (!value(t)) return error("switch " + a + " needs a message name");
      o.termination = t;
    } else if (a == "-d" || a == "--dir") {
      if (!value(o.dir)) return error("switch " + a + " needs a directory");
    } else if (a == "--max-messages") {
      int rc = number(1, 0xFFFFFFFFLL, n);
      if (rc != 0) return error("--max-messages needs a number greater than 0");
      o.max_messages = static_cast<std::uint32_t>(n);
    } else if (a == "--reconnect-max-ms") {
      int rc = number(10, 3600000, n);
      if (rc != 0) return error("--reconnect-max-ms needs a number of milliseconds (10..3600000)");
      o.reconnect_max_ms = static_cast<int>(n);
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
  return p;
}

int run(const Options& o) {
  util::SignalPipe stop({SIGINT, SIGTERM}, /*ignore_sigpipe=*/true);
  const std::uint32_t own_id = o.effective_network_id();
  const bool server = o.role == Options::Role::kServer;
  auto addr_r = parse_address(o.address);
  if (!addr_r) {
    print_err("limpet: bad address '" + o.address + "'");
    return kExitUsage;
  }
  const Address addr = *addr_r;
  const std::string tag = "limpet " + std::to_string(own_id) + ": ";
  auto logger = [&](LogLevel level, const std::string& text) {
    if (level == LogLevel::kError) {
      print_err(tag + text);
    } else if (static_cast<int>(level) <= o.verbosity) {
      print_out(tag + text);
    }
  };

  LimpetConfig cfg;
  cfg.network_id = own_id;
  cfg.message_name = o.message_name;
  cfg.termination = o.termination;
  cfg.max_messages = o.max_messages;
  KsockBus bus(o.bus, o.dir);
  PeerRelay relay;
  Limpet limpet(cfg, bus, relay, logger);

  auto fault_exit = [&](const Fault& f) {
    print_err(tag + (f.kind == Fault::Kind::kMisconfig ? "misconfiguration: " : "error: ") + f.what);
    return f.kind == Fault::Kind::kMisconfig ? kExitMisconfig : kExitFailure;
  };
  if (auto f = limpet.start()) return fault_exit(*f);

  int listen_fd = -1;
  std::uint16_t port = addr.port;
  if (server) {
    std::string err;
    listen_fd = listen_on(addr, port, err);
    if (listen_fd < 0) {
      print_err(tag + "error: " + err);
      return kExitFailure;
    }
  }
  struct Closer {
    int fd;
    std::string path;
    ~Closer() {
      if (fd >= 0) ::close(fd);
      if (!path.empty()) ::unlink(path.c_str());
    }
  } closer{listen_fd, server && !addr.tcp ? addr.path : std::string()};

  if (o.verbosity >= 1) {
    std::string via = addr.tcp ? "TCP/IP, address '" + addr.host + "' port " + std::to_string(port)
                               : "Unix domain socket '" + addr.path + "'";
    print_out(std::string("kbus Limpet: ") + (server ? "Server" : "Client") + " via " + via +
              " for KBUS " + std::to_string(o.bus) + ", using network id " +
              std::to_string(own_id) + ", listening for '" + o.message_name + "'");
  }

  std::unique_ptr<Link> link;       // the link (maybe still in its HELO exchange)
  std::unique_ptr<Link> candidate;  // server: a newer connection, in its HELO exchange
  int backoff_ms = 100;
  Clock::time_point next_attempt = Clock::now();
  bool reported_connect_failure = false;
  bool peer_batch_full = false;  // the last turn stopped at kPeerBatch messages

  // Returns an exit status if the limpet cannot go on.
  auto drop_link = [&](const std::string& why) -> std::optional<int> {
    const bool was_up = limpet.linked();
    logger(LogLevel::kInfo, "link lost: " + why);
    relay.link = nullptr;
    link.reset();
    if (was_up) {
      if (auto f = limpet.link_down()) return fault_exit(*f);
    }
    if (!server) next_attempt = Clock::now() + std::chrono::milliseconds(backoff_ms);
    return std::nullopt;
  };
  auto bring_up = [&]() -> std::optional<int> {
    if (auto f = limpet.link_up(link->peer_id())) {
      const int code = fault_exit(*f);
      if (f->kind == Fault::Kind::kMisconfig) {
        // Stay (marker bound, link open) until the other end has seen it
        // too and hung up, at most 2 s: each end then reports the error,
        // whichever checked first.
        (void)link->on_writable();
        link->shutdown_write();  // our FIN tells it we are done
        const auto until = Clock::now() + std::chrono::seconds(2);
        while (Clock::now() < until) {
          auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()).count();
          pollfd p{link->fd(), POLLIN, 0};
          if (::poll(&p, 1, static_cast<int>(std::max<long long>(left, 0))) <= 0) continue;
          if (link->on_readable() != Link::Io::kOk) break;
        }
      }
      return code;
    }
    relay.link = link.get();
    backoff_ms = 100;
    reported_connect_failure = false;
    logger(LogLevel::kInfo, "linked with the limpet of network id " + std::to_string(link->peer_id()));
    return std::nullopt;
  };

  for (;;) {
    if (stop.stopped()) break;
    // Client: (re)connect when it is time.
    if (!server && !link && Clock::now() >= next_attempt) {
      std::string err;
      int fd = connect_to(addr, 5000, stop.fd(), err);
      if (fd >= 0) {
        link = std::make_unique<Link>(fd, own_id);
        logger(LogLevel::kInfo, "connected to " + addr.to_string());
      } else {
        if (stop.stopped()) break;
        logger(reported_connect_failure ? LogLevel::kTrace : LogLevel::kInfo,
               err + "; retrying (at most every " + std::to_string(o.reconnect_max_ms) + " ms)");
        reported_connect_failure = true;
        next_attempt = Clock::now() + std::chrono::milliseconds(backoff_ms);
        backoff_ms = std::min(backoff_ms * 2, o.reconnect_max_ms);
      }
    }

    pollfd pfds[5];
    int n = 0;
    pfds[n++] = {stop.fd(), POLLIN, 0};
    const int i_bus = n;
    short bus_events = 0;
    if (!link || link->out_pending() < kMaxPeerOutput) bus_events |= POLLIN;
    if (limpet.bus_blocked()) bus_events |= POLLOUT;
    pfds[n++] = {bus.fileno(), bus_events, 0};
    int i_link = -1, i_listen = -1, i_cand = -1;
    if (link) {
      short ev = 0;
      if (!limpet.bus_blocked() && link->in_pending() < kMaxPeerOutput) ev |= POLLIN;
      if (link->wants_write()) ev |= POLLOUT;
      i_link = n;
      pfds[n++] = {link->fd(), ev, 0};
    }
    if (listen_fd >= 0) {
      i_listen = n;
      pfds[n++] = {listen_fd, POLLIN, 0};
    }
    if (candidate) {
      i_cand = n;
      pfds[n++] = {candidate->fd(),
                   static_cast<short>(POLLIN | (candidate->wants_write() ? POLLOUT : 0)), 0};
    }
    int timeout = -1;
    if (!server && !link) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(next_attempt - Clock::now()).count();
      timeout = static_cast<int>(std::max<long long>(0, left));
    }
    if (limpet.has_retries()) timeout = timeout < 0 ? 50 : std::min(timeout, 50);
    // Messages already received but not yet handled (a batch limit was hit).
    if (peer_batch_full && link && limpet.linked() && !limpet.bus_blocked()) timeout = 0;
    int rc = ::poll(pfds, static_cast<nfds_t>(n), timeout);
    if (rc < 0) {
      if (errno == EINTR) continue;
      print_err(tag + "error: poll: " + std::strerror(errno));
      return kExitFailure;
    }
    if (pfds[0].revents & POLLIN) break;
    if (limpet.has_retries()) limpet.retry();

    // The bus: a pending send has completed; messages to read.
    const short brev = pfds[i_bus].revents;
    if ((brev & POLLOUT) && limpet.bus_blocked()) limpet.bus_writable();
    if (brev & (POLLIN | POLLHUP | POLLERR)) {
      for (int k = 0; k < kBusBatch; ++k) {
        if (link && link->out_pending() >= kMaxPeerOutput) break;
        // The poll fd shows the queue after every operation: no round trip
        // to the daemon just to find the queue empty.
        if (k > 0) {
          pollfd q{bus.fileno(), POLLIN, 0};
          if (::poll(&q, 1, 0) != 1 || !(q.revents & POLLIN)) break;
        }
        auto m = bus.read_next();
        if (!m) {
          print_err(tag + "error: reading from bus " + std::to_string(o.bus) + ": " +
                    errno_name(to_errno(m.error())) + " (has kbusd gone?)");
          return kExitFailure;
        }
        if (!*m) break;
        if (limpet.from_bus(**m) == Limpet::Action::kTerminate) return kExitOk;
      }
    }

    // The link.
    if (link && i_link >= 0) {
      const short lrev = pfds[i_link].revents;
      std::optional<std::string> lost;
      if (lrev & POLLOUT) {
        if (link->on_writable() == Link::Io::kError) lost = link->error();
      }
      if (!lost && (lrev & (POLLIN | POLLHUP | POLLERR))) {
        const bool had_helo = link->handshake_done();
        Link::Io io = link->on_readable();
        if (!had_helo && link->handshake_done()) {
          if (auto code = bring_up()) return *code;
        }
        if (io != Link::Io::kOk) lost = link->error();
      }
      if (!lost && link->handshake_done() && link->wants_write()) {
        if (link->on_writable() == Link::Io::kError) lost = link->error();
      }
      if (lost) {
        // Hand over what had arrived before the loss, then drop the link.
        if (link->handshake_done() && limpet.linked()) {
          for (;;) {
            if (limpet.bus_blocked()) break;
            auto m = link->next_message();
            if (!m || !*m) break;
            limpet.from_peer(**m);
          }
        }
        if (auto code = drop_link(*lost)) return *code;
      }
    }
    // Messages from the peer, while the bus takes them.
    peer_batch_full = false;
    if (link && link->handshake_done() && limpet.linked()) {
      for (int k = 0;; ++k) {
        if (limpet.bus_blocked()) break;
        if (k == kPeerBatch) {
          peer_batch_full = true;
          break;
        }
        auto m = link->next_message();
        if (!m) {
          logger(LogLevel::kError, "the other limpet sent a malformed message; dropping the link");
          if (auto code = drop_link("malformed message")) return *code;
          break;
        }
        if (!*m) break;
        limpet.from_peer(**m);
      }
    }

    // Server: new connections and the candidate's HELO exchange.
    if (i_listen >= 0 && (pfds[i_listen].revents & POLLIN)) {
      int fd = accept_from(listen_fd);
      if (fd >= 0) {
        if (!link) {
          link = std::make_unique<Link>(fd, own_id);
          (void)link->on_writable();
          logger(LogLevel::kInfo, "accepted a connection");
        } else {
          candidate = std::make_unique<Link>(fd, own_id);
          (void)candidate->on_writable();
          logger(LogLevel::kInfo, "accepted another connection; checking who it is");
        }
      }
    }
    if (candidate && i_cand >= 0 && pfds[i_cand].revents) {
      Link::Io io = Link::Io::kOk;
      if (pfds[i_cand].revents & POLLOUT) io = candidate->on_writable();
      if (io == Link::Io::kOk && (pfds[i_cand].revents & (POLLIN | POLLHUP | POLLERR))) {
        io = candidate->on_readable();
      }
      if (candidate->handshake_done()) {
        if (!link || !link->handshake_done() || link->peer_id() == candidate->peer_id()) {
          if (link) {
            if (auto code = drop_link("replaced by a new connection from the same limpet")) return *code;
          }
          link = std::move(candidate);
          if (auto code = bring_up()) return *code;
        } else {
          logger(LogLevel::kError, "refusing a connection from the limpet of network id " +
                                       std::to_string(candidate->peer_id()) +
                                       ": already linked with network id " +
                                       std::to_string(link->peer_id()));
          candidate.reset();
        }
      } else if (io != Link::Io::kOk) {
        candidate.reset();
      }
    }
  }
  logger(LogLevel::kInfo, "stopping");
  return kExitOk;
}

int main_with_args(const std::string& program, const std::vector<std::string>& args) {
  ParsedArgs p = parse_args(args);
  switch (p.outcome) {
    case ParsedArgs::Outcome::kHelp:
      std::fputs(usage(program).c_str(), stdout);
      return kExitOk;
    case ParsedArgs::Outcome::kError:
      std::fprintf(stderr, "%s: %s\n\n%s", program.c_str(), p.error.c_str(), usage(program).c_str());
      return kExitUsage;
    case ParsedArgs::Outcome::kRun:
      break;
  }
  try {
    return run(p.options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program.c_str(), e.what());
    return kExitFailure;
  }
}

}  // namespace kbus::limpet
