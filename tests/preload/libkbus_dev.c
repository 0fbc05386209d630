/* libkbus_dev.c - the Ksock and message functions of <libkbus/kbus.h>
 * written as the original libkbus wrote them: directly on the /dev/kbusN
 * device, with open(), ioctl(), read(), write() and poll(). It stands in
 * for the original libkbus.c in the preload tests (tests/preload), so that
 * they exercise the device exactly as the original C library did; it links
 * nothing of kbus and runs under `kbus run` (libkbus-dev.so).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <libkbus/kbus.h>

kbus_ksock_t kbus_ksock_open(uint32_t device_number, int flags)
{
	char filename[32];
	int mask = O_RDONLY | O_WRONLY | O_RDWR;
	int rv;

	snprintf(filename, sizeof filename, "/dev/kbus%u", device_number);
	rv = open(filename, flags & mask);
	if (rv < 0)
		return -errno;
	return rv;
}

kbus_ksock_t kbus_ksock_open_by_name(const char *device_name, int flags)
{
	int mask = O_RDONLY | O_WRONLY | O_RDWR;
	int rv = open(device_name, flags & mask);
	if (rv < 0)
		return -errno;
	return rv;
}

int kbus_ksock_close(kbus_ksock_t ksock)
{
	int rv = close(ksock);
	if (rv < 0)
		return -errno;
	return 0;
}

static int bind_or_unbind(kbus_ksock_t ksock, unsigned long cmd, const char *name,
			  uint32_t is_replier)
{
	kbus_bind_request_t bind_request;
	int rv;

	bind_request.name = (char *)name;
	bind_request.name_len = (uint32_t)strlen(name);
	bind_request.is_replier = is_replier;
	rv = ioctl(ksock, cmd, &bind_request);
	if (rv < 0)
		return -errno;
	return rv;
}

int kbus_ksock_bind(kbus_ksock_t ksock, const char *name, uint32_t is_replier)
{
	return bind_or_unbind(ksock, KBUS_IOC_BIND, name, is_replier);
}

int kbus_ksock_unbind(kbus_ksock_t ksock, const char *name, uint32_t is_replier)
{
	return bind_or_unbind(ksock, KBUS_IOC_UNBIND, name, is_replier);
}

/* An ioctl whose argument is a pointer: its result, or -errno. */
static int ioc(kbus_ksock_t ksock, unsigned long cmd, void *arg)
{
	int rv = ioctl(ksock, cmd, arg);
	if (rv < 0)
		return -errno;
	return rv;
}

int kbus_ksock_id(kbus_ksock_t ksock, uint32_t *ksock_id)
{
	return ioc(ksock, KBUS_IOC_KSOCKID, ksock_id);
}

int kbus_ksock_next_msg(kbus_ksock_t ksock, uint32_t *message_length)
{
	return ioc(ksock, KBUS_IOC_NEXTMSG, message_length);
}

int kbus_ksock_len_left(kbus_ksock_t ksock, uint32_t *len_left)
{
	return ioc(ksock, KBUS_IOC_LENLEFT, len_left);
}

int kbus_ksock_last_msg_id(kbus_ksock_t ksock, kbus_msg_id_t *msg_id)
{
	return ioc(ksock, KBUS_IOC_LASTSENT, msg_id);
}

int kbus_ksock_find_replier(kbus_ksock_t ksock, const char *name, uint32_t *replier_ksock_id)
{
	kbus_bind_query_t query;
	int rv;

	query.name = (char *)name;
	query.name_len = (uint32_t)strlen(name);
	query.return_id = 0;
	rv = ioctl(ksock, KBUS_IOC_REPLIER, &query);
	if (rv < 0)
		return -errno;
	*replier_ksock_id = query.return_id;
	return 0;
}

int kbus_ksock_max_messages(kbus_ksock_t ksock, uint32_t *max_messages)
{
	return ioc(ksock, KBUS_IOC_MAXMSGS, max_messages);
}

int kbus_ksock_num_messages(kbus_ksock_t ksock, uint32_t *num_messages)
{
	return ioc(ksock, KBUS_IOC_NUMMSGS, num_messages);
}

int kbus_ksock_num_unreplied_to(kbus_ksock_t ksock, uint32_t *num_messages)
{
	return ioc(ksock, KBUS_IOC_UNREPLIEDTO, num_messages);
}

int kbus_ksock_send(kbus_ksock_t ksock, kbus_msg_id_t *msg_id)
{
	return ioc(ksock, KBUS_IOC_SEND, msg_id);
}

int kbus_ksock_discard(kbus_ksock_t ksock)
{
	int rv = ioctl(ksock, KBUS_IOC_DISCARD, 0);
	if (rv < 0)
		return -errno;
	return rv;
}

/* The flag operations: in and out through one u32 (§4.6). */
static int flag_op(kbus_ksock_t ksock, unsigned long cmd, uint32_t request)
{
	uint32_t array[1];
	int rv;

	array[0] = request;
	rv = ioctl(ksock, cmd, array);
	if (rv < 0)
		return -errno;
	return (int)array[0];
}

int kbus_ksock_only_once(kbus_ksock_t ksock, uint32_t request)
{
	return flag_op(ksock, KBUS_IOC_MSGONLYONCE, request);
}

int kbus_ksock_report_replier_binds(kbus_ksock_t ksock, uint32_t request)
{
	return flag_op(ksock, KBUS_IOC_REPORTREPLIERBINDS, request);
}

int kbus_ksock_kernel_module_verbose(kbus_ksock_t ksock, uint32_t request)
{
	return flag_op(ksock, KBUS_IOC_VERBOSE, request);
}

int kbus_ksock_max_message_size(kbus_ksock_t ksock, uint32_t *max_message_size)
{
	return ioc(ksock, KBUS_IOC_MAXMSGSIZE, max_message_size);
}

int kbus_ksock_new_device(kbus_ksock_t ksock, uint32_t *device_number)
{
	return ioc(ksock, KBUS_IOC_NEWDEVICE, device_number);
}

int kbus_wait_for_message(kbus_ksock_t ksock, int wait_for)
{
	struct pollfd fds[1];
	int rv;

	fds[0].fd = ksock;
	fds[0].events = 0;
	fds[0].revents = 0;
	if (wait_for & KBUS_KSOCK_READABLE)
		fds[0].events |= POLLIN;
	if (wait_for & KBUS_KSOCK_WRITABLE)
		fds[0].events |= POLLOUT;
	for (;;) {
		rv = poll(fds, 1, -1);
		if (rv < 0 && errno == EINTR)
			continue;
		if (rv < 0)
			return -errno;
		break;
	}
	rv = 0;
	if (fds[0].revents & POLLIN)
		rv |= KBUS_KSOCK_READABLE;
	if (fds[0].revents & POLLOUT)
		rv |= KBUS_KSOCK_WRITABLE;
	return rv;
}

int kbus_ksock_read_msg(kbus_ksock_t ksock, kbus_message_t **msg, size_t msg_len)
{
	char *buf;
	size_t so_far = 0;

	*msg = NULL;
	buf = malloc(msg_len);
	if (!buf)
		return -ENOMEM;
	while (so_far < msg_len) {
		ssize_t rv = read(ksock, buf + so_far, msg_len - so_far);
		if (rv < 0) {
			int err = errno;
			free(buf);
			return -err;
		}
		if (rv == 0) {
			free(buf);
			return -EBADMSG;
		}
		so_far += (size_t)rv;
	}
	*msg = (kbus_message_t *)buf;
	return 0;
}

int kbus_ksock_read_next_msg(kbus_ksock_t ksock, kbus_message_t **msg)
{
	uint32_t msg_len = 0;
	int rv = kbus_ksock_next_msg(ksock, &msg_len);

	*msg = NULL;
	if (rv < 0)
		return rv;
	if (rv == 0 || msg_len == 0)
		return 0;
	return kbus_ksock_read_msg(ksock, msg, msg_len);
}

int kbus_ksock_write_data(kbus_ksock_t ksock, const uint8_t *data, size_t data_len)
{
	size_t written = 0;

	while (written < data_len) {
		ssize_t rv = write(ksock, data + written, data_len - written);
		if (rv < 0)
			return -errno;
		written += (size_t)rv;
	}
	return 0;
}

int kbus_ksock_write_msg(kbus_ksock_t ksock, const kbus_message_t *msg)
{
	size_t length;

	if (msg->name)	/* pointy: the header alone */
		length = sizeof(*msg);
	else
		length = KBUS_ENTIRE_MSG_LEN(msg->name_len, msg->data_len);
	return kbus_ksock_write_data(ksock, (const uint8_t *)msg, length);
}

int kbus_ksock_send_msg(kbus_ksock_t ksock, const kbus_message_t *msg, kbus_msg_id_t *msg_id)
{
	int rv = kbus_ksock_write_msg(ksock, msg);
	if (rv < 0)
		return rv;
	return kbus_ksock_send(ksock, msg_id);
}

/* ---- messages ---- */

static void init_header(kbus_message_t *msg, uint32_t name_len, uint32_t data_len,
			uint32_t flags)
{
	memset(msg, 0, sizeof(*msg));
	msg->start_guard = KBUS_MSG_START_GUARD;
	msg->end_guard = KBUS_MSG_END_GUARD;
	msg->name_len = name_len;
	msg->data_len = data_len;
	msg->flags = flags;
}

int kbus_msg_create(kbus_message_t **msg, const char *name, uint32_t name_len,
		    const void *data, uint32_t data_len, uint32_t flags)
{
	kbus_message_t *m = malloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	init_header(m, name_len, data_len, flags);
	m->name = (char *)name;
	m->data = data_len ? (void *)data : NULL;
	*msg = m;
	return 0;
}

int kbus_msg_create_entire(kbus_message_t **msg, const char *name, uint32_t name_len,
			   const void *data, uint32_t data_len, uint32_t flags)
{
	size_t len = KBUS_ENTIRE_MSG_LEN(name_len, data_len);
	kbus_entire_message_t *m = calloc(1, len);
	if (!m)
		return -ENOMEM;
	init_header(&m->header, name_len, data_len, flags);
	memcpy(&m->rest[0], name, name_len);
	if (data_len)
		memcpy(&m->rest[KBUS_ENTIRE_MSG_DATA_INDEX(name_len)], data, data_len);
	*kbus_msg_end_ptr(m) = KBUS_MSG_END_GUARD;
	*msg = &m->header;
	return 0;
}

int kbus_msg_create_entire_request(kbus_message_t **msg, const char *name, uint32_t name_len,
				   const void *data, uint32_t data_len, uint32_t flags)
{
	return kbus_msg_create_entire(msg, name, name_len, data, data_len,
				      flags | KBUS_BIT_WANT_A_REPLY);
}

int kbus_msg_create_entire_reply_to(kbus_message_t **msg, const kbus_message_t *in_reply_to,
				    const void *data, uint32_t data_len, uint32_t flags)
{
	int rv;

	if (!(in_reply_to->flags & KBUS_BIT_WANT_A_REPLY) ||
	    !(in_reply_to->flags & KBUS_BIT_WANT_YOU_TO_REPLY))
		return -EBADMSG;
	rv = kbus_msg_create_entire(msg, kbus_msg_name_ptr(in_reply_to), in_reply_to->name_len,
				    data, data_len, flags);
	if (rv < 0)
		return rv;
	(*msg)->to = in_reply_to->from;
	(*msg)->in_reply_to = in_reply_to->id;
	return 0;
}

void kbus_msg_delete(kbus_message_t **msg_p)
{
	if (msg_p == NULL || *msg_p == NULL)
		return;
	free(*msg_p);
	*msg_p = NULL;
}

int kbus_msg_sizeof(const kbus_message_t *msg)
{
	if (msg->name)
		return (int)sizeof(*msg);
	return (int)KBUS_ENTIRE_MSG_LEN(msg->name_len, msg->data_len);
}
