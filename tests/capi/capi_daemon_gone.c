/* capi_daemon_gone.c - what a C program sees when kbusd goes away under it:
 * errors, never a crash or a signal.
 *
 * Opens a Ksock on bus 0, prints "ready", and waits for its standard input
 * to close (the test driver stops kbusd first). Then every call must fail
 * with a negative errno, kbus_ksock_close must succeed, and the Ksock must
 * then be unknown (-EBADF). Exit status 0 if so.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <libkbus/kbus.h>

static int failures;

static void expect_error(const char *what, int rv)
{
	if (rv >= 0) {
		printf("%s: %d, expected an error\n", what, rv);
		failures++;
	} else {
		printf("%s: %s\n", what, strerror(-rv));
	}
}

int main(void)
{
	char buf[16];
	kbus_ksock_t k = kbus_ksock_open(0, O_RDWR);
	kbus_message_t *msg = NULL;
	kbus_msg_id_t id;
	uint32_t n;
	size_t got;

	if (k < 0) {
		printf("open: %s\n", strerror(-k));
		return 2;
	}
	kbus_msg_create_entire(&msg, "$.Gone", 6, "x", 1, 0);
	printf("ready\n");
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;

	expect_error("wait_for_message", kbus_wait_for_message(k, KBUS_KSOCK_READABLE));
	expect_error("wait_for_msgs", kbus_ksock_wait_for_msgs(k, &msg, 1, &got, -1));
	expect_error("send_msgs", kbus_ksock_send_msgs(k, &msg, 1, &id, NULL));
	expect_error("read_msgs", kbus_ksock_read_msgs(k, &msg, 1, &got));
	expect_error("bind", kbus_ksock_bind(k, "$.Gone", 0));
	expect_error("send_msg", kbus_ksock_send_msg(k, msg, &id));
	expect_error("num_messages", kbus_ksock_num_messages(k, &n));
	expect_error("read_next_msg", kbus_ksock_read_next_msg(k, &msg));
	if (kbus_ksock_close(k) != 0) {
		printf("close failed\n");
		failures++;
	}
	if (kbus_ksock_id(k, &n) != -EBADF) {
		printf("a closed Ksock is still known\n");
		failures++;
	}
	expect_error("open", kbus_ksock_open(0, O_RDWR));
	kbus_msg_delete(&msg);
	printf("%s\n", failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
