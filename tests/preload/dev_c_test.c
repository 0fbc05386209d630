/* dev_c_test.c - a C program that drives /dev/kbusN with open, ioctl, read,
 * write and poll, as programs for the original kernel module did (through
 * libkbus_dev.c, the original libkbus's way, and directly for the error
 * paths). Run under `kbus run` against a kbusd with 3 fresh buses
 * (tests/preload/preload_test.cpp starts one).
 *
 *   dev_c_test ioctls | rw | poll | threads | fork | dup | killed
 *
 * Each scenario exits 0 if every check passed, else 1 listing each failed
 * check on stderr. `killed` is a replier that stops in the middle of a write
 * and waits to be killed (it prints "bound", then "ready").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <libkbus/kbus.h>

#include "../common/check.h"

static int open_dev(unsigned bus, int flags)
{
	char name[32];
	int fd;

	snprintf(name, sizeof name, "/dev/kbus%u", bus);
	fd = open(name, flags);
	if (fd < 0) {
		fprintf(stderr, "cannot open %s: %s\n", name, strerror(errno));
		exit(2);
	}
	return fd;
}

static uint32_t ksock_id(int fd)
{
	uint32_t id = 0;
	CHECK_EQ(ioctl(fd, KBUS_IOC_KSOCKID, &id), 0);
	return id;
}

static uint32_t num_messages(int fd)
{
	uint32_t n = 0;
	CHECK_EQ(kbus_ksock_num_messages(fd, &n), 0);
	return n;
}

/* Sends an entire message; returns kbus_ksock_send_msg's result. */
static int send_entire(int fd, const char *name, const char *data, uint32_t flags,
		       kbus_msg_id_t *id)
{
	kbus_message_t *msg = NULL;
	kbus_msg_id_t ignored;
	int rv = kbus_msg_create_entire(&msg, name, (uint32_t)strlen(name), data,
					data ? (uint32_t)strlen(data) : 0, flags);
	if (rv < 0)
		return rv;
	/* SEND writes the id: the original's argument is never NULL. */
	rv = kbus_ksock_send_msg(fd, msg, id ? id : &ignored);
	kbus_msg_delete(&msg);
	return rv;
}

/* The next message, read whole (NULL if none). */
static kbus_message_t *next(int fd)
{
	kbus_message_t *msg = NULL;
	CHECK_EQ(kbus_ksock_read_next_msg(fd, &msg), 0);
	return msg;
}

static int has_name(const kbus_message_t *m, const char *name)
{
	return m && m->name_len == strlen(name) &&
	       memcmp(kbus_msg_name_ptr(m), name, m->name_len) == 0;
}

static int has_data(const kbus_message_t *m, const char *data, uint32_t len)
{
	return m && m->data_len == len && memcmp(kbus_msg_data_ptr(m), data, len) == 0;
}

static int poll_events(int fd)
{
	struct pollfd p = {fd, POLLIN | POLLOUT, 0};
	if (poll(&p, 1, 0) < 0)
		return -1;
	return p.revents;
}

/* ---- ioctls: every KBUS_IOC_* and its error paths (KBUS-SPEC.md §4.5, §4.6) ---- */

static void scenario_ioctls(void)
{
	int f = open_dev(0, O_RDWR), s = open_dev(0, O_RDWR);
	uint32_t id_f = ksock_id(f), id_s = ksock_id(s), v;
	kbus_bind_request_t br;
	kbus_bind_query_t q;
	kbus_msg_id_t mid, last;
	kbus_message_t *m;

	/* RESET: a no-op. A call that succeeds leaves errno alone. */
	errno = 12345;
	CHECK_EQ(ioctl(f, KBUS_IOC_RESET, 0), 0);
	CHECK_EQ(errno, 12345);

	/* KSOCKID: ids are assigned 1, 2, ... on a fresh bus (§1.2). */
	CHECK_EQ(id_f, 1);
	CHECK_EQ(id_s, 2);
	CHECK_FAILS(ioctl(f, KBUS_IOC_KSOCKID, NULL), EFAULT);
	CHECK_FAILS(ioctl(f, KBUS_IOC_KSOCKID, (void *)8), EFAULT);

	/* BIND (§4.6): order of checks. */
	CHECK_EQ(kbus_ksock_bind(f, "$.A", 0), 0);
	br.is_replier = 0;
	br.name = "";
	br.name_len = 0;
	CHECK_FAILS(ioctl(f, KBUS_IOC_BIND, &br), EBADMSG);
	br.name = NULL;		/* never read: the length fails first */
	br.name_len = 1001;
	CHECK_FAILS(ioctl(f, KBUS_IOC_BIND, &br), ENAMETOOLONG);
	CHECK_EQ(kbus_ksock_bind(f, "$.A.", 0), -EBADMSG);
	CHECK_EQ(kbus_ksock_bind(f, "$.W.*", 0), 0);
	CHECK_EQ(kbus_ksock_bind(f, "$.R", 1), 0);
	CHECK_EQ(kbus_ksock_bind(s, "$.R", 1), -EADDRINUSE);
	CHECK_EQ(kbus_ksock_bind(f, KBUS_MSG_NAME_REPLIER_BIND_EVENT, 1), -EBADMSG);
	br.name = (char *)8;	/* not readable memory */
	br.name_len = 5;
	CHECK_FAILS(ioctl(f, KBUS_IOC_BIND, &br), EFAULT);
	CHECK_FAILS(ioctl(f, KBUS_IOC_BIND, NULL), EFAULT);
	/* The name is exactly name_len bytes: "$.A" out of "$.ABCDEF". */
	br.name = "$.ABCDEF";
	br.name_len = 3;
	CHECK_EQ(ioctl(f, KBUS_IOC_BIND, &br), 0);

	/* UNBIND: the two "$.A" bindings, then EINVAL. */
	CHECK_EQ(kbus_ksock_unbind(f, "$.A", 0), 0);
	CHECK_EQ(kbus_ksock_unbind(f, "$.A", 0), 0);
	CHECK_EQ(kbus_ksock_unbind(f, "$.A", 0), -EINVAL);
	CHECK_EQ(kbus_ksock_unbind(f, "$.R", 0), -EINVAL);	/* wrong kind */
	br.name = NULL;
	br.name_len = 1001;
	CHECK_FAILS(ioctl(f, KBUS_IOC_UNBIND, &br), ENAMETOOLONG);
	CHECK_FAILS(ioctl(f, KBUS_IOC_UNBIND, NULL), EFAULT);

	/* REPLIER: 1 and the id, or 0 (exact names only). */
	q.name = "$.R";
	q.name_len = 3;
	q.return_id = 99;
	CHECK_EQ(ioctl(s, KBUS_IOC_REPLIER, &q), 1);
	CHECK_EQ(q.return_id, id_f);
	q.name = "$.Nobody";
	q.name_len = 8;
	CHECK_EQ(ioctl(s, KBUS_IOC_REPLIER, &q), 0);
	CHECK_EQ(q.return_id, 0);
	q.name = "$.W.x";
	q.name_len = 5;
	CHECK_EQ(ioctl(s, KBUS_IOC_REPLIER, &q), 0);
	q.name_len = 0;
	CHECK_FAILS(ioctl(s, KBUS_IOC_REPLIER, &q), ENAMETOOLONG);
	q.name = NULL;
	q.name_len = 1001;
	CHECK_FAILS(ioctl(s, KBUS_IOC_REPLIER, &q), ENAMETOOLONG);
	CHECK_FAILS(ioctl(s, KBUS_IOC_REPLIER, NULL), EFAULT);

	/* NEXTMSG / LENLEFT with an empty queue. */
	v = 77;
	CHECK_EQ(ioctl(s, KBUS_IOC_NEXTMSG, &v), 0);
	CHECK_EQ(v, 0);
	CHECK_FAILS(ioctl(s, KBUS_IOC_NEXTMSG, NULL), EFAULT);
	v = 77;
	CHECK_EQ(ioctl(s, KBUS_IOC_LENLEFT, &v), 0);
	CHECK_EQ(v, 0);
	CHECK_FAILS(ioctl(s, KBUS_IOC_LENLEFT, NULL), EFAULT);

	/* SEND: nothing written is ENOMSG; then a real send. */
	CHECK_FAILS(ioctl(f, KBUS_IOC_SEND, &mid), ENOMSG);
	CHECK_EQ(kbus_ksock_bind(s, "$.Msg", 0), 0);
	memset(&mid, 0, sizeof mid);
	CHECK_EQ(send_entire(f, "$.Msg", "dada", 0, &mid), 0);
	CHECK_EQ(mid.network_id, 0);
	CHECK(mid.serial_num > 0);
	CHECK_EQ(ioctl(f, KBUS_IOC_LASTSENT, &last), 0);
	CHECK_EQ(last.serial_num, mid.serial_num);
	CHECK_FAILS(ioctl(f, KBUS_IOC_LASTSENT, NULL), EFAULT);
	CHECK_EQ(num_messages(s), 1);
	v = 0;
	CHECK_EQ(ioctl(s, KBUS_IOC_NEXTMSG, &v), 1);
	CHECK_EQ(v, KBUS_ENTIRE_MSG_LEN(5, 4));
	CHECK_EQ(ioctl(s, KBUS_IOC_LENLEFT, &v), 0);
	CHECK_EQ(v, KBUS_ENTIRE_MSG_LEN(5, 4));
	CHECK_EQ(kbus_ksock_read_msg(s, &m, KBUS_ENTIRE_MSG_LEN(5, 4)), 0);
	CHECK(has_name(m, "$.Msg"));
	CHECK(has_data(m, "dada", 4));
	CHECK_EQ(m->from, id_f);
	CHECK_EQ(m->id.serial_num, mid.serial_num);
	kbus_msg_delete(&m);
	/* A Request with no replier. */
	CHECK_EQ(send_entire(f, "$.NoReplier", NULL, KBUS_BIT_WANT_A_REPLY, &mid), -EADDRNOTAVAIL);
	/* SEND writes the id after sending: a bad pointer is EFAULT (and the
	 * message has gone). */
	CHECK_EQ(kbus_msg_create_entire(&m, "$.Msg", 5, NULL, 0, 0), 0);
	CHECK_EQ(kbus_ksock_write_msg(f, m), 0);
	CHECK_FAILS(ioctl(f, KBUS_IOC_SEND, (void *)8), EFAULT);
	kbus_msg_delete(&m);
	CHECK_EQ(num_messages(s), 1);
	CHECK_EQ(kbus_ksock_read_next_msg(s, &m), 0);
	kbus_msg_delete(&m);

	/* DISCARD: what was written is gone. */
	CHECK_EQ(kbus_msg_create_entire(&m, "$.Msg", 5, NULL, 0, 0), 0);
	CHECK_EQ(kbus_ksock_write_msg(f, m), 0);
	CHECK_EQ(ioctl(f, KBUS_IOC_DISCARD, 0), 0);
	CHECK_FAILS(ioctl(f, KBUS_IOC_SEND, &mid), ENOMSG);
	CHECK_EQ(ioctl(f, KBUS_IOC_DISCARD, 0), 0);	/* nothing to discard */
	kbus_msg_delete(&m);

	/* MAXMSGS: 0 queries (default 100); else sets. */
	v = 0;
	CHECK_EQ(ioctl(s, KBUS_IOC_MAXMSGS, &v), 0);
	CHECK_EQ(v, 100);
	v = 5;
	CHECK_EQ(ioctl(s, KBUS_IOC_MAXMSGS, &v), 0);
	CHECK_EQ(v, 5);
	v = 0;
	CHECK_EQ(kbus_ksock_max_messages(s, &v), 0);
	CHECK_EQ(v, 5);
	CHECK_FAILS(ioctl(s, KBUS_IOC_MAXMSGS, NULL), EFAULT);

	/* NUMMSGS / UNREPLIEDTO with a Request answered. */
	CHECK_EQ(kbus_ksock_bind(s, "$.Req", 1), 0);
	CHECK_EQ(send_entire(f, "$.Req", "q", KBUS_BIT_WANT_A_REPLY, &mid), 0);
	CHECK_EQ(num_messages(s), 1);
	m = next(s);
	CHECK(m && (m->flags & KBUS_BIT_WANT_YOU_TO_REPLY));
	v = 9;
	CHECK_EQ(ioctl(s, KBUS_IOC_UNREPLIEDTO, &v), 0);
	CHECK_EQ(v, 1);
	CHECK_FAILS(ioctl(s, KBUS_IOC_UNREPLIEDTO, NULL), EFAULT);
	if (m) {
		kbus_message_t *reply = NULL;
		CHECK_EQ(kbus_msg_create_entire_reply_to(&reply, m, "a", 1, 0), 0);
		CHECK_EQ(kbus_ksock_send_msg(s, reply, &last), 0);
		kbus_msg_delete(&reply);
	}
	kbus_msg_delete(&m);
	CHECK_EQ(kbus_ksock_num_unreplied_to(s, &v), 0);
	CHECK_EQ(v, 0);
	m = next(f);
	CHECK(m && m->in_reply_to.serial_num == mid.serial_num && has_data(m, "a", 1));
	kbus_msg_delete(&m);
	CHECK_FAILS(ioctl(s, KBUS_IOC_NUMMSGS, NULL), EFAULT);

	/* MSGONLYONCE, VERBOSE: value in, previous value out. */
	CHECK_EQ(kbus_ksock_only_once(f, 0xFFFFFFFF), 0);
	CHECK_EQ(kbus_ksock_only_once(f, 1), 0);
	CHECK_EQ(kbus_ksock_only_once(f, 0xFFFFFFFF), 1);
	CHECK_EQ(kbus_ksock_only_once(f, 2), -EINVAL);
	CHECK_EQ(kbus_ksock_only_once(f, 0), 1);
	CHECK_FAILS(ioctl(f, KBUS_IOC_MSGONLYONCE, NULL), EFAULT);
	CHECK_EQ(kbus_ksock_kernel_module_verbose(f, 0xFFFFFFFF), 0);
	CHECK_EQ(kbus_ksock_kernel_module_verbose(f, 1), 0);
	CHECK_EQ(kbus_ksock_kernel_module_verbose(f, 0), 1);
	CHECK_EQ(kbus_ksock_kernel_module_verbose(f, 7), -EINVAL);

	/* REPORTREPLIERBINDS: turning it on reports every replier binding to
	 * the caller ("$.R" of f, "$.Req" of s). */
	CHECK_EQ(kbus_ksock_report_replier_binds(f, 0xFFFFFFFF), 0);
	CHECK_EQ(num_messages(f), 0);
	CHECK_EQ(kbus_ksock_report_replier_binds(f, 1), 0);
	CHECK_EQ(num_messages(f), 2);
	m = next(f);
	CHECK(has_name(m, KBUS_MSG_NAME_REPLIER_BIND_EVENT));
	kbus_msg_delete(&m);
	m = next(f);
	CHECK(has_name(m, KBUS_MSG_NAME_REPLIER_BIND_EVENT));
	kbus_msg_delete(&m);
	CHECK_EQ(kbus_ksock_report_replier_binds(f, 0), 1);
	CHECK_EQ(kbus_ksock_report_replier_binds(f, 5), -EINVAL);

	/* NEWDEVICE: the next bus (3 exist). */
	v = 0;
	CHECK_EQ(ioctl(f, KBUS_IOC_NEWDEVICE, &v), 0);
	CHECK_EQ(v, 3);
	{
		int n = open("/dev/kbus3", O_RDONLY);
		CHECK(n >= 0);
		CHECK_EQ(ksock_id(n), 1);
		close(n);
	}

	/* MAXMSGSIZE: 0 queries, 1 is the absolute maximum, < 100 EINVAL. */
	v = 0;
	CHECK_EQ(ioctl(f, KBUS_IOC_MAXMSGSIZE, &v), 0);
	CHECK_EQ(v, 1024);
	v = 1;
	CHECK_EQ(ioctl(f, KBUS_IOC_MAXMSGSIZE, &v), 0);
	CHECK(v >= 1024);
	v = 50;
	CHECK_FAILS(ioctl(f, KBUS_IOC_MAXMSGSIZE, &v), EINVAL);
	v = 2000;
	CHECK_EQ(ioctl(f, KBUS_IOC_MAXMSGSIZE, &v), 0);
	CHECK_EQ(v, 2000);
	v = 0;
	CHECK_EQ(kbus_ksock_max_message_size(s, &v), 0);
	CHECK_EQ(v, 2000);
	CHECK_FAILS(ioctl(f, KBUS_IOC_MAXMSGSIZE, NULL), EFAULT);

	/* Not KBUS operations: ENOTTY, as from the driver (§4.5). */
	CHECK_FAILS(ioctl(f, _IO(KBUS_IOC_MAGIC, 19), 0), ENOTTY);
	CHECK_FAILS(ioctl(f, _IO(KBUS_IOC_MAGIC, 0), 0), ENOTTY);
	CHECK_FAILS(ioctl(f, _IOR(KBUS_IOC_MAGIC, 1, char *), 0), ENOTTY);
	{
		struct termios t;
		int on = 1;
		CHECK_FAILS(ioctl(f, TCGETS, &t), ENOTTY);
		errno = 0;
		CHECK_EQ(isatty(f), 0);
		CHECK_EQ(errno, ENOTTY);
		CHECK_FAILS(ioctl(f, FIOASYNC, &on), ENOTTY);
	}

	/* Opening (§4.1): a bus kbusd does not serve is ENOENT. */
	CHECK_FAILS(open("/dev/kbus9", O_RDWR), ENOENT);
	CHECK_FAILS(open("/dev/kbus0", O_ACCMODE), EINVAL);
	CHECK_FAILS(open("/dev/kbus0", O_RDWR | O_DIRECTORY), ENOTDIR);
	CHECK_FAILS(open("/dev/kbus0", O_RDWR | O_CREAT | O_EXCL, 0600), EEXIST);
	CHECK_EQ(kbus_ksock_open(9, O_RDWR), -ENOENT);
	{
		int a = open("//dev/./../dev/kbus1", O_RDONLY);
		int b, c, cwd = open(".", O_RDONLY | O_DIRECTORY), dev;
		CHECK(a >= 0);
		CHECK_EQ(ksock_id(a), 1);	/* bus 1's first Ksock */
		CHECK_EQ(chdir("/dev"), 0);
		b = open("kbus1", O_RDONLY);
		CHECK(b >= 0);
		CHECK_EQ(ksock_id(b), 2);
		dev = open("/dev", O_RDONLY | O_DIRECTORY);
		c = openat(dev, "kbus1", O_RDONLY);
		CHECK(c >= 0);
		CHECK_EQ(ksock_id(c), 3);
		CHECK_EQ(fchdir(cwd), 0);
		close(a);
		close(b);
		close(c);
		close(dev);
		close(cwd);
	}

	/* read on write-only, write on read-only: EBADF (§1.2-3). */
	{
		int w = open_dev(0, O_WRONLY), r = open_dev(0, O_RDONLY);
		char buf[8];
		CHECK_FAILS(read(w, buf, sizeof buf), EBADF);
		CHECK_FAILS(write(r, "x", 1), EBADF);
		/* Other operations are allowed in any mode. */
		CHECK(ksock_id(w) > 0);
		CHECK_EQ(kbus_ksock_bind(r, "$.ReadOnly", 1), 0);
		close(w);
		close(r);
	}

	CHECK_EQ(close(f), 0);
	CHECK_FAILS(close(f), EBADF);
	CHECK_FAILS(ioctl(f, KBUS_IOC_KSOCKID, &v), EBADF);
	CHECK_EQ(close(s), 0);
}

/* ---- rw: partial writes and reads, LENLEFT, NEXTMSG (§4.2, §4.3) ---- */

static void scenario_rw(void)
{
	int l = open_dev(0, O_RDWR), w = open_dev(0, O_RDWR);
	kbus_message_t *m = NULL, *got = NULL;
	const uint32_t len = KBUS_ENTIRE_MSG_LEN(6, 10);
	unsigned char *bytes;
	unsigned char buf[512];
	uint32_t v, i;
	kbus_msg_id_t id;
	ssize_t n;

	CHECK_EQ(kbus_ksock_bind(l, "$.Part", 0), 0);
	CHECK_EQ(kbus_msg_create_entire(&m, "$.Part", 6, "0123456789", 10, 0), 0);
	CHECK_EQ(len, 112);
	bytes = (unsigned char *)m;

	/* A write one byte at a time (§4.2-8). */
	for (i = 0; i < len; i++)
		CHECK_EQ(write(w, bytes + i, 1), 1);
	CHECK_EQ(kbus_ksock_send(w, &id), 0);

	/* A read one byte at a time, LENLEFT exact at every position (§4.3,
	 * §14-3). */
	v = 0;
	CHECK_EQ(kbus_ksock_next_msg(l, &v), 1);
	CHECK_EQ(v, len);
	for (i = 0; i < len; i++) {
		uint32_t left = 0;
		CHECK_EQ(kbus_ksock_len_left(l, &left), 0);
		CHECK_EQ(left, len - i);
		CHECK_EQ(read(l, buf + i, 1), 1);
	}
	CHECK_EQ(kbus_ksock_len_left(l, &v), 0);
	CHECK_EQ(v, 0);
	CHECK_EQ(read(l, buf, 1), 0);	/* EOF: the message is released */
	got = (kbus_message_t *)buf;
	CHECK(has_name(got, "$.Part"));
	CHECK(has_data(got, "0123456789", 10));
	CHECK_EQ(got->id.serial_num, id.serial_num);
	CHECK_EQ(*kbus_msg_end_ptr((kbus_entire_message_t *)buf), KBUS_MSG_END_GUARD);

	/* Odd-sized pieces; reads of 50: 50, 50, 12, then 0. */
	CHECK_EQ(write(w, bytes, 7), 7);
	CHECK_EQ(write(w, bytes + 7, 33), 33);
	CHECK_EQ(write(w, bytes + 40, len - 40), len - 40);
	CHECK_EQ(kbus_ksock_send(w, &id), 0);
	CHECK_EQ(kbus_ksock_next_msg(l, &v), 1);
	{
		/* A count not known at compile time: with _FORTIFY_SOURCE this
		 * read() is __read_chk. */
		volatile size_t fifty = 50;
		CHECK_EQ(read(l, buf, fifty), 50);
		CHECK_EQ(read(l, buf + 50, fifty), 50);
		CHECK_EQ(read(l, buf + 100, fifty), 12);
		CHECK_EQ(read(l, buf, fifty), 0);
	}
	CHECK(has_data((kbus_message_t *)buf, "0123456789", 10));

	/* NEXTMSG while a message is current discards it (§4.3-5). */
	CHECK_EQ(send_entire(w, "$.Part", "first", 0, NULL), 0);
	CHECK_EQ(send_entire(w, "$.Part", "second!", 0, NULL), 0);
	CHECK_EQ(kbus_ksock_next_msg(l, &v), 1);
	CHECK_EQ(read(l, buf, 10), 10);
	CHECK_EQ(kbus_ksock_next_msg(l, &v), 1);
	CHECK_EQ(v, KBUS_ENTIRE_MSG_LEN(6, 7));
	CHECK_EQ(read(l, buf, sizeof buf), v);
	CHECK(has_data((kbus_message_t *)buf, "second!", 7));
	CHECK_EQ(kbus_ksock_next_msg(l, &v), 0);
	CHECK_EQ(read(l, buf, sizeof buf), 0);	/* no current message */

	/* Write errors discard the partial message (§4.2-4..7). */
	{
		kbus_message_t bad = *m;
		bad.start_guard = 0x12345678;
		CHECK_FAILS(write(w, &bad, sizeof bad), EINVAL);
		CHECK_FAILS(ioctl(w, KBUS_IOC_SEND, &id), ENOMSG);
	}
	{
		unsigned char *extra = malloc(len + 4);
		memcpy(extra, bytes, len);
		memcpy(extra + len, "junk", 4);
		CHECK_FAILS(write(w, extra, len + 4), EMSGSIZE);
		CHECK_FAILS(ioctl(w, KBUS_IOC_SEND, &id), ENOMSG);
		free(extra);
	}
	{
		kbus_message_t *badname = NULL;
		CHECK_EQ(kbus_msg_create_entire(&badname, "$.bad.", 6, NULL, 0, 0), 0);
		CHECK_FAILS(write(w, badname, kbus_msg_sizeof(badname)), EBADMSG);
		kbus_msg_delete(&badname);
	}
	{
		static char large[3000];
		kbus_message_t *toobig = NULL;
		memset(large, 'x', sizeof large);
		CHECK_EQ(kbus_msg_create_entire(&toobig, "$.Part", 6, large, sizeof large, 0), 0);
		/* Larger than the bus's 1024 bytes: refused at the header. */
		CHECK_FAILS(write(w, toobig, kbus_msg_sizeof(toobig)), EMSGSIZE);
		kbus_msg_delete(&toobig);
	}
	/* A message begun and discarded: nothing to send. */
	CHECK_EQ(write(w, "K", 1), 1);
	CHECK_EQ(ioctl(w, KBUS_IOC_DISCARD, 0), 0);
	CHECK_FAILS(ioctl(w, KBUS_IOC_SEND, &id), ENOMSG);

	/* A message longer than a frame of the protocol, in one write. */
	{
		const uint32_t size = 200000;
		char *data = malloc(size);
		kbus_message_t *huge = NULL;
		uint32_t limit = 300000;
		unsigned char *in;
		for (i = 0; i < size; i++)
			data[i] = (char)('a' + i % 26);
		CHECK_EQ(kbus_ksock_max_message_size(w, &limit), 0);
		CHECK_EQ(limit, 300000);
		CHECK_EQ(kbus_msg_create_entire(&huge, "$.Part", 6, data, size, 0), 0);
		n = write(w, huge, kbus_msg_sizeof(huge));
		CHECK_EQ(n, kbus_msg_sizeof(huge));
		CHECK_EQ(kbus_ksock_send(w, &id), 0);
		CHECK_EQ(kbus_ksock_next_msg(l, &v), 1);
		CHECK_EQ(v, kbus_msg_sizeof(huge));
		in = malloc(v);
		CHECK_EQ(read(l, in, v), v);
		CHECK(has_data((kbus_message_t *)in, data, size));
		free(in);
		free(data);
		kbus_msg_delete(&huge);
	}

	/* Pointy messages (§3.4): the pointers are followed at SEND. */
	{
		char name[] = "$.Part";
		char data[] = "before";
		kbus_message_t *p = NULL;
		CHECK_EQ(kbus_msg_create(&p, name, 6, data, 6, 0), 0);
		CHECK_EQ(write(w, p, sizeof *p), sizeof *p);
		memcpy(data, "after!", 6);
		CHECK_EQ(kbus_ksock_send(w, &id), 0);
		got = next(l);
		CHECK(has_data(got, "after!", 6));
		kbus_msg_delete(&got);
		/* Complete at its header: one more byte is EMSGSIZE. */
		CHECK_EQ(write(w, p, sizeof *p), sizeof *p);
		CHECK_FAILS(write(w, "x", 1), EMSGSIZE);
		/* A bad name pointer: SEND fails with EFAULT. */
		p->name = (char *)16;
		CHECK_EQ(write(w, p, sizeof *p), sizeof *p);
		CHECK_FAILS(ioctl(w, KBUS_IOC_SEND, &id), EFAULT);
		CHECK_FAILS(ioctl(w, KBUS_IOC_SEND, &id), ENOMSG);	/* dropped */
		/* Inconsistent pointers: EINVAL at write. */
		p->name = name;
		p->data = NULL;
		CHECK_FAILS(write(w, p, sizeof *p), EINVAL);
		kbus_msg_delete(&p);
	}
	CHECK_EQ(num_messages(l), 0);

	/* A bad buffer is EFAULT. */
	{
		const void *volatile nowhere = (const void *)8;
		CHECK_FAILS(write(w, nowhere, 10), EFAULT);
	}

	/* fopen(): a stream on the device; fileno() for its ioctls. */
	{
		FILE *f = fopen("/dev/kbus0", "r+");
		int fd;
		CHECK(f != NULL);
		if (f) {
			fd = fileno(f);
			CHECK(fd >= 0);
			CHECK_EQ(kbus_ksock_bind(fd, "$.Stream", 0), 0);
			CHECK_EQ(fwrite(bytes, 1, len, f), len);
			CHECK_EQ(fflush(f), 0);
			CHECK_EQ(kbus_ksock_send(fd, &id), 0);	/* "$.Part": l gets it */
			CHECK_EQ(send_entire(w, "$.Stream", "via stdio", 0, NULL), 0);
			CHECK_EQ(kbus_ksock_next_msg(fd, &v), 1);
			CHECK_EQ(fread(buf, 1, v, f), v);
			CHECK(has_data((kbus_message_t *)buf, "via stdio", 9));
			CHECK_EQ(fclose(f), 0);
		}
		got = next(l);
		CHECK(has_data(got, "0123456789", 10));
		kbus_msg_delete(&got);
	}
	errno = 0;
	CHECK(fopen("/dev/kbus9", "r") == NULL);
	CHECK_EQ(errno, ENOENT);

	kbus_msg_delete(&m);
	close(l);
	close(w);
}

/* ---- poll: readiness is §4.4's ---- */

static void scenario_poll(void)
{
	int l = open_dev(0, O_RDWR), s = open_dev(0, O_RDWR), ro = open_dev(0, O_RDONLY);
	kbus_msg_id_t id, last;
	kbus_message_t *m;
	uint32_t v;
	fd_set rd, wr;
	struct timeval tv = {0, 0};

	CHECK_EQ(kbus_ksock_bind(l, "$.Poll", 0), 0);
	/* Empty queue: writable, not readable; read-only: never writable. */
	CHECK_EQ(poll_events(l), POLLOUT);
	CHECK_EQ(poll_events(ro), 0);
	CHECK_EQ(send_entire(s, "$.Poll", "1", 0, NULL), 0);
	CHECK_EQ(poll_events(l), POLLIN | POLLOUT);
	FD_ZERO(&rd);
	FD_ZERO(&wr);
	FD_SET(l, &rd);
	FD_SET(ro, &wr);
	CHECK_EQ(select((l > ro ? l : ro) + 1, &rd, &wr, NULL, &tv), 1);
	CHECK(FD_ISSET(l, &rd));
	CHECK(!FD_ISSET(ro, &wr));
	CHECK_EQ(kbus_wait_for_message(l, KBUS_KSOCK_READABLE), KBUS_KSOCK_READABLE);
	{
		/* epoll sees the same. */
		int ep = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event ev = {EPOLLIN, {0}}, out;
		CHECK_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev), 0);
		CHECK_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, ro, &ev), 0);
		ev.data.fd = l;
		CHECK_EQ(epoll_ctl(ep, EPOLL_CTL_MOD, l, &ev), 0);
		CHECK_EQ(epoll_wait(ep, &out, 1, 0), 1);
		CHECK_EQ(out.data.fd, l);
		close(ep);
	}
	/* The current read message does not count. */
	CHECK_EQ(kbus_ksock_next_msg(l, &v), 1);
	CHECK_EQ(poll_events(l), POLLOUT);

	/* ALL_OR_WAIT (§5.5): l's queue of 1 is full, so s's send is pending:
	 * s is not writable and writes are EALREADY, until l makes room. */
	v = 1;
	CHECK_EQ(kbus_ksock_max_messages(l, &v), 0);
	CHECK_EQ(send_entire(s, "$.Poll", "2", 0, NULL), 0);
	CHECK_EQ(send_entire(s, "$.Poll", "3", KBUS_BIT_ALL_OR_WAIT, &id), -EAGAIN);
	CHECK(id.serial_num > 0);
	CHECK_EQ(kbus_ksock_last_msg_id(s, &last), 0);
	CHECK_EQ(last.serial_num, id.serial_num);
	CHECK_EQ(poll_events(s), 0);
	CHECK_FAILS(write(s, "x", 1), EALREADY);
	CHECK_EQ(poll_events(s), 0);	/* the pending message is intact (§14-2) */
	m = next(l);	/* "2" out: room for "3" */
	CHECK(has_data(m, "2", 1));
	kbus_msg_delete(&m);
	CHECK_EQ(kbus_wait_for_message(s, KBUS_KSOCK_WRITABLE), KBUS_KSOCK_WRITABLE);
	CHECK_EQ(poll_events(s), POLLOUT);
	CHECK_EQ(poll_events(l), POLLIN | POLLOUT);
	m = next(l);
	CHECK(has_data(m, "3", 1));
	CHECK_EQ(m ? m->id.serial_num : 0, id.serial_num);
	kbus_msg_delete(&m);

	/* DISCARD of a pending send makes the Ksock writable again. */
	CHECK_EQ(send_entire(s, "$.Poll", "4", 0, NULL), 0);
	CHECK_EQ(send_entire(s, "$.Poll", "5", KBUS_BIT_ALL_OR_WAIT, &id), -EAGAIN);
	CHECK_EQ(poll_events(s), 0);
	CHECK_EQ(kbus_ksock_discard(s), 0);
	CHECK_EQ(poll_events(s), POLLOUT);
	m = next(l);
	CHECK(has_data(m, "4", 1));
	kbus_msg_delete(&m);
	CHECK_EQ(poll_events(l), POLLOUT);

	close(l);
	close(s);
	close(ro);
}

/* ---- threads: one descriptor, two threads ---- */

#define THREAD_MESSAGES 300

struct shared {
	int fd;
	int received;
	int in_order;
};

/* Blocks in poll() on the descriptor and reads what arrives. */
static void *reader(void *arg)
{
	struct shared *sh = arg;
	while (sh->received < THREAD_MESSAGES) {
		kbus_message_t *m = NULL;
		char want[32];
		int rv = kbus_wait_for_message(sh->fd, KBUS_KSOCK_READABLE);
		if (rv < 0)
			break;
		if (kbus_ksock_read_next_msg(sh->fd, &m) < 0 || m == NULL)
			continue;
		snprintf(want, sizeof want, "%d", sh->received);
		if (!has_data(m, want, (uint32_t)strlen(want)))
			sh->in_order = 0;
		sh->received++;
		kbus_msg_delete(&m);
	}
	return NULL;
}

static void scenario_threads(void)
{
	struct shared sh = {open_dev(0, O_RDWR), 0, 1};
	uint32_t id = ksock_id(sh.fd), v;
	pthread_t t;
	int i;

	CHECK_EQ(kbus_ksock_bind(sh.fd, "$.Thread", 0), 0);
	v = THREAD_MESSAGES + 10;
	CHECK_EQ(kbus_ksock_max_messages(sh.fd, &v), 0);
	CHECK_EQ(pthread_create(&t, NULL, reader, &sh), 0);
	/* Meanwhile this thread sends to itself and asks questions on the
	 * same descriptor. */
	for (i = 0; i < THREAD_MESSAGES; i++) {
		char data[32];
		kbus_msg_id_t last;
		snprintf(data, sizeof data, "%d", i);
		CHECK_EQ(send_entire(sh.fd, "$.Thread", data, 0, NULL), 0);
		CHECK_EQ(ksock_id(sh.fd), id);
		CHECK_EQ(kbus_ksock_last_msg_id(sh.fd, &last), 0);
		CHECK_EQ(kbus_ksock_num_messages(sh.fd, &v), 0);
	}
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(sh.received, THREAD_MESSAGES);
	CHECK(sh.in_order);
	CHECK_EQ(num_messages(sh.fd), 0);
	close(sh.fd);
}

/* ---- fork: the Ksock stays the parent's (docs/decisions.md D19) ---- */

static void scenario_fork(void)
{
	int f = open_dev(0, O_RDWR);
	uint32_t id = ksock_id(f), v;
	kbus_message_t *m;
	pid_t pid;
	int status = -1;

	CHECK_EQ(kbus_ksock_bind(f, "$.Fork", 0), 0);
	pid = fork();
	if (pid == 0) {
		int own;
		char buf[8];
		failures = 0;
		/* The inherited descriptor is not usable here... */
		CHECK_FAILS(ioctl(f, KBUS_IOC_KSOCKID, &v), ENXIO);
		CHECK_FAILS(read(f, buf, sizeof buf), ENXIO);
		CHECK_FAILS(write(f, "x", 1), ENXIO);
		/* ...a Ksock of its own is, and reaches the parent's. */
		own = open_dev(0, O_RDWR);
		CHECK(ksock_id(own) != id);
		CHECK_EQ(send_entire(own, "$.Fork", "from the child", 0, NULL), 0);
		CHECK_EQ(close(own), 0);
		/* Closing the inherited copy leaves the parent's Ksock open. */
		CHECK_EQ(close(f), 0);
		_exit(failures ? 1 : 0);
	}
	CHECK(pid > 0);
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The parent's Ksock works on, its binding and queue intact. */
	CHECK_EQ(ksock_id(f), id);
	CHECK_EQ(num_messages(f), 1);
	m = next(f);
	CHECK(has_data(m, "from the child", 14));
	kbus_msg_delete(&m);
	CHECK_EQ(send_entire(f, "$.Fork", "still bound", 0, NULL), 0);
	m = next(f);
	CHECK(has_data(m, "still bound", 11));
	kbus_msg_delete(&m);
	close(f);
}

/* ---- dup: descriptors share the open file; the last close closes ---- */

static uint32_t replier_of(int fd, const char *name)
{
	uint32_t id = 0;
	CHECK_EQ(kbus_ksock_find_replier(fd, name, &id), 0);
	return id;
}

static void scenario_dup(void)
{
	int f = open_dev(0, O_RDONLY), obs = open_dev(0, O_RDWR);
	uint32_t id = ksock_id(f);
	int g, h, j, p[2], c, status;
	char cmd[128];
	pid_t pid;

	CHECK_EQ(kbus_ksock_bind(f, "$.Dup", 1), 0);
	g = dup(f);
	h = fcntl(f, F_DUPFD, 100);
	CHECK(g >= 0);
	CHECK(h >= 100);
	CHECK_EQ(dup2(f, 200), 200);
	j = dup3(f, 201, O_CLOEXEC);
	CHECK_EQ(j, 201);
	CHECK_EQ(ksock_id(g), id);
	CHECK_EQ(ksock_id(h), id);
	CHECK_EQ(ksock_id(200), id);
	CHECK_EQ(ksock_id(201), id);
	CHECK_FAILS(dup3(f, 202, O_NONBLOCK), EINVAL);
	CHECK_EQ(dup2(f, f), f);

	/* Descriptor flags are each descriptor's; the status flags the open
	 * file's, with its access mode. */
	CHECK_EQ(fcntl(f, F_GETFD), 0);
	CHECK_EQ(fcntl(201, F_GETFD), FD_CLOEXEC);
	CHECK_EQ(fcntl(g, F_SETFD, FD_CLOEXEC), 0);
	CHECK_EQ(fcntl(g, F_GETFD), FD_CLOEXEC);
	CHECK_EQ(fcntl(f, F_GETFD), 0);
	CHECK_EQ(ioctl(g, FIONCLEX), 0);
	CHECK_EQ(fcntl(g, F_GETFD), 0);
	CHECK_EQ(ioctl(g, FIOCLEX), 0);
	CHECK_EQ(fcntl(g, F_GETFD), FD_CLOEXEC);
	CHECK_EQ(fcntl(f, F_GETFL) & O_ACCMODE, O_RDONLY);
	CHECK_EQ(fcntl(f, F_SETFL, O_NONBLOCK), 0);
	CHECK(fcntl(h, F_GETFL) & O_NONBLOCK);
	CHECK_EQ(fcntl(obs, F_GETFL) & O_ACCMODE, O_RDWR);
	{
		int wo = open("/dev/kbus0", O_WRONLY | O_CLOEXEC | O_NONBLOCK);
		CHECK_EQ(fcntl(wo, F_GETFD), FD_CLOEXEC);
		CHECK_EQ(fcntl(wo, F_GETFL) & (O_ACCMODE | O_NONBLOCK), O_WRONLY | O_NONBLOCK);
		close(wo);
	}

	/* A KBUS descriptor does not survive exec: its Ksock lives in this
	 * process (docs/decisions.md D19). */
	snprintf(cmd, sizeof cmd, "test ! -e /proc/self/fd/%d", f);
	pid = fork();
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* Closing all but one leaves the Ksock open... */
	CHECK_EQ(replier_of(obs, "$.Dup"), id);
	CHECK_EQ(close(f), 0);
	CHECK_EQ(close(g), 0);
	CHECK_EQ(close(h), 0);
	CHECK_EQ(close(200), 0);
	CHECK_EQ(replier_of(obs, "$.Dup"), id);
	CHECK_EQ(ksock_id(201), id);
	/* ...and replacing the last one with dup2 closes it (§7.2). */
	CHECK_EQ(pipe(p), 0);
	CHECK_EQ(dup2(p[0], 201), 201);
	CHECK_EQ(replier_of(obs, "$.Dup"), 0);
	CHECK_FAILS(ioctl(201, KBUS_IOC_KSOCKID, &id), ENOTTY);	/* a pipe now */
	close(201);
	close(p[0]);
	close(p[1]);

	/* dup2 onto a KBUS descriptor from a plain one, and fcntl dups. */
	c = open_dev(0, O_RDWR);
	CHECK_EQ(kbus_ksock_bind(c, "$.Dup2", 1), 0);
	h = fcntl(c, F_DUPFD_CLOEXEC, 0);
	CHECK_EQ(fcntl(h, F_GETFD), FD_CLOEXEC);
	CHECK_EQ(close(c), 0);
	CHECK(replier_of(obs, "$.Dup2") != 0);
	CHECK_EQ(close(h), 0);
	CHECK_EQ(replier_of(obs, "$.Dup2"), 0);

	/* A descriptor closed behind the library's back (close_range is a
	 * system call of its own) and its number reused: the new file is left
	 * alone, and the Ksock is closed once that is seen. */
	c = open_dev(0, O_RDWR);
	CHECK_EQ(kbus_ksock_bind(c, "$.Stale", 1), 0);
	CHECK_EQ(pipe(p), 0);
	CHECK_EQ(close_range((unsigned)c, (unsigned)c, 0), 0);
	CHECK_EQ(fcntl(p[0], F_DUPFD, c), c);	/* c is free: the pipe gets it */
	CHECK_EQ(write(p[1], "abc", 3), 3);
	{
		char three[3];
		CHECK_EQ(read(c, three, 3), 3);
		CHECK(memcmp(three, "abc", 3) == 0);
	}
	CHECK_EQ(replier_of(obs, "$.Stale"), 0);
	CHECK_EQ(close(c), 0);
	close(p[0]);
	close(p[1]);
	close(obs);
}

/* ---- killed: a replier that dies in the middle of writing its reply ---- */

static void scenario_killed(void)
{
	int f = open_dev(0, O_RDWR);
	kbus_message_t *req = NULL, *reply = NULL;
	char buf[1];

	CHECK_EQ(kbus_ksock_bind(f, "$.Kill.Me", 1), 0);
	printf("bound\n");
	fflush(stdout);
	CHECK_EQ(kbus_wait_for_message(f, KBUS_KSOCK_READABLE), KBUS_KSOCK_READABLE);
	req = next(f);
	CHECK(req && (req->flags & KBUS_BIT_WANT_YOU_TO_REPLY));
	if (req)
		CHECK_EQ(kbus_msg_create_entire_reply_to(&reply, req, "never sent", 10, 0), 0);
	/* Half the reply's header, then wait to be killed. */
	if (reply)
		CHECK_EQ(write(f, reply, 40), 40);
	printf(failures ? "failed\n" : "ready\n");
	fflush(stdout);
	while (read(0, buf, 1) > 0)
		;
}

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "";

	if (!strcmp(what, "ioctls"))
		scenario_ioctls();
	else if (!strcmp(what, "rw"))
		scenario_rw();
	else if (!strcmp(what, "poll"))
		scenario_poll();
	else if (!strcmp(what, "threads"))
		scenario_threads();
	else if (!strcmp(what, "fork"))
		scenario_fork();
	else if (!strcmp(what, "dup"))
		scenario_dup();
	else if (!strcmp(what, "killed"))
		scenario_killed();
	else {
		fprintf(stderr, "usage: dev_c_test ioctls|rw|poll|threads|fork|dup|killed\n");
		return 2;
	}
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
