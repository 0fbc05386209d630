/* original_includes.c - a program written the way the original KBUS
 * utilities were (utils/kmsg.c, utils/kspeed.c, KBUS-SPEC.md §13): it
 * includes nothing but <libkbus/kbus.h> and relies on it for what the
 * original kbus.h pulled in (issue: "The original's programs and rules,
 * unchanged", item 1):
 *   <errno.h> errno, <string.h> strerror/strlen/memcmp/memcpy,
 *   <stdlib.h> malloc/free/atoi, <unistd.h> getpid, <assert.h> assert,
 *   <fcntl.h> O_RDWR, <stdio.h> printf, <stdint.h> uint32_t,
 *   struct timeval/gettimeofday (kspeed), and <linux/kbus_defns.h>.
 *
 * It is built as C and, unchanged, as C++ (`c++ -x c++`): the header must
 * compile in both. It sends itself a message and checks it came back, then
 * prints "original includes: ok".
 */
#include <libkbus/kbus.h>

static int fail(const char *what, int rv)
{
	/* strerror/errno: the original kmsg.c reports errors this way. */
	errno = -rv;
	printf("%s failed: %d %s\n", what, rv, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	const char *name = "$.Original.Includes";
	const char *data = "as the original did";
	uint32_t name_len = (uint32_t)strlen(name);
	uint32_t data_len = (uint32_t)strlen(data);
	int bus = argc > 1 ? atoi(argv[1]) : 0;
	struct timeval start, end;
	kbus_ksock_t ksock;
	kbus_message_t *msg = NULL;
	kbus_message_t *got = NULL;
	kbus_msg_id_t id;
	char *copy;
	int rv;

	gettimeofday(&start, NULL);
	assert(KBUS_ENTIRE_MSG_LEN(name_len, data_len) > sizeof(struct kbus_message_header));

	ksock = kbus_ksock_open(bus, O_RDWR);
	if (ksock < 0) return fail("kbus_ksock_open", ksock);
	rv = kbus_ksock_bind(ksock, name, 0);
	if (rv) return fail("kbus_ksock_bind", rv);

	copy = (char *)malloc(data_len);
	memcpy(copy, data, data_len);
	rv = kbus_msg_create(&msg, name, name_len, copy, data_len, 0);
	if (rv) return fail("kbus_msg_create", rv);
	rv = kbus_ksock_send_msg(ksock, msg, &id);
	if (rv) return fail("kbus_ksock_send_msg", rv);

	rv = kbus_ksock_read_next_msg(ksock, &got);
	if (rv < 0) return fail("kbus_ksock_read_next_msg", rv);
	if (got == NULL || got->data_len != data_len ||
	    memcmp(kbus_msg_data_ptr(got), data, data_len) != 0 ||
	    memcmp(kbus_msg_name_ptr(got), name, name_len) != 0) {
		printf("wrong message back\n");
		return 1;
	}
	gettimeofday(&end, NULL);
	printf("pid %d sent and read [%u:%u] in %ld us\n", (int)getpid(), id.network_id,
	       id.serial_num,
	       (long)((end.tv_sec - start.tv_sec) * 1000000 + (end.tv_usec - start.tv_usec)));
	kbus_msg_delete(&msg);
	kbus_msg_delete(&got);
	free(copy);
	kbus_ksock_close(ksock);
	printf("original includes: ok\n");
	return 0;
}
