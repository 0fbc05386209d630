// fuzz/fuzz_shm_ring.cpp - kbusd's reader of a client's shared-memory
// receive queue (shm/ring_writer.hpp) against a client that writes
// anything anywhere in its ring (docs/protocol.md §7).
//
// Input: a script of one-byte commands with operands. kbusd's side runs
// its real cycle (freeze, drop what was taken, maybe skip, append, publish);
// the client's side either takes honestly (shm/ring_reader.hpp) or
// scribbles bytes at any offset of the shared memory. Checked: kbusd never
// counts more messages taken than it published and not yet seen taken,
// never reads or writes outside the ring, and after a refused state word
// (a tampering client) it never trusts that ring again; an honest client
// is never refused, and takes the messages in the order they were
// appended, each once.
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.hpp"
#include "shm/ring_reader.hpp"
#include "shm/ring_writer.hpp"

using namespace kbus::shm;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<char> storage(kRingBytes + 64, 0);
  void* base = storage.data() + (64 - reinterpret_cast<std::uintptr_t>(storage.data()) % 64) % 64;
  RingWriter w(base);
  RingReader r(base);
  std::size_t i = 0;
  auto next = [&]() -> std::uint8_t { return i < size ? data[i++] : 0; };
  bool tampered = false;   // the client wrote in the header (the words kbusd reads)
  bool scribbled = false;  // ... or anywhere
  bool refused = false;    // kbusd refused the state word
  std::uint32_t serial = 0;
  std::deque<std::uint32_t> expected;  // honest takes: serials, in order
  std::string out;
  while (i < size && !refused) {
    switch (next() % 4) {
      case 0: {  // kbusd: one operation, appending n messages
        const auto before = w.mirrored().size();
        auto taken = w.freeze();
        if (!taken) {
          FUZZ_CHECK(tampered);  // an honest client is never refused
          refused = true;
          break;
        }
        FUZZ_CHECK(*taken <= before);
        w.drop_taken(*taken);
        if (next() % 8 == 0) {
          w.skip_all();
          expected.clear();
        }
        const std::uint8_t n = next() % 5;
        for (std::uint8_t k = 0; k < n && !w.full(); ++k) {
          ++serial;
          const std::size_t len = next() % 8 == 0 ? kMaxInline + 1 : 4u + next();
          std::string bytes(len, 'x');
          std::memcpy(bytes.data(), &serial, 4);
          w.append(kbus::MessageId{0, serial}, 0, bytes);
          expected.push_back(serial);
        }
        (void)w.publish(next());
        break;
      }
      case 1: {  // client: an honest take
        std::uint32_t flags = 0;
        bool last = false;
        const Take t = r.take(out, flags, last);
        if (t == Take::message) FUZZ_CHECK(out.size() <= kMaxInline);
        if (t == Take::message && !scribbled) {
          // In order, each once: the bytes carry the serial.
          FUZZ_CHECK(!expected.empty() && out.size() >= 4);
          std::uint32_t got = 0;
          std::memcpy(&got, out.data(), 4);
          FUZZ_CHECK(got == expected.front());
          expected.pop_front();
        }
        break;
      }
      case 2: {  // client: scribble up to 8 bytes anywhere in the ring
        const std::size_t off = (std::size_t{next()} << 8 | next()) % kRingBytes;
        const std::uint8_t n = next() % 9;
        for (std::uint8_t k = 0; k < n && off + k < kRingBytes; ++k)
          static_cast<char*>(base)[off + k] = static_cast<char>(next());
        if (n) scribbled = true;
        if (n && off < kSlotsOffset) tampered = true;  // slots are the client's own business
        break;
      }
      case 3:
        FUZZ_CHECK(w.mirrored().size() <= kSlotCount);
        break;
    }
  }
  return 0;
}
