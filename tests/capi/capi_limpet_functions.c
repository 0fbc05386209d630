/* capi_limpet_functions.c - every function of the original Limpet library
 * (<libkbus/limpet.h>, KBUS-SPEC.md §10.7), with its return conventions
 * and error paths, against a running kbusd.
 *
 * Written as a C program for the original would be: <libkbus/kbus.h>,
 * <libkbus/limpet.h> and POSIX only. It plays both the bus clients and the
 * "other limpet" (whose messages it makes by hand), on bus 0 of the kbusd
 * in $KBUS_DIR, and exits 0 if every check passed, else 1, listing each
 * failed check. Every send is complete when it returns (the bus is exact),
 * so what a Ksock has queued can be read at once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libkbus/kbus.h>
#include <libkbus/limpet.h>

#include "../common/check.h"

#define OUR_NET 5
#define PEER_NET 9

static int name_is(const kbus_message_t *msg, const char *name)
{
	return msg && msg->name_len == strlen(name) &&
	       memcmp(kbus_msg_name_ptr(msg), name, msg->name_len) == 0;
}

/* The first message named `name` in the queue of `ksock`, dropping those
 * before it; NULL if there is none. */
static kbus_message_t *read_named(kbus_ksock_t ksock, const char *name)
{
	for (;;) {
		kbus_message_t *msg = NULL;
		if (kbus_ksock_read_next_msg(ksock, &msg) < 0 || !msg)
			return NULL;
		if (name_is(msg, name))
			return msg;
		kbus_msg_delete(&msg);
	}
}

static uint32_t ksock_id(kbus_ksock_t k)
{
	uint32_t id = 0;
	kbus_ksock_id(k, &id);
	return id;
}

/* A ReplierBindEvent as the other limpet's would arrive (host order). */
static kbus_message_t *bind_event(uint32_t is_bind, uint32_t binder, const char *name)
{
	uint32_t name_len = (uint32_t)strlen(name);
	uint32_t data_len = 12 + KBUS_PADDED_NAME_LEN(name_len);
	uint8_t *data = calloc(1, data_len);
	kbus_message_t *msg = NULL;
	memcpy(data, &is_bind, 4);
	memcpy(data + 4, &binder, 4);
	memcpy(data + 8, &name_len, 4);
	memcpy(data + 12, name, name_len);
	kbus_msg_create_entire(&msg, KBUS_MSG_NAME_REPLIER_BIND_EVENT,
			       (uint32_t)strlen(KBUS_MSG_NAME_REPLIER_BIND_EVENT), data, data_len, 0);
	free(data);
	return msg;
}

static void test_serialisation(void)
{
	kbus_message_t *msg = NULL, back;
	uint32_t words[KBUS_SERIALISED_HDR_LEN];
	CHECK_EQ(KBUS_SERIALISED_HDR_LEN, 16);
	CHECK_EQ(kbus_msg_create_entire(&msg, "$.Fred", 6, "dada", 4, KBUS_BIT_WANT_A_REPLY), 0);
	msg->id.network_id = 1;
	msg->id.serial_num = 2;
	msg->in_reply_to.network_id = 3;
	msg->in_reply_to.serial_num = 4;
	msg->to = 5;
	msg->from = 6;
	msg->orig_from.network_id = 7;
	msg->orig_from.local_id = 8;
	msg->final_to.network_id = 9;
	msg->final_to.local_id = 10;
	msg->extra = 11;
	kbus_serialise_message_header(msg, words);
	/* §10.3: 16 big-endian words; the start guard reads "subK" on the wire. */
	CHECK(memcmp(&words[0], "subK", 4) == 0);
	CHECK_EQ(words[1], htonl(1));
	CHECK_EQ(words[6], htonl(6));
	CHECK_EQ(words[10], htonl(10));
	CHECK_EQ(words[12], htonl(KBUS_BIT_WANT_A_REPLY));
	CHECK_EQ(words[13], htonl(6));
	CHECK_EQ(words[14], htonl(4));
	CHECK_EQ(words[15], htonl(KBUS_MSG_END_GUARD));

	memset(&back, 0xFF, sizeof back);
	CHECK_EQ(kbus_unserialise_message_header(words, &back), 0);
	CHECK_EQ(back.start_guard, KBUS_MSG_START_GUARD);
	CHECK_EQ(back.id.serial_num, 2);
	CHECK_EQ(back.in_reply_to.serial_num, 4);
	CHECK_EQ(back.to, 5);
	CHECK_EQ(back.orig_from.local_id, 8);
	CHECK_EQ(back.final_to.network_id, 9);
	CHECK_EQ(back.extra, 11);
	CHECK_EQ(back.name_len, 6);
	CHECK_EQ(back.data_len, 4);
	CHECK_EQ(back.end_guard, KBUS_MSG_END_GUARD);
	CHECK(back.name == NULL && back.data == NULL);

	words[15] = 0; /* a broken end guard */
	CHECK_EQ(kbus_unserialise_message_header(words, &back), -EINVAL);
	CHECK_EQ(kbus_unserialise_message_header(NULL, &back), -EFAULT);
	CHECK_EQ(kbus_unserialise_message_header(words, NULL), -EFAULT);
	kbus_msg_delete(&msg);
}

static void test_bind_event_order(void)
{
	kbus_message_t *ev = bind_event(1, 0x01020304, "$.Fred"), *other = NULL;
	uint32_t w;
	const uint8_t *d = kbus_msg_data_ptr(ev);
	kbus_limpet_ReplierBindEvent_hton(ev);
	memcpy(&w, d, 4);
	CHECK_EQ(w, htonl(1));
	memcpy(&w, d + 4, 4);
	CHECK_EQ(w, htonl(0x01020304));
	memcpy(&w, d + 8, 4);
	CHECK_EQ(w, htonl(6));
	CHECK(memcmp(d + 12, "$.Fred", 6) == 0); /* the name is not touched */
	kbus_limpet_ReplierBindEvent_ntoh(ev);
	memcpy(&w, d + 4, 4);
	CHECK_EQ(w, 0x01020304);
	kbus_msg_delete(&ev);

	/* Any other message is left alone; NULL is ignored. */
	kbus_msg_create_entire(&other, "$.Fred", 6, "\1\0\0\0\2\0\0\0\3\0\0\0", 12, 0);
	kbus_limpet_ReplierBindEvent_hton(other);
	memcpy(&w, kbus_msg_data_ptr(other), 4);
	CHECK_EQ(w, 1);
	kbus_msg_delete(&other);
	kbus_limpet_ReplierBindEvent_hton(NULL);
	kbus_limpet_ReplierBindEvent_ntoh(NULL);
}

static void test_new_context_errors(kbus_ksock_t k)
{
	kbus_limpet_context_t *ctx = (kbus_limpet_context_t *)&ctx;
	CHECK_EQ(kbus_limpet_new_context(k, OUR_NET, PEER_NET, NULL, 0, &ctx), -EBADMSG);
	CHECK(ctx == NULL);
	CHECK_EQ(kbus_limpet_new_context(k, OUR_NET, PEER_NET, "$.", 0, &ctx), -EBADMSG);
	CHECK_EQ(kbus_limpet_new_context(k, OUR_NET, PEER_NET, "$.*", 0, NULL), -EFAULT);
	CHECK_EQ(kbus_limpet_new_context(k, 0, PEER_NET, "$.*", 0, &ctx), -EINVAL);
	CHECK_EQ(kbus_limpet_new_context(k, OUR_NET, 0, "$.*", 0, &ctx), -EINVAL);
	CHECK_EQ(kbus_limpet_new_context(k, OUR_NET, OUR_NET, "$.*", 0, &ctx), -EINVAL);
	CHECK_EQ(kbus_limpet_new_context(12345, OUR_NET, PEER_NET, "$.*", 0, &ctx), -EBADF);
	/* A name KBUS refuses fails at its BIND. */
	CHECK_EQ(kbus_limpet_new_context(k, OUR_NET, PEER_NET, "$.Fred.", 0, &ctx), -EBADMSG);
	CHECK(ctx == NULL);
	/* Freeing nothing is harmless. */
	kbus_limpet_free_context(NULL);
	kbus_limpet_free_context(&ctx);
	CHECK(ctx == NULL);
	kbus_limpet_set_verbosity(NULL, 2);
}

static void test_limpet(void)
{
	kbus_ksock_t l = kbus_ksock_open(0, O_RDWR); /* the limpet's Ksock */
	kbus_ksock_t q = kbus_ksock_open(0, O_RDWR); /* a requester */
	kbus_ksock_t q2 = kbus_ksock_open(0, O_RDWR);
	kbus_ksock_t s = kbus_ksock_open(0, O_RDWR); /* a local replier */
	kbus_limpet_context_t *ctx = NULL;
	kbus_message_t *msg = NULL, *error = (kbus_message_t *)&error, *req = NULL;
	uint32_t replier = 0, lid, qid;
	kbus_msg_id_t id, stamped;
	int rv;

	CHECK(l >= 0 && q >= 0 && q2 >= 0 && s >= 0);
	test_new_context_errors(l);
	lid = ksock_id(l);
	qid = ksock_id(q);
	CHECK_EQ(kbus_limpet_new_context(l, OUR_NET, PEER_NET, "$.*", 0, &ctx), 0);
	CHECK(ctx != NULL);
	kbus_limpet_set_verbosity(ctx, 0);
	CHECK_EQ(kbus_limpet_amend_msg_from_kbus(NULL, msg), -EFAULT);
	CHECK_EQ(kbus_limpet_amend_msg_to_kbus(ctx, NULL, &error), -EFAULT);

	/* §10.5-1: the other side's replier bind event makes a proxy here. */
	msg = bind_event(1, 42, "$.Proxy");
	CHECK_EQ(kbus_limpet_amend_msg_to_kbus(ctx, msg, &error), 1);
	CHECK(error == NULL);
	kbus_msg_delete(&msg);
	CHECK_EQ(kbus_ksock_find_replier(q, "$.Proxy", &replier), 0);
	CHECK_EQ(replier, lid);
	/* §10.4-2: the event KBUS reports for that proxy binding is ignored. */
	msg = read_named(l, KBUS_MSG_NAME_REPLIER_BIND_EVENT);
	CHECK(msg != NULL);
	if (msg)
		CHECK_EQ(kbus_limpet_amend_msg_from_kbus(ctx, msg), 1);
	kbus_msg_delete(&msg);

	/* §10.4-3/5/6: a Request for the proxy is forwarded, stamped. */
	CHECK_EQ(kbus_msg_create_request(&req, "$.Proxy", 7, "q?", 2, 0), 0);
	CHECK_EQ(kbus_ksock_send_msg(q, req, &id), 0);
	kbus_msg_delete(&req);
	msg = read_named(l, "$.Proxy");
	CHECK(msg != NULL && kbus_msg_wants_us_to_reply(msg));
	stamped.network_id = stamped.serial_num = 0;
	if (msg) {
		CHECK_EQ(kbus_limpet_amend_msg_from_kbus(ctx, msg), 0);
		CHECK_EQ(msg->id.network_id, OUR_NET);
		CHECK_EQ(msg->id.serial_num, id.serial_num);
		CHECK_EQ(msg->orig_from.network_id, OUR_NET);
		CHECK_EQ(msg->orig_from.local_id, qid);
		CHECK(memcmp(kbus_msg_data_ptr(msg), "q?", 2) == 0);
		stamped = msg->id;
	}
	kbus_msg_delete(&msg);

	/* An Announcement is forwarded, stamped. */
	CHECK_EQ(kbus_msg_create(&req, "$.News", 6, NULL, 0, 0), 0);
	CHECK_EQ(kbus_ksock_send_msg(q, req, &id), 0);
	kbus_msg_delete(&req);
	msg = read_named(l, "$.News");
	CHECK(msg != NULL);
	if (msg) {
		CHECK_EQ(kbus_limpet_amend_msg_from_kbus(ctx, msg), 0);
		CHECK_EQ(msg->id.network_id, OUR_NET);
	}
	kbus_msg_delete(&msg);

	/* §10.5-2: the answer from the other side goes to the requester. */
	CHECK_EQ(kbus_msg_create_entire(&msg, "$.Proxy", 7, "yes", 3, 0), 0);
	msg->in_reply_to = stamped;
	msg->to = 77; /* the other limpet's Ksock over there */
	msg->id.network_id = PEER_NET;
	msg->id.serial_num = 500;
	CHECK_EQ(kbus_limpet_amend_msg_to_kbus(ctx, msg, &error), 0);
	CHECK(error == NULL);
	CHECK_EQ(msg->to, qid);
	CHECK_EQ(msg->id.network_id, 0);
	CHECK_EQ(msg->in_reply_to.network_id, 0);
	CHECK_EQ(msg->in_reply_to.serial_num, stamped.serial_num);
	CHECK_EQ(kbus_ksock_send_msg(l, msg, &id), 0);
	kbus_msg_delete(&msg);
	msg = read_named(q, "$.Proxy");
	CHECK(msg != NULL && kbus_msg_is_reply(msg));
	kbus_msg_delete(&msg);
	/* The record is gone: the same answer again is ignored. */
	CHECK_EQ(kbus_msg_create_entire(&msg, "$.Proxy", 7, "yes", 3, 0), 0);
	msg->in_reply_to = stamped;
	CHECK_EQ(kbus_limpet_amend_msg_to_kbus(ctx, msg, &error), 1);
	kbus_msg_delete(&msg);

	/* §10.5-3: Stateful Requests from the other side. */
	CHECK_EQ(kbus_ksock_bind(s, "$.Here", 1), 0);
	CHECK_EQ(kbus_msg_create_entire(&msg, "$.Nobody", 8, NULL, 0,
					KBUS_BIT_WANT_A_REPLY | KBUS_BIT_WANT_YOU_TO_REPLY), 0);
	msg->to = 99;
	msg->from = 4;
	msg->id.network_id = PEER_NET;
	msg->id.serial_num = 601;
	msg->final_to.network_id = OUR_NET;
	msg->final_to.local_id = 1000;
	CHECK_EQ(kbus_limpet_amend_msg_to_kbus(ctx, msg, &error), 2);
	CHECK(name_is(error, KBUS_MSG_NAME_REPLIER_GONEAWAY));
	if (error) {
		CHECK_EQ(error->to, 4);
		CHECK_EQ(error->in_reply_to.network_id, PEER_NET);
		CHECK_EQ(error->in_reply_to.serial_num, 601);
	}
	kbus_msg_delete(&error);
	kbus_msg_delete(&msg);

	CHECK_EQ(kbus_msg_create_entire(&msg, "$.Here", 6, NULL, 0,
					KBUS_BIT_WANT_A_REPLY | KBUS_BIT_WANT_YOU_TO_REPLY), 0);
	msg->to = 99;
	msg->from = 4;
	msg->id.network_id = PEER_NET;
	msg->id.serial_num = 602;
	msg->final_to.network_id = OUR_NET;
	msg->final_to.local_id = ksock_id(s) + 100;
	CHECK_EQ(kbus_limpet_amend_msg_to_kbus(ctx, msg, &error), 2);
	CHECK(name_is(error, KBUS_MSG_NOT_SAME_KSOCK));
	kbus_msg_delete(&error);
	msg->final_to.local_id = ksock_id(s);
	CHECK_EQ(kbus_limpet_amend_msg_to_kbus(ctx, msg, &error), 0);
	CHECK_EQ(msg->to, ksock_id(s));
	CHECK_EQ(msg->final_to.network_id, 0);
	CHECK_EQ(kbus_ksock_send_msg(l, msg, &id), 0);
	kbus_msg_delete(&msg);
	msg = read_named(s, "$.Here");
	CHECK(msg != NULL && kbus_msg_wants_us_to_reply(msg));
	kbus_msg_delete(&msg);

	/* A Request from the other side carrying our own network id: a loop. */
	CHECK_EQ(kbus_msg_create_entire(&msg, "$.Here", 6, NULL, 0,
					KBUS_BIT_WANT_A_REPLY | KBUS_BIT_WANT_YOU_TO_REPLY), 0);
	msg->id.network_id = OUR_NET;
	msg->id.serial_num = 603;
	CHECK_EQ(kbus_limpet_amend_msg_to_kbus(ctx, msg, &error), 2);
	CHECK(error && error->name_len == strlen(KBUS_MSG_REMOTE_ERROR_PREFIX) + 2 &&
	      !memcmp(kbus_msg_name_ptr(error), KBUS_MSG_REMOTE_ERROR_PREFIX "40", error->name_len));
	kbus_msg_delete(&error);
	kbus_msg_delete(&msg);

	/* §10.5-5: a Request KBUS refused: RemoteError.<errno> goes back. */
	CHECK_EQ(kbus_msg_create_entire(&msg, "$.Gone", 6, NULL, 0,
					KBUS_BIT_WANT_A_REPLY | KBUS_BIT_WANT_YOU_TO_REPLY), 0);
	msg->from = 4;
	msg->id.network_id = PEER_NET;
	msg->id.serial_num = 700;
	CHECK_EQ(kbus_limpet_amend_msg_to_kbus(ctx, msg, &error), 0);
	rv = kbus_ksock_send_msg(l, msg, &id);
	CHECK_EQ(rv, -EADDRNOTAVAIL);
	CHECK_EQ(kbus_limpet_could_not_send_to_kbus_msg(ctx, msg, rv, &error), 0);
	CHECK(error && error->name_len == strlen(KBUS_MSG_REMOTE_ERROR_PREFIX) + 2 &&
	      !memcmp(kbus_msg_name_ptr(error), KBUS_MSG_REMOTE_ERROR_PREFIX "99", error->name_len));
	if (error) {
		CHECK_EQ(error->to, 4);
		CHECK_EQ(error->in_reply_to.serial_num, 700);
	}
	kbus_msg_delete(&error);
	/* A positive errno means the same. */
	CHECK_EQ(kbus_limpet_could_not_send_to_kbus_msg(ctx, msg, EADDRNOTAVAIL, &error), 0);
	kbus_msg_delete(&error);
	/* -EAGAIN: pending, nothing to send back; errnum 0 is not an error. */
	CHECK_EQ(kbus_limpet_could_not_send_to_kbus_msg(ctx, msg, -EAGAIN, &error), 1);
	CHECK(error == NULL);
	CHECK_EQ(kbus_limpet_could_not_send_to_kbus_msg(ctx, msg, 0, &error), -EINVAL);
	CHECK_EQ(kbus_limpet_could_not_send_to_kbus_msg(ctx, msg, -EBUSY, NULL), -EFAULT);
	kbus_msg_delete(&msg);
	/* An Announcement that could not be sent: nothing to send back. */
	CHECK_EQ(kbus_msg_create_entire(&msg, "$.News", 6, NULL, 0, 0), 0);
	CHECK_EQ(kbus_limpet_could_not_send_to_kbus_msg(ctx, msg, -EBUSY, &error), 1);
	CHECK(error == NULL);
	kbus_msg_delete(&msg);

	/* D18: a second Request with the id of one still awaiting its answer
	 * through the limpet, from another requester, is answered here with
	 * RemoteError.<EADDRINUSE> and not forwarded. */
	/* (first, what the limpet heard of its own sends, as a listener) */
	CHECK(read_named(l, "$.No.Such.Name") == NULL);
	CHECK_EQ(kbus_msg_create_entire_request(&req, "$.Proxy", 7, NULL, 0, 0), 0);
	req->id.network_id = 3; /* a third network's id, kept by KBUS */
	req->id.serial_num = 1000;
	CHECK_EQ(kbus_ksock_send_msg(q, req, &id), 0);
	CHECK_EQ(kbus_ksock_send_msg(q2, req, &id), 0);
	kbus_msg_delete(&req);
	msg = read_named(l, "$.Proxy");
	CHECK(msg != NULL);
	if (msg)
		CHECK_EQ(kbus_limpet_amend_msg_from_kbus(ctx, msg), 0);
	kbus_msg_delete(&msg);
	msg = read_named(l, "$.Proxy");
	CHECK(msg != NULL);
	if (msg)
		CHECK_EQ(kbus_limpet_amend_msg_from_kbus(ctx, msg), 1);
	kbus_msg_delete(&msg);
	msg = read_named(q2, KBUS_MSG_REMOTE_ERROR_PREFIX "98");
	CHECK(msg != NULL && msg->in_reply_to.network_id == 3 && msg->in_reply_to.serial_num == 1000);
	kbus_msg_delete(&msg);

	/* §10.5-1: the unbind event removes the proxy. */
	msg = bind_event(0, 42, "$.Proxy");
	CHECK_EQ(kbus_limpet_amend_msg_to_kbus(ctx, msg, &error), 1);
	kbus_msg_delete(&msg);
	CHECK_EQ(kbus_ksock_find_replier(q, "$.Proxy", &replier), 0);
	CHECK_EQ(replier, 0);

	/* A closed Ksock: -EBADF. */
	kbus_ksock_close(l);
	CHECK_EQ(kbus_msg_create_entire(&msg, "$.News", 6, NULL, 0, 0), 0);
	CHECK_EQ(kbus_limpet_amend_msg_from_kbus(ctx, msg), -EBADF);
	kbus_msg_delete(&msg);
	kbus_limpet_free_context(&ctx);
	CHECK(ctx == NULL);
	kbus_ksock_close(q);
	kbus_ksock_close(q2);
	kbus_ksock_close(s);
}

int main(void)
{
	test_serialisation();
	test_bind_event_order();
	test_limpet();
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
