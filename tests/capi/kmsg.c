/* kmsg.c - a message tool written against the original libkbus, as the
 * original utility `kmsg` (KBUS-SPEC.md §13.1): send, listen, reply, call.
 *
 *   kmsg [--bus|-bus <N>] [-v|--verbose] [--dump] [--full]
 *        listen|reply|send|call <name> [<fmt> <data>]
 *
 * It uses only <libkbus/kbus.h> and builds unchanged with
 *   cc kmsg.c $(pkg-config --cflags --libs kbus)
 * (tests/install does exactly that).
 */
/* Only kbus.h, as the original: it brings errno, strerror, struct timeval ... */
#include <libkbus/kbus.h>

static int verbose = 0;
static int dump = 0;
static uint32_t print_flags = KBUS_MSG_PRINT_FLAGS_ABBREVIATE;

static void usage(void)
{
	printf("Usage: kmsg [--bus|-bus <N>] [-v|--verbose] [--dump] [--full]\n"
	       "            listen|reply|send|call <name> [<fmt> <data>]\n"
	       "\n"
	       "  listen <name>           print every message named <name>\n"
	       "  reply <name>            bind as replier and answer each Request\n"
	       "  send <name> <fmt> <data>  send an Announcement\n"
	       "  call <name> <fmt> <data>  send a Request and wait for the Reply\n"
	       "\n"
	       "<fmt> is s (string), z (string with its NUL), h (hex digits),\n"
	       "or - (read the data from stdin; then there is no <data>).\n");
}

static void show(const kbus_message_t *msg)
{
	if (dump)
		kbus_msg_dump(msg, 1);
	else {
		kbus_msg_print2(stdout, msg, print_flags);
		printf("\n");
	}
	fflush(stdout);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The data of a send/call, as <fmt> says. */
static int make_data(const char *fmt, const char *text, uint8_t **data, uint32_t *len)
{
	size_t n, i;
	if (!strcmp(fmt, "s") || !strcmp(fmt, "z")) {
		n = strlen(text) + (fmt[0] == 'z' ? 1 : 0);
		*data = malloc(n + 1);
		memcpy(*data, text, n);
		*len = n;
		return 0;
	}
	if (!strcmp(fmt, "h")) {
		n = strlen(text);
		if (n % 2)
			return -1;
		*data = malloc(n / 2 + 1);
		for (i = 0; i < n; i += 2) {
			int hi = hexval(text[i]), lo = hexval(text[i + 1]);
			if (hi < 0 || lo < 0)
				return -1;
			(*data)[i / 2] = (uint8_t)(hi * 16 + lo);
		}
		*len = n / 2;
		return 0;
	}
	if (!strcmp(fmt, "-")) {
		size_t size = 1024, used = 0, got;
		*data = malloc(size);
		while ((got = fread(*data + used, 1, size - used, stdin)) > 0) {
			used += got;
			if (used == size) {
				size *= 2;
				*data = realloc(*data, size);
			}
		}
		(*data)[used] = 0;
		*len = used + 1; /* as the original: one extra byte */
		return 0;
	}
	return -1;
}

static int listen_or_reply(uint32_t bus, const char *name, int replier)
{
	kbus_ksock_t ksock = kbus_ksock_open(bus, replier ? O_RDWR : O_RDONLY);
	int rv;
	if (ksock < 0) {
		printf("### Cannot open KBUS %u: %s\n", bus, strerror(-ksock));
		return 10;
	}
	rv = kbus_ksock_bind(ksock, name, replier);
	if (rv < 0) {
		printf("### Cannot bind to '%s' as %s: %s\n", name,
		       replier ? "replier" : "listener", strerror(-rv));
		return 11;
	}
	if (verbose) {
		printf("> Bound to '%s' as %s\n", name, replier ? "replier" : "listener");
		fflush(stdout);
	}
	for (;;) {
		kbus_message_t *msg = NULL;
		rv = kbus_wait_for_message(ksock, KBUS_KSOCK_READABLE);
		if (rv == -EINTR)
			continue;
		if (rv < 0) {
			printf("### Error waiting for a message: %s\n", strerror(-rv));
			return 20;
		}
		rv = kbus_ksock_read_next_msg(ksock, &msg);
		if (rv < 0) {
			printf("### Error reading a message: %s\n", strerror(-rv));
			return 21;
		}
		if (msg == NULL)
			continue;
		show(msg);
		if (replier && kbus_msg_wants_us_to_reply(msg)) {
			kbus_message_t *reply = NULL;
			kbus_msg_id_t id;
			rv = kbus_msg_create_entire_reply_to(&reply, msg, NULL, 0, 0);
			if (rv == 0)
				rv = kbus_ksock_send_msg(ksock, reply, &id);
			if (rv < 0) {
				printf("### Error replying: %s\n", strerror(-rv));
				kbus_msg_delete(&reply);
				kbus_msg_delete(&msg);
				return 22;
			}
			printf("Sent ");
			kbus_msg_print2(stdout, reply, print_flags);
			printf(" as %u:%u\n", id.network_id, id.serial_num);
			fflush(stdout);
			kbus_msg_delete(&reply);
		}
		kbus_msg_delete(&msg);
	}
}

static int send_or_call(uint32_t bus, const char *name, const uint8_t *data, uint32_t len,
			int want_reply)
{
	kbus_ksock_t ksock;
	kbus_message_t *msg = NULL;
	kbus_msg_id_t id;
	uint32_t i;
	int rv;

	printf("Msg data:\n ");
	for (i = 0; i < len; i++)
		printf(" %02x", data[i]);
	printf("\n");

	ksock = kbus_ksock_open(bus, O_RDWR);
	if (ksock < 0) {
		printf("### Cannot open KBUS %u: %s\n", bus, strerror(-ksock));
		return 20;
	}
	if (want_reply)
		rv = kbus_msg_create_request(&msg, name, strlen(name), data, len, 0);
	else
		rv = kbus_msg_create(&msg, name, strlen(name), data, len, 0);
	if (rv < 0) {
		printf("### Cannot create the message: %s\n", strerror(-rv));
		return 21;
	}
	printf("> Sending %s [want_reply? %d]\n", name, want_reply);
	show(msg);
	rv = kbus_ksock_send_msg(ksock, msg, &id);
	kbus_msg_delete(&msg);
	if (rv < 0) {
		printf("### Error sending: %s\n", strerror(-rv));
		kbus_ksock_close(ksock);
		return 22;
	}
	printf("> Sent message %u:%u .. \n", id.network_id, id.serial_num);
	fflush(stdout);
	if (!want_reply)
		return kbus_ksock_close(ksock) == 0 ? 0 : 3;

	for (;;) {
		kbus_message_t *got = NULL;
		rv = kbus_wait_for_message(ksock, KBUS_KSOCK_READABLE);
		if (rv == -EINTR)
			continue;
		if (rv >= 0)
			rv = kbus_ksock_read_next_msg(ksock, &got);
		if (rv < 0) {
			printf("### Error reading the reply: %s\n", strerror(-rv));
			kbus_ksock_close(ksock);
			return 2;
		}
		if (got == NULL)
			continue;
		show(got);
		if (kbus_msg_compare_ids(&got->in_reply_to, &id) == 0) {
			printf("> Got Reply!\n");
			kbus_msg_delete(&got);
			break;
		}
		kbus_msg_delete(&got);
	}
	kbus_ksock_close(ksock);
	return 0;
}

int main(int argc, char **argv)
{
	uint32_t bus = 0;
	int arg = 1;
	const char *cmd, *name;

	if (argc < 2) {
		usage();
		return 1;
	}
	/* Options, only in this order, before the command. */
	if (arg < argc && (!strcmp(argv[arg], "--bus") || !strcmp(argv[arg], "-bus"))) {
		if (arg + 1 >= argc) {
			usage();
			return 1;
		}
		bus = (uint32_t)strtoul(argv[arg + 1], NULL, 10);
		arg += 2;
	}
	if (arg < argc && (!strcmp(argv[arg], "-v") || !strcmp(argv[arg], "--verbose"))) {
		verbose = 1;
		arg++;
	}
	if (arg < argc && !strcmp(argv[arg], "--dump")) {
		dump = 1;
		arg++;
	}
	if (arg < argc && !strcmp(argv[arg], "--full")) {
		print_flags = 0;
		arg++;
	}
	if (arg >= argc) {
		usage();
		return 1;
	}
	cmd = argv[arg++];

	if (!strcmp(cmd, "listen") || !strcmp(cmd, "reply")) {
		if (argc - arg != 1) {
			usage();
			return 2;
		}
		return listen_or_reply(bus, argv[arg], !strcmp(cmd, "reply"));
	}
	if (!strcmp(cmd, "send") || !strcmp(cmd, "call")) {
		uint8_t *data = NULL;
		uint32_t len = 0;
		int rv;
		if (argc - arg < 2) {
			usage();
			return 3;
		}
		name = argv[arg];
		if (!strcmp(argv[arg + 1], "-") ? argc - arg != 2 : argc - arg != 3) {
			usage();
			return 3;
		}
		if (make_data(argv[arg + 1], argc - arg == 3 ? argv[arg + 2] : "", &data, &len) < 0) {
			printf("### Bad data '%s' for format '%s'\n",
			       argc - arg == 3 ? argv[arg + 2] : "", argv[arg + 1]);
			free(data);
			return 3;
		}
		rv = send_or_call(bus, name, data, len, !strcmp(cmd, "call"));
		free(data);
		return rv;
	}
	printf("### Unrecognised command '%s'\n", cmd);
	usage();
	return 4;
}
