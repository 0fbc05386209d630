// client/ring_client.cpp - setting up the shared-memory receive queue
// (docs/protocol.md §7; the ring: shm/ring_format.hpp).
//
// Negotiated, so that every combination works: a kbusd that does not know
// SHMRING answers ENOTTY and the Ksock stays socket-only, as does one whose
// client sets KBUS_TRANSPORT=socket. The steps: SHMRING 1 (kbusd makes the
// ring and sends the memfd and the poll fd's sending end, with one byte,
// through the poll fd), the client maps it, SHMRING 2 (kbusd starts
// mirroring the queue into it; readability is its tokens from then on).
// Any failure after SHMRING 1 is undone with SHMRING 0.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

#include "client/connection.hpp"
#include "protocol/ops.hpp"

namespace kbus::client {

namespace {

// The byte kbusd sent with the two descriptors; false if it is not there.
bool receive_ring_fds(int poll_fd, int& memfd, int& send_end) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctl[CMSG_SPACE(2 * sizeof(int))] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof ctl;
  if (::recvmsg(poll_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) != 1) return false;
  cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  if (cm == nullptr || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
      cm->cmsg_len != CMSG_LEN(2 * sizeof(int))) {
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
  int fds[2];
  std::memcpy(fds, CMSG_DATA(cm), sizeof fds);
  memfd = fds[0];
  send_end = fds[1];
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
  int memfd = -1, send_end = -1;
  if (!receive_ring_fds(pfd, memfd, send_end)) {
    if (memfd >= 0) ::close(memfd);
    if (send_end >= 0) ::close(send_end);
    (void)shm_call(0);
    return;
  }
  util::Fd send(send_end);
  auto reader = shm::RingReader::attach(memfd);
  if (!reader || !shm_call(2)) {
    (void)shm_call(0);
    return;
  }
  ring_ = std::move(reader);
  ring_send_ = std::move(send);
  result = 1;
}

}  // namespace kbus::client
