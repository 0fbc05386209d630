// daemon/event_tags.hpp - the daemon's fixed numbers, shared by its files.
//
// An epoll event's data is a tag: the signal pipe, a listener (bus number in
// the low bits) or a connection (its id in the low bits).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kbus::daemon {

constexpr std::uint64_t kTagSignal = 0;
constexpr std::uint64_t kTagListener = 1ull << 62;
constexpr std::uint64_t kTagConn = 2ull << 62;
constexpr std::uint64_t kTagMask = 3ull << 62;
constexpr std::uint32_t kMaxBuses = 256;
// One connection's share of a turn (docs/reliability.md §4, scheduling):
// at most kFramesPerTurn frames and kFrameBytesPerTurn bytes of frames
// applied (always at least one frame), and input read in kReadChunk pieces
// only while no whole frame is buffered, at most kReadBytesPerTurn bytes.
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kReadBytesPerTurn = 4 * kReadChunk;
// 16 frames: with 64, another client's round trip beside a flooder took
// 1.5-2x its time on a quiet bus; with 16, 1.4-1.5x, and 4 did no better
// (bench/noisy.cpp, docs/reliability.md §4). The clients' batch operations
// carry many messages in one frame.
constexpr int kFramesPerTurn = 16;
constexpr std::size_t kFrameBytesPerTurn = 256 * 1024;
// HELLO's frame is 16 bytes: a longer one before HELLO is garbage, cut off
// before the daemon buffers it (docs/reliability.md §4).
constexpr std::uint32_t kMaxHelloFrame = 64;

}  // namespace kbus::daemon
