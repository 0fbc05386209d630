// util/send_fds.hpp - send bytes with descriptors attached (SCM_RIGHTS).
//
// kbusd hands descriptors to clients in two places: the poll fd, on the
// first bytes of the POLLFD reply (daemon/connection.cpp), and the
// shared-memory ring's memfd, with one byte on the poll fd
// (daemon/poll_fd.cpp). Both go through this one sendmsg().
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace kbus::util {

// sendmsg() of data[0, len) with fds[0, count) attached (1 <= count <= 4),
// non-blocking and without SIGPIPE. Returns what sendmsg() returns.
ssize_t send_with_fds(int sock, const char* data, std::size_t len, const int* fds, int count);

}  // namespace kbus::util
