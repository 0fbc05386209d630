// client/ring_client.cpp - setting up the shared-memory receive queue
// (docs/protocol.md §7; the ring: shm/ring_format.hpp).
//
// Negotiated, so that every combination works: a kbusd that does not know
// SHMRING answers ENOTTY and the Ksock stays socket-only, as does one whose
// client sets KBUS_TRANSPORT=socket. The steps: SHMRING 1 (kbusd makes the
// ring and sends the memfd, with one byte, through the poll fd), the client
// maps it, SHMRING 2 (kbusd starts mirroring the queue into it;
// readability is its tokens from then on).
// Any failure after SHMRING 1 is undone with SHMRING 0.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

#include "client/connection.hpp"
#include "protocol/ops.hpp"

namespace kbus::client {

namespace {

// The byte kbusd sent with the memfd; false if it is not there.
bool receive_ring_fd(int poll_fd, int& memfd) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof ctl;
  if (::recvmsg(poll_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) != 1) return false;
  cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  if (cm == nullptr || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
      cm->cmsg_len != CMSG_LEN(sizeof(int))) {
    if (cm && cm->cmsg_type == SCM_RIGHTS) {  // close whatever came
      const std::size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < n; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
        ::close(fd);
      }
    }
    return false;
  }
  std::memcpy(&memfd, CMSG_DATA(cm), sizeof memfd);
  return byte == 'S';
}

}  // namespace

void Connection::setup_ring() noexcept {
  std::lock_guard<std::mutex> lk(ring_mu_);
  if (ring_state_.load(std::memory_order_acquire) != 0) return;
  int result = 2;
  struct Publish {
    std::atomic<int>& state;
    int& result;
    ~Publish() { state.store(result, std::memory_order_release); }
  } publish{ring_state_, result};
  if (!(mode_ & protocol::kModeRead)) return;
  const char* choice = std::getenv("KBUS_TRANSPORT");
  if (choice && std::string_view(choice) == "socket") return;
  const int pfd = poll_fd_.load(std::memory_order_acquire);
  if (pfd < 0) return;
  auto shm_call = [this](std::uint32_t step) {
    std::string frame;
    protocol::append_request<protocol::Op::kShmRing>(frame, {step});
    auto r = call_frame(frame);
    return r && r->status >= 0;
  };
  if (!shm_call(1)) return;  // an older kbusd (ENOTTY), or none to spare
  int memfd = -1;
  if (!receive_ring_fd(pfd, memfd)) {
    if (memfd >= 0) ::close(memfd);
    (void)shm_call(0);
    return;
  }
  auto reader = shm::RingReader::attach(memfd);
  if (!reader || !shm_call(2)) {
    (void)shm_call(0);
    return;
  }
  ring_ = std::move(reader);
  result = 1;
}

bool Connection::daemon_gone() const noexcept {
  pollfd p{sock_, 0, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR | POLLNVAL));
}

}  // namespace kbus::client
