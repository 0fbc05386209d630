/* kbus/export.hpp - marks the public API of the shared library libkbus.so.
 *
 * libkbus.so is built with -fvisibility=hidden (STYLE.md 14): only what is
 * marked KBUS_EXPORT is visible to programs that link it - the C functions of
 * <libkbus/kbus.h> and the public C++ classes and functions of <kbus/...>.
 * Everything in kbus::core, kbus::protocol and kbus::client stays internal.
 *
 * This header is valid C as well as C++: <libkbus/kbus.h> includes it.
 */
#ifndef KBUS_EXPORT_HPP
#define KBUS_EXPORT_HPP

#if defined(__GNUC__) || defined(__clang__)
#define KBUS_EXPORT __attribute__((visibility("default")))
#else
#define KBUS_EXPORT
#endif

#endif /* KBUS_EXPORT_HPP */
