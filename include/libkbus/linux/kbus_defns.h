/* linux/kbus_defns.h - the KBUS message layout and constants, as the
 * original kernel module's public header defined them (KBUS-SPEC.md §12.1).
 * Installed as <libkbus/linux/kbus_defns.h>, with the libkbus directory on
 * the include path, so the original's <linux/kbus_defns.h> reaches it.
 *
 * Everything here has the original's name, type, layout and value:
 * struct kbus_message_header is byte for byte what a read of /dev/kbusN
 * returned (KBUS-SPEC.md §3), and what kbusd sends (docs/protocol.md §5).
 * The KBUS_IOC_* numbers are those of the original ioctls; kbusd uses the
 * same numbers as its operation codes (docs/protocol.md §4), but the
 * descriptor of a kbus Ksock is not a device and cannot be given to ioctl():
 * use the functions of <libkbus/kbus.h>.
 */
#ifndef _LINUX_KBUS_DEFNS_H
#define _LINUX_KBUS_DEFNS_H

#include <linux/ioctl.h>
#include <linux/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A message id (§1.5): {0,0} means "no id". */
struct kbus_msg_id {
	__u32 network_id;
	__u32 serial_num;
};

/* Type of orig_from and final_to (§1.6), used by Limpets. */
struct kbus_orig_from {
	__u32 network_id;
	__u32 local_id;
};

/* The message header (§3.1): 88 bytes with 64-bit pointers, 72 with 32-bit.
 *
 * A "pointy" message is the header alone, with name (and data, if any)
 * pointing elsewhere; KBUS follows the pointers when the message is SENT.
 * An "entire" message has name == data == NULL and is followed in memory by
 * the name, NUL padding, the data, padding and a final END_GUARD (§3.4-3.5).
 */
struct kbus_message_header {
	__u32 start_guard;		/* KBUS_MSG_START_GUARD */
	struct kbus_msg_id id;		/* assigned at SEND */
	struct kbus_msg_id in_reply_to;	/* non-zero for a Reply */
	__u32 to;			/* Ksock id of the addressee, or 0 */
	__u32 from;			/* set by KBUS to the sender's Ksock id */
	struct kbus_orig_from orig_from;
	struct kbus_orig_from final_to;
	__u32 extra;			/* reserved, always 0 after SEND */
	__u32 flags;			/* KBUS_BIT_* */
	__u32 name_len;			/* without terminator or padding */
	__u32 data_len;			/* in bytes */
	char *name;			/* pointy: the name; entire: NULL */
	void *data;			/* pointy: the data or NULL; entire: NULL */
	__u32 end_guard;		/* KBUS_MSG_END_GUARD */
};

#define KBUS_MSG_START_GUARD	0x7375624B
#define KBUS_MSG_END_GUARD	0x4B627573

/* An entire message: the header, then the rest (name, data, final guard). */
struct kbus_entire_message {
	struct kbus_message_header header;
	__u32 rest[];
};

#define KBUS_MAX_NAME_LEN	1000

/* Layout arithmetic (§3.5). */
#define KBUS_PADDED_NAME_LEN(name_len)	(4 * (((name_len) + 1 + 3) / 4))
#define KBUS_PADDED_DATA_LEN(data_len)	(4 * (((data_len) + 3) / 4))
#define KBUS_ENTIRE_MSG_LEN(name_len, data_len)			\
	(sizeof(struct kbus_entire_message) +			\
	 KBUS_PADDED_NAME_LEN(name_len) +			\
	 KBUS_PADDED_DATA_LEN(data_len) + 4)
#define KBUS_ENTIRE_MSG_DATA_INDEX(name_len)	(((name_len) + 1 + 3) / 4)
#define KBUS_ENTIRE_MSG_END_GUARD_INDEX(name_len, data_len)	\
	((((name_len) + 1 + 3) / 4) + (((data_len) + 3) / 4))

/* The message name: the pointer of a pointy message, else the name inside
 * the entire message. */
static inline char *kbus_msg_name_ptr(const struct kbus_message_header *hdr)
{
	if (hdr->name)
		return hdr->name;
	return (char *)&((const struct kbus_entire_message *)hdr)->rest[0];
}

/* The message data: the pointer of a pointy message (NULL if it has no
 * data), else where the data lies inside the entire message. */
static inline void *kbus_msg_data_ptr(const struct kbus_message_header *hdr)
{
	if (hdr->name)
		return hdr->data;
	return (void *)&((const struct kbus_entire_message *)hdr)
		->rest[KBUS_ENTIRE_MSG_DATA_INDEX(hdr->name_len)];
}

/* The final END_GUARD word of an entire message. */
static inline __u32 *kbus_msg_end_ptr(struct kbus_entire_message *entire)
{
	return &entire->rest[KBUS_ENTIRE_MSG_END_GUARD_INDEX(
		entire->header.name_len, entire->header.data_len)];
}

/* Argument of BIND and UNBIND (§3.7). */
struct kbus_bind_request {
	__u32 is_replier;	/* 0 = listener, otherwise replier */
	__u32 name_len;
	char *name;
};

/* Argument of REPLIER (§3.7). */
struct kbus_bind_query {
	__u32 return_id;
	__u32 name_len;
	char *name;
};

/* Data of a $.KBUS.ReplierBindEvent message (§3.6). */
struct kbus_replier_bind_event_data {
	__u32 is_bind;		/* 1 = bind, 0 = unbind */
	__u32 binder;		/* Ksock id of the replier */
	__u32 name_len;		/* length of the name that follows */
	__u32 rest[];		/* the name, NUL padded to KBUS_PADDED_NAME_LEN */
};

/* Message flags (§3.3). Bits 16-31 belong to the user. */
#define KBUS_BIT_WANT_A_REPLY		(1u << 0)
#define KBUS_BIT_WANT_YOU_TO_REPLY	(1u << 1)
#define KBUS_BIT_SYNTHETIC		(1u << 2)
#define KBUS_BIT_URGENT			(1u << 3)
#define KBUS_BIT_ALL_OR_WAIT		(1u << 8)
#define KBUS_BIT_ALL_OR_FAIL		(1u << 9)

/* Names of the messages KBUS itself generates (§6.3). */
#define KBUS_MSG_NAME_REPLIER_GONEAWAY		"$.KBUS.Replier.GoneAway"
#define KBUS_MSG_NAME_REPLIER_IGNORED		"$.KBUS.Replier.Ignored"
#define KBUS_MSG_NAME_REPLIER_UNBOUND		"$.KBUS.Replier.Unbound"
#define KBUS_MSG_NAME_REPLIER_DISAPPEARED	"$.KBUS.Replier.Disappeared"
#define KBUS_MSG_NAME_ERROR_SENDING		"$.KBUS.ErrorSending"
#define KBUS_MSG_NAME_UNBIND_EVENTS_LOST	"$.KBUS.UnbindEventsLost"
#define KBUS_MSG_NAME_REPLIER_BIND_EVENT	"$.KBUS.ReplierBindEvent"

/* The original ioctl numbers (§4.5). */
#define KBUS_IOC_MAGIC	'k'
#define KBUS_IOC_RESET		_IO(KBUS_IOC_MAGIC, 1)
#define KBUS_IOC_BIND		_IOW(KBUS_IOC_MAGIC, 2, char *)
#define KBUS_IOC_UNBIND		_IOW(KBUS_IOC_MAGIC, 3, char *)
#define KBUS_IOC_KSOCKID	_IOR(KBUS_IOC_MAGIC, 4, char *)
#define KBUS_IOC_REPLIER	_IOWR(KBUS_IOC_MAGIC, 5, char *)
#define KBUS_IOC_NEXTMSG	_IOR(KBUS_IOC_MAGIC, 6, char *)
#define KBUS_IOC_LENLEFT	_IOR(KBUS_IOC_MAGIC, 7, char *)
#define KBUS_IOC_SEND		_IOR(KBUS_IOC_MAGIC, 8, char *)
#define KBUS_IOC_DISCARD	_IO(KBUS_IOC_MAGIC, 9)
#define KBUS_IOC_LASTSENT	_IOR(KBUS_IOC_MAGIC, 10, char *)
#define KBUS_IOC_MAXMSGS	_IOWR(KBUS_IOC_MAGIC, 11, char *)
#define KBUS_IOC_NUMMSGS	_IOR(KBUS_IOC_MAGIC, 12, char *)
#define KBUS_IOC_UNREPLIEDTO	_IOR(KBUS_IOC_MAGIC, 13, char *)
#define KBUS_IOC_MSGONLYONCE	_IOWR(KBUS_IOC_MAGIC, 14, char *)
#define KBUS_IOC_VERBOSE	_IOWR(KBUS_IOC_MAGIC, 15, char *)
#define KBUS_IOC_NEWDEVICE	_IOR(KBUS_IOC_MAGIC, 16, char *)
#define KBUS_IOC_REPORTREPLIERBINDS	_IOWR(KBUS_IOC_MAGIC, 17, char *)
#define KBUS_IOC_MAXMSGSIZE	_IOWR(KBUS_IOC_MAGIC, 18, char *)
#define KBUS_IOC_MAXNR	18

#ifdef __cplusplus
}
#endif

#endif /* _LINUX_KBUS_DEFNS_H */
