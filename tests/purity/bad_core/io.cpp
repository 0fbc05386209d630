// A deliberately impure "core" file: tests/purity/core_purity.cmake must
// refuse it (the ctest core_purity_catches_io checks that the check can fail).
#include <unistd.h>

int leak(int fd) { return static_cast<int>(::write(fd, "x", 1)); }
