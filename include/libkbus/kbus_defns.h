/* libkbus/kbus_defns.h - the same header as <linux/kbus_defns.h>.
 *
 * The original kernel module installed its public header as
 * <linux/kbus_defns.h>, and programs include it by that name. kbus installs
 * it as libkbus/linux/kbus_defns.h and puts the libkbus directory on the
 * include path (`pkg-config --cflags kbus`, find_package(kbus)), so both
 * <linux/kbus_defns.h> and this name reach it. */
#include "linux/kbus_defns.h"
