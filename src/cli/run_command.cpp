// cli/run_command.cpp - see run_command.hpp.
#include "cli/run_command.hpp"

#include <elf.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

// Set by src/preload/CMakeLists.txt; the defaults serve a build without it.
#ifndef KBUS_PRELOAD_BUILD_PATH
#define KBUS_PRELOAD_BUILD_PATH ""
#endif
#ifndef KBUS_CLI_BUILD_DIR
#define KBUS_CLI_BUILD_DIR ""
#endif
#ifndef KBUS_INSTALL_LIBDIR
#define KBUS_INSTALL_LIBDIR "lib"
#endif

namespace kbus::cli {
namespace {

// The file execvp would run for `name`: itself if it has a '/', else the
// first executable of that name in $PATH; empty if none.
std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t at = 0;
  while (at <= dirs.size()) {
    std::size_t colon = dirs.find(':', at);
    if (colon == std::string::npos) colon = dirs.size();
    std::string dir = dirs.substr(at, colon - at);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    at = colon + 1;
  }
  return {};
}

// Why LD_PRELOAD cannot reach the ELF program at `path` (empty if it can, or
// if `path` is not an ELF file: a script's interpreter is what runs).
std::string unreachable_reason(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  Elf64_Ehdr eh{};
  if (!in.read(reinterpret_cast<char*>(&eh), sizeof eh)) return {};
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return {};
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) {
    return "is not a 64-bit program, and libkbus-dev.so is built for 64-bit ones";
  }
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph{};
    in.seekg(static_cast<std::streamoff>(eh.e_phoff + std::uint64_t{i} * eh.e_phentsize));
    if (!in.read(reinterpret_cast<char*>(&ph), sizeof ph)) return {};
    if (ph.p_type == PT_INTERP) return {};
  }
  return "is statically linked, so no preload library can reach it";
}

}  // namespace

std::string preload_library_path() {
  if (const char* env = std::getenv("KBUS_PRELOAD_LIBRARY"); env && *env) return env;
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  std::string dir = ".";
  if (n > 0) {
    std::string path(exe, static_cast<std::size_t>(n));
    auto slash = path.rfind('/');
    if (slash != std::string::npos) dir = path.substr(0, slash);
  }
  if (*KBUS_CLI_BUILD_DIR && dir == KBUS_CLI_BUILD_DIR) return KBUS_PRELOAD_BUILD_PATH;
  return dir + "/../" KBUS_INSTALL_LIBDIR "/libkbus-dev.so";
}

int cmd_run(const std::string& dir, std::vector<std::string> args) {
  if (!args.empty() && args.front() == "--") args.erase(args.begin());
  if (args.empty()) {
    std::fprintf(stderr, "kbus run: give the program to run, e.g. kbus run ./my_kbus_program\n");
    return 2;
  }
  const std::string lib = preload_library_path();
  if (::access(lib.c_str(), R_OK) != 0) {
    std::fprintf(stderr,
                 "kbus run: cannot use the preload library %s: %s (set KBUS_PRELOAD_LIBRARY to "
                 "the path of libkbus-dev.so)\n",
                 lib.c_str(), std::strerror(errno));
    return 1;
  }
  std::string preload = lib;
  if (const char* old = std::getenv("LD_PRELOAD"); old && *old) {
    preload = std::string(old) + ":" + lib;
  }
  if (std::string why = unreachable_reason(find_program(args.front())); !why.empty()) {
    std::fprintf(stderr,
                 "kbus run: warning: %s %s: its opens of /dev/kbusN will fail with ENOENT. "
                 "Build it against libkbus (-lkbus), or as a dynamically linked 64-bit program "
                 "(docs/device.md).\n",
                 args.front().c_str(), why.c_str());
  }
  ::setenv("LD_PRELOAD", preload.c_str(), 1);
  if (!dir.empty()) ::setenv("KBUS_DIR", dir.c_str(), 1);

  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  const int e = errno;
  std::fprintf(stderr, "kbus run: cannot run %s: %s\n", argv[0], std::strerror(e));
  return e == ENOENT ? 127 : 126;
}

}  // namespace kbus::cli
