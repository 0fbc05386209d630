# Keeps src/core free of I/O (STYLE.md; docs/architecture.md "the core"):
# the bus core decides every KBUS rule and must stay a pure function of the
# operations it is given, testable in-process and deterministic. So none of
# its files (tests excepted) may include a header that exists for talking to
# the OS, nor call such a function.
#
#   cmake -DDIR=<dir> -P core_purity.cmake     fails, naming file:line:text
#
# Forbidden headers, and why:
#   <sys/...>, <unistd.h>, <fcntl.h>, <poll.h>, <dirent.h>, <netinet/...>,
#   <arpa/...>, <net/...>          - descriptors, sockets, files: the daemon's job
#   <signal.h>, <csignal>          - signals: util/signals.hpp
#   <pthread.h>, <thread>, <mutex>, <condition_variable>, <future>,
#   <semaphore>, <stop_token>      - the core is single-threaded by contract
#   <chrono>, <ctime>, <time.h>    - no clocks: time comes in as arguments
#   <fstream>, <iostream>, <filesystem>
#                                  - no files or streams
#   <random>                       - determinism (tests may use it)
# Forbidden calls: the system calls as ::name( (the way kbus calls them;
#   Bus::read( is a member, not matched):
#     read write open close send recv sendmsg recvmsg socket socketpair
#     connect accept accept4 listen poll epoll_* ioctl mmap fork exec* kill
#     pipe pipe2 dup dup2 getuid geteuid getpid sleep usleep nanosleep
#     clock_gettime time getenv fopen popen system printf puts
#   and, written bare or with std::, the names that the core never uses for
#   a member of its own (so a bare name( can only be the libc function):
#     socket socketpair accept4 epoll_* ioctl mmap fork exec* pipe2 getuid
#     geteuid getpid usleep nanosleep clock_gettime getenv fopen popen printf
#     puts
# Allowed on purpose: <cstdio> for snprintf (report text) and the single
# fprintf(stderr)+abort of a broken invariant (like assert); <cerrno> for
# the errno numbers of the spec; util/endian.hpp (pure memcpy).
if(NOT DIR)
  message(FATAL_ERROR "usage: cmake -DDIR=<dir> -P core_purity.cmake")
endif()
file(GLOB files ${DIR}/*.cpp ${DIR}/*.hpp ${DIR}/*.inc)
list(FILTER files EXCLUDE REGEX "_test\\.cpp$|/test_helpers\\.hpp$")
if(NOT files)
  message(FATAL_ERROR "no sources in ${DIR}")
endif()
set(id "[A-Za-z0-9_]")
set(bad_include "^[ \t]*#[ \t]*include[ \t]*<(sys/|netinet/|arpa/|net/|unistd\\.h|fcntl\\.h|poll\\.h|dirent\\.h|signal\\.h|csignal|pthread\\.h|thread|mutex|condition_variable|future|semaphore|stop_token|chrono|ctime|time\\.h|fstream|iostream|filesystem|random)")
set(calls "read|write|open|close|send|recv|sendmsg|recvmsg|socket|socketpair|connect|accept|accept4|listen|poll|epoll_${id}+|ioctl|mmap|fork|exec${id}*|kill|pipe|pipe2|dup|dup2|getuid|geteuid|getpid|sleep|usleep|nanosleep|clock_gettime|time|getenv|fopen|popen|system|printf|puts")
set(bare "socket|socketpair|accept4|epoll_${id}+|ioctl|mmap|fork|exec[lv]${id}*|pipe2|getuid|geteuid|getpid|usleep|nanosleep|clock_gettime|getenv|fopen|popen|printf|puts")
# ::name( not preceded by an identifier (Bus::bind( is a member definition),
# or a bare (or std::) name( not preceded by . -> :: or an identifier char.
set(bad_call "(^|[^A-Za-z0-9_])::(${calls})[ \t]*\\(|(^|[^A-Za-z0-9_.>:])(std::)?(${bare})[ \t]*\\(")
set(problems "")
foreach(f IN LISTS files)
  file(STRINGS ${f} lines)
  set(n 0)
  foreach(line IN LISTS lines)
    math(EXPR n "${n} + 1")
    string(REGEX REPLACE "//.*$" "" code "${line}")
    if(code MATCHES "${bad_include}" OR code MATCHES "${bad_call}")
      string(APPEND problems "  ${f}:${n}: ${line}\n")
    endif()
  endforeach()
endforeach()
if(problems)
  message(FATAL_ERROR "src/core must stay free of OS headers and calls "
                      "(tests/purity/core_purity.cmake says why); found:\n${problems}")
endif()
list(LENGTH files count)
message(STATUS "core purity: ${count} files clean")
