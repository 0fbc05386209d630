/* outside.c - a C program outside the kbus tree, built against the installed
 * kbus (pkg-config or find_package): a Request and its Reply on bus 0 of the
 * kbusd in $KBUS_DIR. Prints "outside C: ok" and exits 0 on success. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include <libkbus/kbus.h>
/* The original's own name for the layout header: reachable through
 * pkg-config and find_package(kbus) alike (KBUS-SPEC.md §12.1). */
#include <linux/kbus_defns.h>

#define TRY(call)                                                       \
	do {                                                            \
		int rv_ = (call);                                       \
		if (rv_ < 0) {                                          \
			printf("%s: %s\n", #call, strerror(-rv_));      \
			return 1;                                       \
		}                                                       \
	} while (0)

int main(void)
{
	kbus_ksock_t replier = kbus_ksock_open(0, O_RDWR);
	kbus_ksock_t requester = kbus_ksock_open_by_name("/dev/kbus0", O_RDWR);
	kbus_message_t *req = NULL, *got = NULL, *reply = NULL;
	kbus_msg_id_t id;

	if (replier < 0 || requester < 0) {
		printf("cannot open bus 0: %s\n", strerror(-(replier < 0 ? replier : requester)));
		return 1;
	}
	TRY(kbus_ksock_bind(replier, "$.Outside.Time", 1));
	TRY(kbus_msg_create_request(&req, "$.Outside.Time", 14, "now?", 4, 0));
	TRY(kbus_ksock_send_msg(requester, req, &id));
	TRY(kbus_wait_for_message(replier, KBUS_KSOCK_READABLE));
	TRY(kbus_ksock_read_next_msg(replier, &got));
	if (!got || !kbus_msg_wants_us_to_reply(got)) {
		printf("the replier got no request\n");
		return 1;
	}
	TRY(kbus_msg_create_entire_reply_to(&reply, got, "noon", 4, 0));
	TRY(kbus_ksock_send_msg(replier, reply, NULL));
	kbus_msg_delete(&got);
	TRY(kbus_ksock_read_next_msg(requester, &got));
	if (!got || kbus_msg_compare_ids(&got->in_reply_to, &id) != 0 || got->data_len != 4 ||
	    memcmp(kbus_msg_data_ptr(got), "noon", 4) != 0) {
		printf("the requester got no reply\n");
		return 1;
	}
	kbus_msg_print(stdout, got);
	printf("\noutside C: ok\n");
	kbus_msg_delete(&got);
	kbus_msg_delete(&reply);
	kbus_msg_delete(&req);
	TRY(kbus_ksock_close(requester));
	TRY(kbus_ksock_close(replier));
	return 0;
}
