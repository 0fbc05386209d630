/* capi_threads.c - one kbus_ksock_t used by several threads at once, as an
 * fd of /dev/kbusN could be (KBUS-SPEC.md §1.2, §4; docs/protocol.md §4.4:
 * a thread blocked waiting never holds the Ksock from the others).
 *
 * Written as a C program for the original would be (<libkbus/kbus.h> and
 * POSIX threads only). It expects a kbusd with fresh buses in $KBUS_DIR
 * (tests/capi/capi_test.cpp starts one) and exits 0 if every check passed,
 * else 1, listing each failed check. Threads meet on messages and joins,
 * never on sleeps; each scenario runs many rounds, so the waiting thread is
 * sometimes already blocked when the others call, sometimes not.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libkbus/kbus.h>

#include "../common/check.h"

static kbus_ksock_t open_rw(uint32_t bus)
{
	kbus_ksock_t k = kbus_ksock_open(bus, O_RDWR);
	if (k < 0) {
		fprintf(stderr, "cannot open bus %u: %s\n", bus, strerror(-k));
		exit(2);
	}
	return k;
}

static int data_is(const kbus_message_t *msg, const char *text)
{
	size_t n = strlen(text);
	return msg->data_len == n && (n == 0 || memcmp(kbus_msg_data_ptr(msg), text, n) == 0);
}

static int name_is(const kbus_message_t *msg, const char *name)
{
	size_t n = strlen(name);
	return msg->name_len == n && memcmp(kbus_msg_name_ptr(msg), name, n) == 0;
}

static int send_text(kbus_ksock_t k, const char *name, const char *data, kbus_msg_id_t *id)
{
	kbus_message_t *m = NULL;
	int rc = kbus_msg_create_entire(&m, name, (uint32_t)strlen(name), data,
					(uint32_t)strlen(data), 0);
	if (rc < 0)
		return rc;
	rc = kbus_ksock_send_msg(k, m, id);
	kbus_msg_delete(&m);
	return rc;
}

static int id_less(kbus_msg_id_t a, kbus_msg_id_t b)
{
	return a.network_id < b.network_id ||
	       (a.network_id == b.network_id && a.serial_num < b.serial_num);
}

/* ---- a thread blocked waiting while another calls ---- */

struct waiter {
	kbus_ksock_t k;
	int batch; /* kbus_ksock_wait_for_msgs, else kbus_wait_for_message */
	int rc;
	kbus_message_t *msg;
};

static void *wait_one(void *arg)
{
	struct waiter *w = arg;
	if (w->batch) {
		size_t got = 0;
		kbus_message_t *msgs[1] = { NULL };
		w->rc = kbus_ksock_wait_for_msgs(w->k, msgs, 1, &got, -1);
		if (w->rc == 0 && got == 1)
			w->msg = msgs[0];
		return NULL;
	}
	w->rc = kbus_wait_for_message(w->k, KBUS_KSOCK_READABLE);
	if (w->rc == KBUS_KSOCK_READABLE)
		kbus_ksock_read_next_msg(w->k, &w->msg);
	return NULL;
}

static void test_wait_while_others_call(void)
{
	kbus_ksock_t k = open_rw(0);
	uint32_t id = 0, replier = 0, n = 99;
	int round;

	CHECK_EQ(kbus_ksock_bind(k, "$.T.Self", 0), 0);
	for (round = 0; round < 40; round++) {
		struct waiter w = { k, round % 2, 0, NULL };
		pthread_t t;
		kbus_msg_id_t sent;
		char data[32];

		CHECK_EQ(pthread_create(&t, NULL, wait_one, &w), 0);
		/* Calls on the same Ksock go on while the other thread waits. */
		CHECK_EQ(kbus_ksock_bind(k, "$.T.Other", 1), 0);
		CHECK_EQ(kbus_ksock_id(k, &id), 0);
		CHECK_EQ(kbus_ksock_find_replier(k, "$.T.Other", &replier), 0);
		CHECK_EQ(replier, id);
		CHECK_EQ(kbus_ksock_num_messages(k, &n), 0);
		CHECK_EQ(n, 0);
		CHECK_EQ(kbus_ksock_unbind(k, "$.T.Other", 1), 0);
		snprintf(data, sizeof data, "round %d", round);
		CHECK_EQ(send_text(k, "$.T.Self", data, &sent), 0);
		CHECK_EQ(pthread_join(t, NULL), 0);
		CHECK_EQ(w.rc, w.batch ? 0 : KBUS_KSOCK_READABLE);
		CHECK(w.msg != NULL);
		if (w.msg) {
			CHECK(name_is(w.msg, "$.T.Self"));
			CHECK(data_is(w.msg, data));
			CHECK_EQ(w.msg->id.serial_num, sent.serial_num);
			kbus_msg_delete(&w.msg);
		}
	}
	CHECK_EQ(kbus_ksock_close(k), 0);
}

/* ---- close from another thread ends the waits with -EBADF ---- */

static void test_close_wakes_waiters(void)
{
	int round;
	for (round = 0; round < 20; round++) {
		kbus_ksock_t k = open_rw(0);
		struct waiter a = { k, 0, 0, NULL }, b = { k, 1, 0, NULL };
		pthread_t ta, tb;
		uint32_t id;
		int i;

		CHECK_EQ(pthread_create(&ta, NULL, wait_one, &a), 0);
		CHECK_EQ(pthread_create(&tb, NULL, wait_one, &b), 0);
		for (i = 0; i < round; i++)
			CHECK_EQ(kbus_ksock_id(k, &id), 0);
		CHECK_EQ(kbus_ksock_close(k), 0);
		CHECK_EQ(pthread_join(ta, NULL), 0);
		CHECK_EQ(pthread_join(tb, NULL), 0);
		CHECK_EQ(a.rc, -EBADF);
		CHECK_EQ(b.rc, -EBADF);
		CHECK(a.msg == NULL && b.msg == NULL);
		CHECK_EQ(kbus_ksock_id(k, &id), -EBADF);
	}
}

/* ---- many threads, mixed calls, one Ksock ---- */

#define THREADS 6
#define ITERATIONS 120 /* a multiple of 4: a quarter are sends */
#define SENDS (ITERATIONS / 4)

static kbus_ksock_t shared;
static kbus_msg_id_t sent_ids[THREADS][SENDS];
static int seen[THREADS][SENDS];
static int bad_data;
static pthread_mutex_t ids_mu = PTHREAD_MUTEX_INITIALIZER;

/* A message of ours: "t<thread>-<n>" with the id its sender got. */
static void account(const kbus_message_t *m)
{
	int t, n;
	uint32_t serial;
	char text[32];
	if (!name_is(m, "$.T.Data") || m->data_len >= sizeof text) {
		__atomic_add_fetch(&bad_data, 1, __ATOMIC_SEQ_CST);
		return;
	}
	memcpy(text, kbus_msg_data_ptr(m), m->data_len);
	text[m->data_len] = '\0';
	if (sscanf(text, "t%d-%d", &t, &n) != 2 || t < 0 || t >= THREADS || n < 0 || n >= SENDS) {
		__atomic_add_fetch(&bad_data, 1, __ATOMIC_SEQ_CST);
		return;
	}
	pthread_mutex_lock(&ids_mu);
	seen[t][n]++;
	serial = sent_ids[t][n].serial_num;
	pthread_mutex_unlock(&ids_mu);
	CHECK_EQ(m->id.serial_num, serial);
}

static void *hammer(void *arg)
{
	int t = (int)(long)arg, i, sends = 0;
	kbus_msg_id_t last = { 0, 0 };
	char name[32];
	snprintf(name, sizeof name, "$.T.Mine%d", t);
	for (i = 0; i < ITERATIONS; i++) {
		kbus_message_t *m = NULL, *got[3];
		kbus_msg_id_t id;
		uint32_t who = 0, k_id = 0;
		size_t n = 0, j;
		char data[32];
		switch (i % 4) {
		case 0: {
			int rc;
			snprintf(data, sizeof data, "t%d-%d", t, sends);
			id.network_id = id.serial_num = 0;
			/* account() may see the message before send returns: it
			 * waits for the id under ids_mu. */
			pthread_mutex_lock(&ids_mu);
			rc = kbus_msg_create_entire(&m, "$.T.Data", 8, data, (uint32_t)strlen(data), 0);
			if (rc == 0)
				rc = kbus_ksock_send_msg(shared, m, &id);
			kbus_msg_delete(&m);
			sent_ids[t][sends] = id;
			pthread_mutex_unlock(&ids_mu);
			CHECK_EQ(rc, 0);
			CHECK(id_less(last, id));
			last = id;
			sends++;
			break;
		}
		case 1:
			CHECK_EQ(kbus_ksock_read_next_msg(shared, &m), 0);
			if (m) {
				account(m);
				kbus_msg_delete(&m);
			}
			break;
		case 2:
			CHECK_EQ(kbus_ksock_bind(shared, name, 1), 0);
			CHECK_EQ(kbus_ksock_find_replier(shared, name, &who), 0);
			CHECK_EQ(kbus_ksock_id(shared, &k_id), 0);
			CHECK_EQ(who, k_id);
			CHECK_EQ(kbus_ksock_unbind(shared, name, 1), 0);
			CHECK_EQ(kbus_ksock_find_replier(shared, name, &who), 0);
			CHECK_EQ(who, 0);
			break;
		case 3:
			CHECK_EQ(kbus_ksock_read_msgs(shared, got, 3, &n), 0);
			for (j = 0; j < n; j++) {
				account(got[j]);
				kbus_msg_delete(&got[j]);
			}
			break;
		}
	}
	return NULL;
}

static void *wait_until_stop(void *arg)
{
	(void)arg;
	for (;;) {
		kbus_message_t *msgs[4];
		size_t got = 0, j;
		int stop = 0;
		int rc = kbus_ksock_wait_for_msgs(shared, msgs, 4, &got, -1);
		CHECK_EQ(rc, 0);
		if (rc < 0)
			return NULL;
		for (j = 0; j < got; j++) {
			if (name_is(msgs[j], "$.T.Stop"))
				stop = 1;
			else
				account(msgs[j]);
			kbus_msg_delete(&msgs[j]);
		}
		if (stop)
			return NULL;
	}
}

static void test_many_threads(void)
{
	pthread_t workers[THREADS], waiter;
	kbus_message_t *m = NULL;
	uint32_t n = 99;
	long t;
	int i;

	shared = open_rw(0);
	CHECK_EQ(kbus_ksock_bind(shared, "$.T.Data", 0), 0);
	CHECK_EQ(kbus_ksock_bind(shared, "$.T.Stop", 0), 0);
	CHECK_EQ(pthread_create(&waiter, NULL, wait_until_stop, NULL), 0);
	for (t = 0; t < THREADS; t++)
		CHECK_EQ(pthread_create(&workers[t], NULL, hammer, (void *)t), 0);
	for (t = 0; t < THREADS; t++)
		CHECK_EQ(pthread_join(workers[t], NULL), 0);
	CHECK_EQ(send_text(shared, "$.T.Stop", "", NULL), 0);
	CHECK_EQ(pthread_join(waiter, NULL), 0);
	/* Whatever the waiter left behind the Stop message. */
	while (kbus_ksock_read_next_msg(shared, &m) == 0 && m) {
		account(m);
		kbus_msg_delete(&m);
	}
	CHECK_EQ(kbus_ksock_num_messages(shared, &n), 0);
	CHECK_EQ(n, 0);
	CHECK_EQ(bad_data, 0);
	for (t = 0; t < THREADS; t++)
		for (i = 0; i < SENDS; i++)
			CHECK_EQ(seen[t][i], 1);
	CHECK_EQ(kbus_ksock_close(shared), 0);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_wait_while_others_call();
	test_close_wakes_waiters();
	test_many_threads();
	printf("capi_threads: %d checks, %d failed\n", checks, failures);
	return failures == 0 ? 0 : 1;
}
