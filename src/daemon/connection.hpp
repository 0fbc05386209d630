// daemon/connection.hpp - the state of one client connection (one Ksock).
//
// What it owns: the connection's socket, its input buffer (whole frames
// are cut from it by protocol::parse_frame), its output buffer of encoded
// replies (with the offsets of the replies that carry the poll fd), its
// poll fd, the blocked receive it may hold (WAITREAD, SENDWAIT, REQUEST,
// READBATCH with wait), and its back-pressure state. The functions that
// work on it - reading, framing, flushing, pausing, closing - are the
// Daemon's, in connection.cpp; the handlers of handlers.cpp append replies
// to `out`.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/bus.hpp"
#include "daemon/poll_fd.hpp"
#include "protocol/frames.hpp"
#include "shm/ring_writer.hpp"
#include "util/fd.hpp"

namespace kbus::daemon {

struct Connection {
  std::uint64_t id = 0;
  util::Fd fd;
  std::uint32_t bus = 0;
  core::KsockId ksock = 0;  // 0 until HELLO succeeded
  pid_t pid = 0;
  std::uint32_t uid = 0;    // the peer's, from SO_PEERCRED
  bool counted = false;     // admitted by the UserQuota (released at close)
  PollFd poll;
  // The shared-memory receive queue, if the client asked for it (SHMRING;
  // daemon/shm_transport.cpp); ring_corrupt: its state word was tampered with.
  std::unique_ptr<shm::RingWriter> ring;
  std::unique_ptr<shm::RingWriter> ring_offered;  // SHMRING 1 sent it, 2 not yet
  bool ring_corrupt = false;
  // A blocked receive (WAITREAD, SENDWAIT, REQUEST, READBATCH with wait):
  // answered when its message is queued, or early by the next frame.
  enum class Wait { kNone, kNext, kAnswer, kBatch };
  Wait waiting = Wait::kNone;
  bool wait_has_id = false;  // the reply starts with wait_id (SENDWAIT, REQUEST)
  MessageId wait_id;
  std::uint32_t wait_max_count = 0;
  std::uint32_t wait_max_bytes = 0;
  // Closed: no longer served; its Ksock is CLOSEd and it is freed at the end
  // of the turn (Daemon::settle), so nothing re-enters the core meanwhile.
  bool closed = false;
  bool in_epoll_out = false;
  bool reading_paused = false;
  bool peer_gone = false;  // EOF seen: apply the buffered frames, then close
  // Scheduling (docs/reliability.md §4): served at most once per turn of
  // the loop, within its budget; on the ready queue at most once.
  bool queued = false;             // on Daemon::ready_
  std::uint64_t served_turn = 0;   // the last turn it was served in
  int frames_in_turn = 0;          // frames applied in served_turn
  std::size_t frame_bytes_in_turn = 0;
  std::size_t read_in_turn = 0;    // bytes read from its socket in served_turn
  std::uint64_t tally_turn = 0;    // for the status line: frames applied in
  std::uint64_t tally_frames = 0;  // tally_turn, counted apart from the budget
  // Bytes of `in` and of unread `out` charged to uid (docs/decisions.md D28).
  std::uint64_t charged_in = 0;
  std::uint64_t charged_out = 0;
  std::uint64_t charged_ring = 0;  // its shared-memory queue (ring or ring_offered)
  protocol::InputBuffer in;
  std::string out;
  std::size_t out_off = 0;
  // Offsets in `out` of replies that carry the poll fd (POLLFD, HELLO):
  // flush() sends each such reply with SCM_RIGHTS on its first bytes.
  std::vector<std::size_t> fd_at;
};

}  // namespace kbus::daemon
