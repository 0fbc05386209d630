// cli/run_command.cpp - see run_command.hpp.
#include "cli/run_command.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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
