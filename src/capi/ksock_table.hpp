// capi/ksock_table.hpp - the process-wide table kbus_ksock_t -> kbus::Ksock.
//
// A kbus_ksock_t is the Ksock's poll fd (kbus::Ksock::fileno()), so that C
// programs can poll()/select() it as they did /dev/kbusN (KBUS-SPEC.md §4.4).
// The table maps that number to the Ksock and to the C API's own state for
// it. Lookups and changes of the table hold its mutex; each entry has a
// mutex of its own that every operation on the Ksock holds, so calls on one
// Ksock from several threads are carried out one at a time, and a Ksock
// closed by one thread is never used by another (it sees EBADF). The two
// waits (kbus_wait_for_message, kbus_ksock_wait_for_msgs) hold the entry
// (a shared_ptr) but not its mutex while they wait, on the thread-safe
// Ksock, so the others' calls go on and a close ends the wait with EBADF.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "kbus/ksock.hpp"

namespace kbus::capi {

// What the C library must remember about the message being written, to give
// pointy messages their original meaning (KBUS-SPEC.md §3.4, §4.2): the
// header's pointers are followed at SEND, whichever way the header was
// written (kbus_ksock_write_msg or raw kbus_ksock_write_data). It mirrors
// the daemon's write parser just enough for that.
struct WriteMirror {
  bool started = false;  // a message has been begun since SEND/DISCARD/error
  std::string header;    // its first bytes, up to sizeof(kbus_message_t)
  bool pointy = false;   // its header is complete and has a name pointer
  const char* name = nullptr;
  std::uint32_t name_len = 0;
  const void* data = nullptr;
  std::uint32_t data_len = 0;
  bool pending = false;  // the last SEND returned EAGAIN

  void reset() noexcept {
    started = false;
    header.clear();
    pointy = false;
    name = nullptr;
    data = nullptr;
    name_len = data_len = 0;
    pending = false;
  }
};

struct KsockEntry {
  std::mutex mu;  // held by every operation on this Ksock
  Ksock ksock;
  WriteMirror write;
  // The daemon's absolute maximum message size (MAXMSGSIZE 1), asked the
  // first time a request frame may be longer than every kbusd accepts; 0
  // until then. It bounds what one frame may carry (ksock_api.cpp).
  std::uint32_t abs_max_msg_size = 0;
};

class KsockTable {
 public:
  // The table of this process. Never destroyed, so that a thread still
  // using the C API while the process exits does not touch a dead table.
  static KsockTable& instance();

  // Takes an open Ksock; returns its kbus_ksock_t.
  int add(Ksock k);
  // The entry for `ksock`, or null if it is not an open Ksock of this table.
  std::shared_ptr<KsockEntry> find(int ksock);
  // Removes and returns the entry (null if none).
  std::shared_ptr<KsockEntry> remove(int ksock);

 private:
  std::mutex mu_;
  std::unordered_map<int, std::shared_ptr<KsockEntry>> entries_;
};

}  // namespace kbus::capi
