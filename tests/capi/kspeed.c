/* kspeed.c - a throughput tester written against the original libkbus, as
 * the original utility `kspeed` (KBUS-SPEC.md §13.2):
 *
 *   kspeed [-bus|--bus <N>] ( send <msgname> <bytes> | listen <msgname> )
 *
 * `send` sends Announcements of <bytes> bytes (0x55) for ever, in rounds of
 * 1000, reporting each round; `listen` receives them, reporting every 1000.
 * It uses only <libkbus/kbus.h> and builds unchanged with
 *   cc kspeed.c $(pkg-config --cflags --libs kbus)
 */
/* Only kbus.h, as the original: it brings errno, strerror, struct timeval ... */
#include <libkbus/kbus.h>

#define ROUND 1000

static void usage(void)
{
	printf("Usage: kspeed [-bus|--bus <N>] ( send <msgname> <bytes> | listen <msgname> )\n");
}

static double now_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return tv.tv_sec * 1000.0 + tv.tv_usec / 1000.0;
}

static int do_send(kbus_ksock_t ksock, const char *name, uint32_t bytes)
{
	kbus_message_t *msg = NULL;
	uint8_t *data = NULL;
	int rv;

	if (bytes) {
		data = malloc(bytes);
		memset(data, 0x55, bytes);
	}
	rv = kbus_msg_create(&msg, name, strlen(name), data, bytes, 0);
	if (rv < 0) {
		printf("### Cannot create the message: %s\n", strerror(-rv));
		return 3;
	}
	for (;;) {
		double start = now_ms(), ms;
		int i;
		for (i = 0; i < ROUND; i++) {
			kbus_msg_id_t id;
			rv = kbus_ksock_send_msg(ksock, msg, &id);
			if (rv < 0) {
				printf("### Error sending: %s\n", strerror(-rv));
				return 3;
			}
		}
		ms = now_ms() - start;
		printf("> Sent %d messages in %g ms => %g msgs/ms\n", ROUND, ms,
		       ms > 0 ? ROUND / ms : 0.0);
		fflush(stdout);
	}
}

static int do_listen(kbus_ksock_t ksock, const char *name)
{
	int count = 0, rv;
	double start;

	rv = kbus_ksock_bind(ksock, name, 0);
	if (rv < 0) {
		printf("### Cannot bind to %s: %s\n", name, strerror(-rv));
		return 3;
	}
	start = now_ms();
	for (;;) {
		kbus_message_t *msg = NULL;
		rv = kbus_wait_for_message(ksock, KBUS_KSOCK_READABLE);
		if (rv == -EINTR)
			continue;
		if (rv < 0) {
			printf("### Error waiting: %s\n", strerror(-rv));
			return 3;
		}
		for (;;) {
			rv = kbus_ksock_read_next_msg(ksock, &msg);
			if (rv < 0) {
				printf("### Error reading: %s\n", strerror(-rv));
				return 3;
			}
			if (msg == NULL)
				break;
			kbus_msg_delete(&msg);
			if (++count == ROUND) {
				double ms = now_ms() - start;
				printf("> Recvd %d messages in %g ms => %g msgs/ms\n", ROUND, ms,
				       ms > 0 ? ROUND / ms : 0.0);
				fflush(stdout);
				count = 0;
				start = now_ms();
			}
		}
	}
}

int main(int argc, char **argv)
{
	uint32_t bus = 0;
	int arg = 1;
	kbus_ksock_t ksock;

	if (arg + 1 < argc && (!strcmp(argv[arg], "-bus") || !strcmp(argv[arg], "--bus"))) {
		bus = (uint32_t)strtoul(argv[arg + 1], NULL, 10);
		arg += 2;
	}
	if (arg + 2 == argc && !strcmp(argv[arg], "listen")) {
		ksock = kbus_ksock_open(bus, O_RDONLY);
		if (ksock < 0) {
			printf("### Cannot open KBUS %u: %s\n", bus, strerror(-ksock));
			return 2;
		}
		return do_listen(ksock, argv[arg + 1]);
	}
	if (arg + 3 == argc && !strcmp(argv[arg], "send")) {
		char *end;
		unsigned long bytes = strtoul(argv[arg + 2], &end, 10);
		if (*end != '\0') {
			usage();
			return 1;
		}
		ksock = kbus_ksock_open(bus, O_RDWR);
		if (ksock < 0) {
			printf("### Cannot open KBUS %u: %s\n", bus, strerror(-ksock));
			return 2;
		}
		return do_send(ksock, argv[arg + 1], (uint32_t)bytes);
	}
	usage();
	return 1;
}
