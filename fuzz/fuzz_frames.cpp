// fuzz/fuzz_frames.cpp - the frame decoder (protocol/frames.hpp) on any
// byte stream, arriving in pieces as a socket delivers it.
//
// Input: one byte giving the piece size (1..256), then the stream. The
// daemon's way of reading (append a piece, take every whole frame, keep
// the rest) is replayed, with the pre-HELLO limit (64) for the first frame
// and the normal limit after it. Checked: a frame never reaches past the
// buffer; its payload re-encodes to exactly the bytes it came from; the
// payload readers never read past the payload; the stream splits the same
// way whatever the piece size (compared with reading it all at once).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_check.hpp"
#include "protocol/frames.hpp"

using namespace kbus::protocol;

namespace {

struct Split {
  std::vector<std::string> frames;  // whole frames, as re-encoded
  bool bad = false;                 // stopped at a bad length
};

// Decodes each payload as kbusd would for its op, checking the readers.
void decode_payload(std::uint32_t op, std::string_view payload) {
  PayloadReader in(payload);
  switch (op) {
    case 2:
    case 3: {  // BIND/UNBIND: is_replier, name
      in.u32();
      std::string_view name = in.name();
      FUZZ_CHECK(!in.ok() || name.size() <= payload.size());
      break;
    }
    case 64:  // HELLO: three u32
      in.u32();
      in.u32();
      in.u32();
      break;
    default: {
      std::string_view name = in.name();
      FUZZ_CHECK(!in.ok() || name.data() >= payload.data());
      FUZZ_CHECK(!in.ok() || name.data() + name.size() <= payload.data() + payload.size());
      std::string_view rest = in.rest();
      FUZZ_CHECK(rest.size() <= payload.size());
      FUZZ_CHECK(in.done() == in.ok());
    }
  }
}

Split split(std::string_view stream, std::size_t piece) {
  Split s;
  std::string buf;
  std::size_t off = 0;
  std::size_t fed = 0;
  while (!s.bad) {
    // Take every whole frame now in the buffer.
    for (;;) {
      Frame f;
      std::size_t used = 0;
      std::string_view avail(buf.data() + off, buf.size() - off);
      const std::uint32_t limit = s.frames.empty() ? 64 : kMaxFrameLen;
      const Parse r = parse_frame(avail, f, used, limit);
      if (r == Parse::kIncomplete) break;
      if (r == Parse::kBadLength) {
        FUZZ_CHECK(avail.size() >= 4);
        s.bad = true;
        break;
      }
      FUZZ_CHECK(used >= 8 && used <= avail.size());
      FUZZ_CHECK(f.payload.data() == avail.data() + 8);
      FUZZ_CHECK(f.payload.size() == used - 8);
      FUZZ_CHECK(used - 4 <= limit);
      std::string again;
      append_request(again, static_cast<Op>(f.word), f.payload);
      FUZZ_CHECK(again == avail.substr(0, used));
      decode_payload(f.word, f.payload);
      s.frames.push_back(std::move(again));
      off += used;
    }
    if (fed == stream.size()) break;
    const std::size_t n = std::min(piece, stream.size() - fed);
    buf.append(stream.substr(fed, n));
    fed += n;
  }
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t piece = 1 + data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);
  const Split pieces = split(stream, piece);
  const Split whole = split(stream, stream.size() + 1);
  FUZZ_CHECK(pieces.frames == whole.frames);
  FUZZ_CHECK(pieces.bad == whole.bad);
  return 0;
}
