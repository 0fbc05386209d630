/* libkbus/kbus.h - the C API of KBUS, source-compatible with the original
 * libkbus (KBUS-SPEC.md §12.2), working with kbusd instead of the kernel
 * module.
 *
 * A C program written for the original builds unchanged:
 *
 *     cc prog.c $(pkg-config --cflags --libs kbus)
 *
 * and talks to the kbusd serving $KBUS_DIR (docs/protocol.md §1).
 *
 * Conventions (those of the original, with the fixes of KBUS-SPEC.md §14-15):
 *
 *   - Functions return 0 on success or a negative errno (-EBADMSG, ...),
 *     with the errno values of KBUS-SPEC.md §4-§5 and §13.5, except where a
 *     function says otherwise. In addition -ECONNRESET means that kbusd
 *     went away (stopped or crashed: open the Ksock again once it is back;
 *     never -EPIPE, which keeps its KBUS meaning), -EPROTO that it broke the
 *     protocol.
 *   - A kbus_ksock_t is a file descriptor. It is readable (poll/select)
 *     exactly when the Ksock's message queue is non-empty, and writable
 *     exactly when it was opened for writing and no ALL_OR_WAIT send is
 *     pending (§4.4). Use it only with poll(), select() or epoll, and close
 *     it only with kbus_ksock_close(): it is not the bus device itself, so
 *     read(), write(), ioctl() and close() on it do not do what they did on
 *     /dev/kbusN.
 *   - Misuse never crashes the library: an unknown or closed kbus_ksock_t
 *     gives -EBADF, a NULL pointer where a pointer is required gives
 *     -EFAULT (as a bad address given to the kernel did), a bad value
 *     -EINVAL.
 *   - All functions are non-blocking, except kbus_wait_for_message(),
 *     kbus_ksock_wait_for_msgs() and kbus_ksock_close() (which returns once
 *     kbusd has carried out the release sequence of §7.2, as close() of the
 *     device did).
 *   - The batch calls at the end of this file are kbus extensions, not in
 *     the original libkbus (KBUS_HAVE_BATCH_CALLS tells they are there).
 *   - The functions may be called from several threads; calls on one
 *     kbus_ksock_t are carried out one at a time, except that a thread
 *     blocked in kbus_wait_for_message() or kbus_ksock_wait_for_msgs()
 *     never holds the Ksock: other threads' calls on it go on meanwhile,
 *     and kbus_ksock_close() from another thread ends the wait with
 *     -EBADF.
 */
#ifndef _LIBKBUS_KBUS_H
#define _LIBKBUS_KBUS_H

/* What the original kbus.h included, and programs written for it rely on
 * (its utilities use errno, strerror, malloc, struct timeval ... without
 * including them): keep this list. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <sys/types.h>

#include "../kbus/export.hpp"
#include "linux/kbus_defns.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kbus_msg_id kbus_msg_id_t;
typedef struct kbus_orig_from kbus_orig_from_t;
typedef struct kbus_bind_request kbus_bind_request_t;
typedef struct kbus_bind_query kbus_bind_query_t;
typedef struct kbus_message_header kbus_message_t;
typedef struct kbus_entire_message kbus_entire_message_t;
typedef struct kbus_replier_bind_event_data kbus_replier_bind_event_data_t;

/* A Ksock: a file descriptor usable with poll()/select() (see above). */
typedef int kbus_ksock_t;

/* Bits for kbus_wait_for_message(). */
#define KBUS_KSOCK_READABLE 1
#define KBUS_KSOCK_WRITABLE 2

/* Flag for kbus_msg_print2(): abbreviate long data. */
#define KBUS_MSG_PRINT_FLAGS_ABBREVIATE 0x1

/* ------------------------------------------------------------------ */
/* Ksocks                                                              */
/* ------------------------------------------------------------------ */

/* Opens a Ksock on bus `device_number` (the original /dev/kbusN). `flags`
 * is O_RDONLY, O_WRONLY or O_RDWR (other bits are ignored). Returns the
 * Ksock (>= 0) or -ENOENT if there is no such bus, -EINVAL for a bad mode,
 * or another negative errno. */
KBUS_EXPORT kbus_ksock_t kbus_ksock_open(uint32_t device_number, int flags);

/* The same, by device name: "/dev/kbusN" is bus N of the kbusd found
 * through $KBUS_DIR; "DIR/kbusN" is bus N of the kbusd serving DIR.
 * -ENOENT for any other name. */
KBUS_EXPORT kbus_ksock_t kbus_ksock_open_by_name(const char *device_name, int flags);

/* CLOSE (§7.2). -EBADF if `ksock` is not an open Ksock. */
KBUS_EXPORT int kbus_ksock_close(kbus_ksock_t ksock);

/* BIND / UNBIND the NUL-terminated `name` as a listener (is_replier 0) or
 * as the replier (is_replier non-zero). */
KBUS_EXPORT int kbus_ksock_bind(kbus_ksock_t ksock, const char *name, uint32_t is_replier);
KBUS_EXPORT int kbus_ksock_unbind(kbus_ksock_t ksock, const char *name, uint32_t is_replier);

/* KSOCKID: this Ksock's id. */
KBUS_EXPORT int kbus_ksock_id(kbus_ksock_t ksock, uint32_t *ksock_id);

/* NEXTMSG: makes the next message current and sets *message_length to its
 * length (0 if there is none). Returns 1 if there was a message, 0 if not,
 * or a negative errno. */
KBUS_EXPORT int kbus_ksock_next_msg(kbus_ksock_t ksock, uint32_t *message_length);

/* LENLEFT: bytes of the current message not yet read. */
KBUS_EXPORT int kbus_ksock_len_left(kbus_ksock_t ksock, uint32_t *len_left);

/* LASTSENT: the id most recently assigned by SEND on this Ksock. */
KBUS_EXPORT int kbus_ksock_last_msg_id(kbus_ksock_t ksock, kbus_msg_id_t *msg_id);

/* REPLIER: *replier_ksock_id is the id of the Ksock bound as replier to
 * exactly `name`, or 0 if there is none. Returns 0 either way. */
KBUS_EXPORT int kbus_ksock_find_replier(kbus_ksock_t ksock, const char *name,
					uint32_t *replier_ksock_id);

/* MAXMSGS: if *max_messages is 0, queries; else sets the queue limit. In
 * both cases *max_messages becomes the limit now in force. */
KBUS_EXPORT int kbus_ksock_max_messages(kbus_ksock_t ksock, uint32_t *max_messages);

/* NUMMSGS and UNREPLIEDTO (§4.6): the counts, in *num_messages. */
KBUS_EXPORT int kbus_ksock_num_messages(kbus_ksock_t ksock, uint32_t *num_messages);
KBUS_EXPORT int kbus_ksock_num_unreplied_to(kbus_ksock_t ksock, uint32_t *num_messages);

/* SEND (§5) the message written. *msg_id (if msg_id is not NULL) becomes
 * its id, also when the result is -EAGAIN (the send is then pending). A
 * pointy message's name and data are read now, from where its header
 * points. */
KBUS_EXPORT int kbus_ksock_send(kbus_ksock_t ksock, kbus_msg_id_t *msg_id);

/* DISCARD the message being written (or pending). */
KBUS_EXPORT int kbus_ksock_discard(kbus_ksock_t ksock);

/* MSGONLYONCE, REPORTREPLIERBINDS, VERBOSE: `request` 1 turns the flag on,
 * 0 off, 0xFFFFFFFF only asks. Returns the value before the call (0 or 1),
 * or a negative errno; -EINVAL for any other `request`. */
KBUS_EXPORT int kbus_ksock_only_once(kbus_ksock_t ksock, uint32_t request);
KBUS_EXPORT int kbus_ksock_report_replier_binds(kbus_ksock_t ksock, uint32_t request);
KBUS_EXPORT int kbus_ksock_kernel_module_verbose(kbus_ksock_t ksock, uint32_t request);

/* MAXMSGSIZE: *max_message_size 0 queries the bus's limit, 1 asks for the
 * absolute maximum, another value sets the limit (-EINVAL if below 100 or
 * above the absolute maximum). *max_message_size becomes the answer. */
KBUS_EXPORT int kbus_ksock_max_message_size(kbus_ksock_t ksock, uint32_t *max_message_size);

/* NEWDEVICE: creates the next bus; *device_number becomes its number. */
KBUS_EXPORT int kbus_ksock_new_device(kbus_ksock_t ksock, uint32_t *device_number);

/* Blocks (no timeout) until the Ksock is readable and/or writable, as
 * `wait_for` (KBUS_KSOCK_READABLE | KBUS_KSOCK_WRITABLE) asks. Returns the
 * mask of the requested conditions that hold, or a negative errno (-EINTR
 * if a signal interrupted the wait, -ECONNRESET if kbusd went away). */
KBUS_EXPORT int kbus_wait_for_message(kbus_ksock_t ksock, int wait_for);

/* Reads exactly msg_len bytes of the current message (made current by
 * kbus_ksock_next_msg) into a new malloc'd entire message, *msg. -EBADMSG
 * if there are fewer bytes to read. Free it with kbus_msg_delete(). */
KBUS_EXPORT int kbus_ksock_read_msg(kbus_ksock_t ksock, kbus_message_t **msg, size_t msg_len);

/* NEXTMSG and read: *msg is the next message (malloc'd, entire), or NULL if
 * there is none. Returns 0 in both cases, or a negative errno. */
KBUS_EXPORT int kbus_ksock_read_next_msg(kbus_ksock_t ksock, kbus_message_t **msg);

/* Writes a message without sending it: the header alone for a pointy
 * message (name and data are read at SEND), kbus_msg_sizeof(msg) bytes for
 * an entire one. */
KBUS_EXPORT int kbus_ksock_write_msg(kbus_ksock_t ksock, const kbus_message_t *msg);

/* Writes raw bytes to the Ksock, as write() on the device did. */
KBUS_EXPORT int kbus_ksock_write_data(kbus_ksock_t ksock, const uint8_t *data, size_t data_len);

/* kbus_ksock_write_msg() then kbus_ksock_send(). */
KBUS_EXPORT int kbus_ksock_send_msg(kbus_ksock_t ksock, const kbus_message_t *msg,
				    kbus_msg_id_t *msg_id);

/* ------------------------------------------------------------------ */
/* Batches: kbus extensions, not in the original libkbus               */
/* ------------------------------------------------------------------ */

/* The same operations as kbus_ksock_send_msg() and
 * kbus_ksock_read_next_msg(), applied in order, in as few round trips to
 * kbusd as they can (docs/protocol.md §4.6, SENDBATCH and READBATCH): they
 * change the cost, never the meaning. Code that must also build with the
 * original libkbus can test for them with #ifdef KBUS_HAVE_BATCH_CALLS. */
#define KBUS_HAVE_BATCH_CALLS 1

/* Sends msgs[0], msgs[1] ... msgs[count - 1] in order, each exactly as
 * kbus_ksock_send_msg() would (entire or pointy; the messages are only read,
 * and stay the caller's), stopping at the first that fails.
 *
 * *attempted (if attempted is not NULL) becomes the number of messages
 * tried, and msg_ids[i] (if msg_ids is not NULL: room for count ids) the id
 * of each message tried, as kbus_ksock_send_msg() would give it ({0,0} if
 * none was assigned).
 *
 * Returns 0 if all were sent (*attempted == count). Otherwise returns the
 * negative errno of the one that failed, msgs[*attempted - 1] (-EFAULT if
 * that pointer is NULL or unreadable, or an error of §5 such as -EBADMSG or
 * -EADDRNOTAVAIL): the messages before it were sent, those after it were
 * not tried. -EAGAIN means it is pending, as after kbus_ksock_send_msg():
 * wait for the Ksock to be writable before sending the rest. Failures that
 * are no message's leave *attempted at the messages tried before them:
 * -EBADF for a bad ksock and -EFAULT for a NULL msgs (count > 0) with
 * *attempted 0; -ECONNRESET or -EPROTO when kbusd went away or broke the
 * protocol. count 0 sends nothing and returns 0. */
KBUS_EXPORT int kbus_ksock_send_msgs(kbus_ksock_t ksock, kbus_message_t *const msgs[],
				     size_t count, kbus_msg_id_t *msg_ids, size_t *attempted);

/* Reads up to max_count messages from the queue, as that many
 * kbus_ksock_read_next_msg() calls would, in one round trip: fewer if the
 * queue holds fewer, or if more would come to over 1 MiB (but always one if
 * the queue is not empty). msgs[0] .. msgs[*got - 1] become new malloc'd
 * entire messages, the caller's, each to be freed with kbus_msg_delete().
 * Returns 0, with *got 0 if the queue was empty; or a negative errno:
 * -EBADF for a bad ksock or one not open for reading, -EFAULT if got is
 * NULL or msgs is NULL (max_count > 0). *got (if got is not NULL) is
 * always set; after -ENOMEM the messages that could be stored are in
 * msgs[0 .. *got - 1] and the others read are lost. max_count 0 reads
 * nothing. */
KBUS_EXPORT int kbus_ksock_read_msgs(kbus_ksock_t ksock, kbus_message_t *msgs[],
				     size_t max_count, size_t *got);

/* Waits until the queue is not empty, for at most timeout_ms milliseconds
 * (negative: no limit; 0: no waiting), then reads as kbus_ksock_read_msgs():
 * kbus_wait_for_message(ksock, KBUS_KSOCK_READABLE) with a timeout, then
 * kbus_ksock_read_msgs(). Returns 0 with *got >= 1, or 0 with *got 0 if the
 * time ran out; or a negative errno, as those two functions do: -EINTR if a
 * signal interrupted the wait, -ECONNRESET if kbusd went away, -EBADF at
 * once if the Ksock is not open for reading. As with
 * kbus_wait_for_message(), the Ksock is not held while waiting: other
 * threads may use or close it meanwhile (if one takes the messages first,
 * this one waits on). */
KBUS_EXPORT int kbus_ksock_wait_for_msgs(kbus_ksock_t ksock, kbus_message_t *msgs[],
					 size_t max_count, size_t *got, int timeout_ms);

/* ------------------------------------------------------------------ */
/* Messages                                                            */
/* ------------------------------------------------------------------ */

/* A new pointy message referring to (not copying) `name` (name_len bytes,
 * no terminator needed) and `data` (data_len bytes; NULL if data_len is 0).
 * Both must stay valid until the message has been sent. */
KBUS_EXPORT int kbus_msg_create(kbus_message_t **msg, const char *name, uint32_t name_len,
				const void *data, uint32_t data_len, uint32_t flags);
/* The same as an entire message, with copies of name and data. */
KBUS_EXPORT int kbus_msg_create_entire(kbus_message_t **msg, const char *name, uint32_t name_len,
				       const void *data, uint32_t data_len, uint32_t flags);
/* As the two above, with KBUS_BIT_WANT_A_REPLY added to `flags`. */
KBUS_EXPORT int kbus_msg_create_request(kbus_message_t **msg, const char *name, uint32_t name_len,
					const void *data, uint32_t data_len, uint32_t flags);
KBUS_EXPORT int kbus_msg_create_entire_request(kbus_message_t **msg, const char *name,
					       uint32_t name_len, const void *data,
					       uint32_t data_len, uint32_t flags);

/* A Reply to `in_reply_to`, which must be a Request this Ksock was asked to
 * answer (WANT_A_REPLY and WANT_YOU_TO_REPLY set; else -EBADMSG): its name,
 * to = its from, in_reply_to = its id. The pointy form refers to the
 * request's name, so keep the request until the reply is sent. */
KBUS_EXPORT int kbus_msg_create_reply_to(kbus_message_t **msg, const kbus_message_t *in_reply_to,
					 const void *data, uint32_t data_len, uint32_t flags);
KBUS_EXPORT int kbus_msg_create_entire_reply_to(kbus_message_t **msg,
						const kbus_message_t *in_reply_to,
						const void *data, uint32_t data_len,
						uint32_t flags);

/* A Stateful Request following `earlier_msg`: from a Reply, to = its from
 * and final_to = its orig_from; from a Stateful Request, its to and
 * final_to; else -EBADMSG. As in the original, KBUS_BIT_WANT_A_REPLY is
 * not added: pass it in `flags`. */
KBUS_EXPORT int kbus_msg_create_stateful_request(kbus_message_t **msg,
						 const kbus_message_t *earlier_msg,
						 const char *name, uint32_t name_len,
						 const void *data, uint32_t data_len,
						 uint32_t flags);
KBUS_EXPORT int kbus_msg_create_entire_stateful_request(kbus_message_t **msg,
							const kbus_message_t *earlier_msg,
							const char *name, uint32_t name_len,
							const void *data, uint32_t data_len,
							uint32_t flags);

/* Frees a message (not the name and data a pointy message refers to) and
 * sets *msg_p to NULL. Does nothing if msg_p or *msg_p is NULL. */
KBUS_EXPORT void kbus_msg_delete(kbus_message_t **msg_p);
/* The same, also freeing (free()) the name and data of a pointy message. */
KBUS_EXPORT void kbus_msg_delete_all(kbus_message_t **msg_p);

/* The size of the message in memory: KBUS_ENTIRE_MSG_LEN(name_len,
 * data_len) for an entire message, sizeof(kbus_message_t) for a pointy one
 * (-EFAULT for NULL). */
KBUS_EXPORT int kbus_msg_sizeof(const kbus_message_t *msg);

/* Splits the data of a $.KBUS.ReplierBindEvent message. *name is a new
 * malloc'd NUL-terminated string. -EBADMSG if the message has no (or too
 * little) data. */
KBUS_EXPORT int kbus_msg_split_bind_event(const kbus_message_t *msg, uint32_t *is_bind,
					  uint32_t *binder, char **name);

/* Prints the message on one line, without a newline:
 *   <Announcement '$.Fred' id=[0:3] from=2 data=Hello>
 * kbus_msg_print abbreviates long data (flags KBUS_MSG_PRINT_FLAGS_ABBREVIATE). */
KBUS_EXPORT void kbus_msg_print(FILE *stream, const kbus_message_t *msg);
KBUS_EXPORT void kbus_msg_print2(FILE *stream, const kbus_message_t *msg, uint32_t flags);

/* Prints every field of the message on stdout, one per line, and the data
 * in hex if dump_data is non-zero. */
KBUS_EXPORT void kbus_msg_dump(const kbus_message_t *msg, int dump_data);

/* Predicates. */
static inline int kbus_msg_is_entire(const kbus_message_t *msg)
{
	return msg->name == NULL;
}

static inline int kbus_msg_is_reply(const kbus_message_t *msg)
{
	return msg->in_reply_to.network_id != 0 || msg->in_reply_to.serial_num != 0;
}

static inline int kbus_msg_is_request(const kbus_message_t *msg)
{
	return (msg->flags & KBUS_BIT_WANT_A_REPLY) != 0;
}

static inline int kbus_msg_is_stateful_request(const kbus_message_t *msg)
{
	return (msg->flags & KBUS_BIT_WANT_A_REPLY) != 0 && msg->to != 0;
}

static inline int kbus_msg_wants_us_to_reply(const kbus_message_t *msg)
{
	return (msg->flags & KBUS_BIT_WANT_A_REPLY) != 0 &&
	       (msg->flags & KBUS_BIT_WANT_YOU_TO_REPLY) != 0;
}

/* -1, 0 or 1 as id1 is less than, equal to or greater than id2 (network id
 * first, then serial number). */
static inline int kbus_msg_compare_ids(const kbus_msg_id_t *id1, const kbus_msg_id_t *id2)
{
	if (id1->network_id != id2->network_id)
		return id1->network_id < id2->network_id ? -1 : 1;
	if (id1->serial_num != id2->serial_num)
		return id1->serial_num < id2->serial_num ? -1 : 1;
	return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* _LIBKBUS_KBUS_H */
