/* libkbus/limpet.h - the Limpet library of the original libkbus
 * (KBUS-SPEC.md §10.7): what a program needs to be one end of a Limpet
 * pair (§10), given a Ksock and a stream socket to the other end.
 *
 * The program (see the original's utils/runlimpet.c; tests/capi/runlimpet.c
 * here) does all the I/O: it exchanges HELO with the other limpet (§10.2-1),
 * opens the bus and makes a context with kbus_limpet_new_context(), then
 * loops, reading from KBUS and from the socket:
 *
 *   - a message read from KBUS goes to kbus_limpet_amend_msg_from_kbus();
 *     0 means send it to the other limpet: kbus_limpet_ReplierBindEvent_hton(),
 *     kbus_serialise_message_header() for the 16 header words, then the
 *     name, data and end guard (§10.3);
 *   - a message read from the other limpet (kbus_unserialise_message_header()
 *     on the 16 header words, then kbus_limpet_ReplierBindEvent_ntoh()) goes
 *     to kbus_limpet_amend_msg_to_kbus(); 0 means send it to KBUS, 2 means
 *     send *error back to the other limpet. If the send to KBUS fails, ask
 *     kbus_limpet_could_not_send_to_kbus_msg() what to send back.
 *
 * The decisions are those of kbus's own limpet (docs/limpets.md; the same
 * code): Requests are routed only by the limpet chosen as their replier,
 * answers only to the limpet that waits for them, and a limpet never
 * forwards its own traffic or a message that already carries its network
 * id. The context acts on the Ksock itself where the rules say so: it binds
 * and unbinds proxy repliers (for the ReplierBindEvents of the other
 * side), asks REPLIER for Stateful Requests, and answers on the bus a
 * Request it cannot forward. Messages given to and returned by the amend
 * functions hold bind event data in host order; only their header fields
 * are changed, never their name or data.
 *
 * Functions return as kbus.h says (0 or a negative errno; -EFAULT for a
 * NULL pointer, -EBADF for a Ksock that is not open), except where stated.
 * A context is used by one thread at a time.
 */
#ifndef _LIBKBUS_LIMPET_H
#define _LIBKBUS_LIMPET_H

#include "kbus.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Names of the (non-synthetic) Replies limpets make (§6.3, §10.5): the
 * Stateful Request reached a bus whose replier for its name is not the
 * Ksock it was meant for; and, followed by a decimal errno, a Request that
 * could not be sent on the far bus (e.g. "$.KBUS.RemoteError.99"). */
#define KBUS_MSG_NOT_SAME_KSOCK		"$.KBUS.Replier.NotSameKsock"
#define KBUS_MSG_REMOTE_ERROR_PREFIX	"$.KBUS.RemoteError."

/* The number of u32 words of a serialised message header (§10.3). */
#define KBUS_SERIALISED_HDR_LEN 16

/* The header of `msg` as KBUS_SERIALISED_HDR_LEN big-endian u32 words:
 * start_guard, id (2), in_reply_to (2), to, from, orig_from (2),
 * final_to (2), extra, flags, name_len, data_len, end_guard. The name and
 * data pointers are not included. */
KBUS_EXPORT void kbus_serialise_message_header(const kbus_message_t *msg,
					       uint32_t serial_buf[KBUS_SERIALISED_HDR_LEN]);

/* The reverse: fills in the header fields of `msg` from the big-endian
 * words; its name and data pointers become NULL. Returns 0, or -EINVAL if
 * a guard word is wrong (the fields are filled in all the same), -EFAULT
 * for a NULL pointer. */
KBUS_EXPORT int kbus_unserialise_message_header(const uint32_t serial_buf[KBUS_SERIALISED_HDR_LEN],
						kbus_message_t *msg);

/* Converts the three leading u32 of the data of a $.KBUS.ReplierBindEvent
 * message (is_bind, binder, name_len) from host to network order (hton)
 * or back (ntoh), in place. Any other message, or one with less than 12
 * bytes of data, is left alone; so is a NULL msg. */
KBUS_EXPORT void kbus_limpet_ReplierBindEvent_hton(kbus_message_t *msg);
KBUS_EXPORT void kbus_limpet_ReplierBindEvent_ntoh(kbus_message_t *msg);

/* The state of one limpet for one link. */
typedef struct kbus_limpet_context kbus_limpet_context_t;

/* A new context for the limpet on `ksock` (open for reading and writing),
 * whose network id is `network_id` and whose other end has
 * `other_network_id` (both > 0 and different, else -EINVAL), forwarding
 * messages named `message_name` (e.g. "$.*"). Sets the Ksock up as
 * §10.2-2 says: MSGONLYONCE(1), a listener binding on `message_name` and
 * one on $.KBUS.ReplierBindEvent, REPORTREPLIERBINDS(1) - which queues a
 * ReplierBindEvent for every existing replier binding, to be forwarded
 * like any other. `verbosity`: 0 quiet; 1 (the usual) errors and proxy
 * bindings; 2 also every message, on stdout (errors on stderr), each line
 * prefixed "limpet <network_id>: ".
 *
 * Returns 0 and *context; or -EBADMSG if message_name is NULL or shorter
 * than 3 characters, -EFAULT if context is NULL, -EINVAL as above, or the
 * error of the first KBUS operation that failed (e.g. -EBADMSG for a name
 * KBUS refuses), with *context NULL and no binding left behind. */
KBUS_EXPORT int kbus_limpet_new_context(kbus_ksock_t ksock, uint32_t network_id,
					uint32_t other_network_id, const char *message_name,
					uint32_t verbosity, kbus_limpet_context_t **context);

/* Changes the verbosity (as above). A NULL context is ignored. */
KBUS_EXPORT void kbus_limpet_set_verbosity(kbus_limpet_context_t *context, uint32_t verbosity);

/* Frees the context and sets *context to NULL; does nothing if context or
 * *context is NULL. It leaves the Ksock as it is: close the Ksock to have
 * KBUS answer the Requests the limpet still held (GoneAway / Ignored,
 * §7.2) and remove its proxy replier bindings. */
KBUS_EXPORT void kbus_limpet_free_context(kbus_limpet_context_t **context);

/* `msg` was read from KBUS (§10.4). Returns
 *   0  - it has been amended (id and orig_from stamped with this limpet's
 *        network id where they were 0) and should be sent to the other
 *        limpet;
 *   1  - ignore it: it is not for the other limpet (a listener copy of a
 *        Request or Reply, this limpet's own traffic or proxy binding, an
 *        echo of what the other limpet sent). A Request this limpet was
 *        asked to answer but cannot forward (a loop, or a Request whose id
 *        is that of another still awaiting its answer through this limpet)
 *        has been answered on the bus with $.KBUS.RemoteError.<errno>;
 *  <0  - a negative errno (-EFAULT, -EBADF, -ENOMEM). */
KBUS_EXPORT int kbus_limpet_amend_msg_from_kbus(kbus_limpet_context_t *context,
						kbus_message_t *msg);

/* `msg` came from the other limpet (§10.5), bind event data in host order
 * (kbus_limpet_ReplierBindEvent_ntoh()). *error is set to NULL, then
 * returns
 *   0  - it has been amended and should be sent to KBUS (if that fails,
 *        call kbus_limpet_could_not_send_to_kbus_msg());
 *   1  - ignore it: it has been dealt with (a ReplierBindEvent: the proxy
 *        replier binding has been made or removed) or is not wanted (an
 *        answer nobody here awaits, a listener copy of a Request);
 *   2  - do not send it; send *error (a new entire message: the caller
 *        frees it with kbus_msg_delete()) back to the other limpet instead:
 *        $.KBUS.Replier.GoneAway, KBUS_MSG_NOT_SAME_KSOCK or
 *        KBUS_MSG_REMOTE_ERROR_PREFIX<errno> for its Request;
 *  <0  - a negative errno (-EFAULT, -EBADF, -ENOMEM). */
KBUS_EXPORT int kbus_limpet_amend_msg_to_kbus(kbus_limpet_context_t *context,
					      kbus_message_t *msg, kbus_message_t **error);

/* Sending `msg` (as amended by kbus_limpet_amend_msg_to_kbus()) to KBUS
 * failed with `errnum` (an errno, positive or negative, as the send
 * returned it). *error is set to NULL, then returns
 *   0  - `msg` was a Request: send *error (a new entire message,
 *        KBUS_MSG_REMOTE_ERROR_PREFIX<errnum>, freed by the caller with
 *        kbus_msg_delete()) back to the other limpet;
 *   1  - nothing to send back: -EAGAIN (the send is pending; wait for the
 *        Ksock to be writable before sending more), an Announcement, or an
 *        answer - whose requester, unless it has gone, has been answered on
 *        the bus with KBUS_MSG_REMOTE_ERROR_PREFIX<errnum> instead;
 *  <0  - a negative errno (-EFAULT, -EBADF, -ENOMEM; -EINVAL if errnum is
 *        0). */
KBUS_EXPORT int kbus_limpet_could_not_send_to_kbus_msg(kbus_limpet_context_t *context,
						       kbus_message_t *msg, int errnum,
						       kbus_message_t **error);

#ifdef __cplusplus
}
#endif

#endif /* _LIBKBUS_LIMPET_H */
