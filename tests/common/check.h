/* tests/common/check.h - the checks of the C test programs (tests/capi,
 * tests/preload): each counts, and a failed one prints where and what on
 * stderr and counts as a failure; the program goes on, and its main() ends
 * with `failures ? 1 : 0` after printing the totals.
 *
 *   CHECK(cond)            cond is true
 *   CHECK_EQ(a, b)         a == b, compared as long long
 *   CHECK_STR(a, b)        a is a string equal to b (a may be NULL: fails)
 *   CHECK_FAILS(call, e)   a system call returns -1 with errno e
 *
 * The counters are atomic, so threads may check at once. Include it once,
 * in the program's one source file: the counters are static.
 */
#ifndef KBUS_TESTS_COMMON_CHECK_H
#define KBUS_TESTS_COMMON_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

static _Atomic int checks;
static _Atomic int failures;

#define CHECK(cond)                                                         \
	do {                                                                \
		checks++;                                                   \
		if (!(cond)) {                                              \
			failures++;                                         \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n",        \
				__FILE__, __LINE__, #cond);                 \
		}                                                           \
	} while (0)

#define CHECK_EQ(a, b)                                                      \
	do {                                                                \
		long long a_ = (long long)(a), b_ = (long long)(b);         \
		checks++;                                                   \
		if (a_ != b_) {                                             \
			failures++;                                         \
			fprintf(stderr, "%s:%d: %s is %lld, expected %s = %lld\n", \
				__FILE__, __LINE__, #a, a_, #b, b_);        \
		}                                                           \
	} while (0)

#define CHECK_STR(a, b)                                                     \
	do {                                                                \
		const char *a_ = (a), *b_ = (b);                            \
		checks++;                                                   \
		if (a_ == NULL || strcmp(a_, b_) != 0) {                    \
			failures++;                                         \
			fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", \
				__FILE__, __LINE__, #a, a_ ? a_ : "(null)", b_); \
		}                                                           \
	} while (0)

/* A system call that must fail with errno e. */
#define CHECK_FAILS(call, e)                                                \
	do {                                                                \
		long long rv_;                                              \
		errno = 0;                                                  \
		rv_ = (long long)(call);                                    \
		checks++;                                                   \
		if (rv_ != -1 || errno != (e)) {                            \
			failures++;                                         \
			fprintf(stderr, "%s:%d: %s gave %lld, errno %d (%s); expected -1, %s\n", \
				__FILE__, __LINE__, #call, rv_, errno, strerror(errno), #e); \
		}                                                           \
	} while (0)

#endif
