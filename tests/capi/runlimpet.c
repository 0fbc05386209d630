/* runlimpet.c - one end of a Limpet pair, written against the original
 * libkbus and its Limpet library, as the original utility `runlimpet`
 * (KBUS-SPEC.md §13.3, §10):
 *
 *   runlimpet (-s|-server | -c|-client) [-id <n>] [-k|-kbus <n>]
 *             [-m|-message <name>] [-v|-verbose <level>] [-t <name>]
 *             (<host>:<port> | <path>)
 *
 * It does all the I/O itself - the socket, the HELO exchange, the framing
 * of §10.3 - and leaves every decision to <libkbus/limpet.h>. It builds
 * unchanged with
 *   cc runlimpet.c $(pkg-config --cflags --libs kbus)
 *
 * Exit status: 0 after the -t message or when the other limpet goes away;
 * 1 bad usage; 2 the socket or the bus failed; 3 the HELO exchange failed
 * (not a limpet, or the same network id at both ends).
 */
#include <libkbus/kbus.h>
#include <libkbus/limpet.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_NAME_LEN 1000
#define MAX_DATA_LEN 409600

static void usage(void)
{
	printf("Usage: runlimpet <things>\n"
	       "\n"
	       "Connect a KBUS device to another limpet over a socket.\n"
	       "\n"
	       "  <host>:<port>         use TCP/IP (the server ignores <host>)\n"
	       "  <path>                use a Unix domain socket\n"
	       "  -s, -server           be the socket server\n"
	       "  -c, -client           be the socket client (one of -s, -c is required)\n"
	       "  -id <n>               this limpet's network id, > 0 (default 1 for a\n"
	       "                        client, 2 for a server)\n"
	       "  -k, -kbus <n>         the KBUS device (bus) number (default 0)\n"
	       "  -m, -message <name>   the messages to forward (default '$.*')\n"
	       "  -v, -verbose <level>  0 quiet, 1 (default) normal, 2 every message\n"
	       "  -t <name>             stop on reading a message <name> from KBUS\n"
	       "  -h, -help, --help     this text\n"
	       "\n"
	       "Arguments may come in any order; later ones win.\n");
}

static int int_value(const char *switch_name, const char *text, long min, uint32_t *out)
{
	char *end = NULL;
	long v;
	if (!text) {
		fprintf(stderr, "runlimpet: %s needs a value\n", switch_name);
		return -1;
	}
	errno = 0;
	v = strtol(text, &end, 10);
	if (errno || end == text || *end || v < min || v > 0xFFFFFFFFL) {
		fprintf(stderr, "runlimpet: %s needs a whole number >= %ld, not '%s'\n",
			switch_name, min, text);
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

/* ---- the socket ---- */

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Returns the connected socket, or -1 (with a message). */
static int connect_socket(int is_server, int is_tcp, const char *host, const char *port_text,
			  const char *path, const char *banner_tail, int verbosity)
{
	int fd, conn;
	if (is_tcp) {
		struct addrinfo hints, *res = NULL;
		int rv;
		memset(&hints, 0, sizeof hints);
		hints.ai_family = AF_INET;
		hints.ai_socktype = SOCK_STREAM;
		if (is_server)
			hints.ai_flags = AI_PASSIVE;
		rv = getaddrinfo(is_server ? NULL : host, port_text, &hints, &res);
		if (rv) {
			fprintf(stderr, "runlimpet: cannot resolve '%s' port %s: %s\n", host, port_text,
				gai_strerror(rv));
			return -1;
		}
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0) {
			perror("runlimpet: socket");
			freeaddrinfo(res);
			return -1;
		}
		if (is_server) {
			int one = 1;
			struct sockaddr_in bound;
			socklen_t blen = sizeof bound;
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
			if (bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 1) ||
			    getsockname(fd, (struct sockaddr *)&bound, &blen)) {
				fprintf(stderr, "runlimpet: cannot listen on port %s: %s\n", port_text,
					strerror(errno));
				freeaddrinfo(res);
				close(fd);
				return -1;
			}
			freeaddrinfo(res);
			/* The port actually bound (port 0 picks a free one). */
			if (verbosity > 0)
				printf("C Limpet: Server via TCP/IP, address '%s' port %u %s\n", host,
				       ntohs(bound.sin_port), banner_tail);
		} else {
			if (verbosity > 0)
				printf("C Limpet: Client via TCP/IP, address '%s' port %s %s\n", host,
				       port_text, banner_tail);
			fflush(stdout);
			if (connect(fd, res->ai_addr, res->ai_addrlen)) {
				fprintf(stderr, "runlimpet: cannot connect to %s:%s: %s\n", host,
					port_text, strerror(errno));
				freeaddrinfo(res);
				close(fd);
				return -1;
			}
			freeaddrinfo(res);
			return fd;
		}
	} else {
		struct sockaddr_un addr;
		if (strlen(path) >= sizeof addr.sun_path) {
			fprintf(stderr, "runlimpet: socket path '%s' is longer than %zu bytes\n", path,
				sizeof addr.sun_path - 1);
			return -1;
		}
		memset(&addr, 0, sizeof addr);
		addr.sun_family = AF_UNIX;
		strcpy(addr.sun_path, path);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0) {
			perror("runlimpet: socket");
			return -1;
		}
		if (is_server) {
			struct stat st;
			if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
				unlink(path); /* left by an earlier server */
			if (bind(fd, (struct sockaddr *)&addr, sizeof addr) || listen(fd, 1)) {
				fprintf(stderr, "runlimpet: cannot listen on '%s': %s\n", path,
					strerror(errno));
				close(fd);
				return -1;
			}
			if (verbosity > 0)
				printf("C Limpet: Server via Unix domain socket '%s' %s\n", path,
				       banner_tail);
		} else {
			if (verbosity > 0)
				printf("C Limpet: Client via Unix domain socket '%s' %s\n", path,
				       banner_tail);
			fflush(stdout);
			if (connect(fd, (struct sockaddr *)&addr, sizeof addr)) {
				fprintf(stderr, "runlimpet: cannot connect to '%s': %s\n", path,
					strerror(errno));
				close(fd);
				return -1;
			}
			return fd;
		}
	}
	fflush(stdout);
	do
		conn = accept(fd, NULL, NULL);
	while (conn < 0 && errno == EINTR);
	if (conn < 0)
		perror("runlimpet: accept");
	close(fd);
	return conn;
}

/* ---- messages over the socket (§10.3) ---- */

static int send_message_to_other_limpet(int sock, kbus_message_t *msg)
{
	uint32_t hdr[KBUS_SERIALISED_HDR_LEN];
	uint32_t end_guard = htonl(KBUS_MSG_END_GUARD);
	static const char zeros[8];
	uint32_t name_len = msg->name_len, data_len = msg->data_len;
	size_t name_pad = KBUS_PADDED_NAME_LEN(name_len) - name_len;
	size_t data_pad = KBUS_PADDED_DATA_LEN(data_len) - data_len;
	int rv;

	kbus_limpet_ReplierBindEvent_hton(msg);
	kbus_serialise_message_header(msg, hdr);
	if ((rv = write_all(sock, hdr, sizeof hdr)) ||
	    (rv = write_all(sock, kbus_msg_name_ptr(msg), name_len)) ||
	    (rv = write_all(sock, zeros, name_pad)))
		return rv;
	if (data_len > 0 && ((rv = write_all(sock, kbus_msg_data_ptr(msg), data_len)) ||
			     (rv = write_all(sock, zeros, data_pad))))
		return rv;
	return write_all(sock, &end_guard, sizeof end_guard);
}

/* Bytes read from the other limpet, not yet made into messages. */
struct inbuf {
	char *bytes;
	size_t used, size;
};

/* The next whole message in `in` as a new entire message: 1 and *msg; 0 if
 * more bytes are needed; -EPROTO if the stream is corrupt. */
static int next_message_from_other_limpet(struct inbuf *in, kbus_message_t **msg)
{
	kbus_message_t hdr;
	uint32_t words[KBUS_SERIALISED_HDR_LEN], end;
	size_t name_space, data_space, total;
	const char *p = in->bytes;
	int rv;

	*msg = NULL;
	if (in->used < sizeof words)
		return 0;
	memcpy(words, p, sizeof words);
	if (kbus_unserialise_message_header(words, &hdr) < 0) {
		fprintf(stderr, "runlimpet: bad guard in a message header from the other limpet\n");
		return -EPROTO;
	}
	if (hdr.name_len == 0 || hdr.name_len > MAX_NAME_LEN || hdr.data_len > MAX_DATA_LEN) {
		fprintf(stderr,
			"runlimpet: message from the other limpet has name_len %u (1..%u) "
			"and data_len %u (max %u)\n",
			hdr.name_len, MAX_NAME_LEN, hdr.data_len, MAX_DATA_LEN);
		return -EPROTO;
	}
	name_space = KBUS_PADDED_NAME_LEN(hdr.name_len);
	data_space = KBUS_PADDED_DATA_LEN(hdr.data_len);
	total = sizeof words + name_space + data_space + 4;
	if (in->used < total)
		return 0;
	memcpy(&end, p + total - 4, 4);
	if (ntohl(end) != KBUS_MSG_END_GUARD) {
		fprintf(stderr, "runlimpet: bad end guard after a message from the other limpet\n");
		return -EPROTO;
	}
	rv = kbus_msg_create_entire(msg, p + sizeof words, hdr.name_len,
				    hdr.data_len ? p + sizeof words + name_space : NULL,
				    hdr.data_len, hdr.flags);
	if (rv < 0)
		return rv;
	(*msg)->id = hdr.id;
	(*msg)->in_reply_to = hdr.in_reply_to;
	(*msg)->to = hdr.to;
	(*msg)->from = hdr.from;
	(*msg)->orig_from = hdr.orig_from;
	(*msg)->final_to = hdr.final_to;
	(*msg)->extra = hdr.extra;
	kbus_limpet_ReplierBindEvent_ntoh(*msg);
	memmove(in->bytes, in->bytes + total, in->used - total);
	in->used -= total;
	return 1;
}

static void trace(int verbosity, const char *what, const kbus_message_t *msg)
{
	if (verbosity < 2)
		return;
	printf("%s ", what);
	kbus_msg_print(stdout, msg);
	printf("\n");
	fflush(stdout);
}

/* ---- the limpet ---- */

/* Returns the exit status. */
static int run(kbus_limpet_context_t *context, kbus_ksock_t ksock, int sock,
	       const char *termination, int verbosity)
{
	struct inbuf in = { NULL, 0, 0 };
	int blocked = 0; /* an ALL_OR_WAIT send to KBUS is pending */
	int status = 2;

	for (;;) {
		struct pollfd fds[2];
		int rv;

		/* Messages already read from the other limpet first. */
		while (!blocked) {
			kbus_message_t *msg = NULL, *error = NULL;
			rv = next_message_from_other_limpet(&in, &msg);
			if (rv < 0)
				goto done;
			if (rv == 0)
				break;
			trace(verbosity, "From the other limpet:", msg);
			rv = kbus_limpet_amend_msg_to_kbus(context, msg, &error);
			if (rv == 0) {
				kbus_msg_id_t id;
				trace(verbosity, "To KBUS:", msg);
				rv = kbus_ksock_send_msg(ksock, msg, &id);
				if (rv == -EAGAIN) {
					blocked = 1;
				} else if (rv < 0) {
					if (verbosity > 1)
						printf("Send to KBUS failed: %s\n", strerror(-rv));
					rv = kbus_limpet_could_not_send_to_kbus_msg(context, msg, rv,
										    &error);
					if (rv < 0) {
						fprintf(stderr, "runlimpet: %s\n", strerror(-rv));
						kbus_msg_delete(&msg);
						goto done;
					}
				}
			} else if (rv < 0) {
				fprintf(stderr, "runlimpet: amending a message for KBUS: %s\n",
					strerror(-rv));
				kbus_msg_delete(&msg);
				goto done;
			}
			if (error) {
				trace(verbosity, "Back to the other limpet:", error);
				rv = send_message_to_other_limpet(sock, error);
				kbus_msg_delete(&error);
				if (rv < 0) {
					fprintf(stderr, "runlimpet: writing to the other limpet: %s\n",
						strerror(-rv));
					kbus_msg_delete(&msg);
					goto done;
				}
			}
			kbus_msg_delete(&msg);
		}

		fds[0].fd = ksock;
		fds[0].events = POLLIN | (blocked ? POLLOUT : 0);
		fds[1].fd = blocked ? -1 : sock;
		fds[1].events = POLLIN;
		fds[0].revents = fds[1].revents = 0;
		rv = poll(fds, 2, -1);
		if (rv < 0) {
			if (errno == EINTR)
				continue;
			perror("runlimpet: poll");
			goto done;
		}
		if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
			fprintf(stderr, "runlimpet: KBUS went away\n");
			goto done;
		}
		if (fds[0].revents & POLLOUT)
			blocked = 0;

		if (fds[0].revents & POLLIN) {
			for (;;) {
				kbus_message_t *msg = NULL;
				rv = kbus_ksock_read_next_msg(ksock, &msg);
				if (rv < 0) {
					fprintf(stderr, "runlimpet: reading from KBUS: %s\n",
						strerror(-rv));
					goto done;
				}
				if (!msg)
					break;
				trace(verbosity, "From KBUS:", msg);
				if (termination && msg->name_len == strlen(termination) &&
				    !memcmp(kbus_msg_name_ptr(msg), termination, msg->name_len)) {
					if (verbosity > 0)
						printf("C Limpet: read the termination message %s\n",
						       termination);
					kbus_msg_delete(&msg);
					status = 0;
					goto done;
				}
				rv = kbus_limpet_amend_msg_from_kbus(context, msg);
				if (rv == 0) {
					trace(verbosity, "To the other limpet:", msg);
					rv = send_message_to_other_limpet(sock, msg);
					if (rv < 0) {
						fprintf(stderr,
							"runlimpet: writing to the other limpet: %s\n",
							strerror(-rv));
						kbus_msg_delete(&msg);
						goto done;
					}
				} else if (rv < 0) {
					fprintf(stderr, "runlimpet: amending a message from KBUS: %s\n",
						strerror(-rv));
					kbus_msg_delete(&msg);
					goto done;
				}
				kbus_msg_delete(&msg);
			}
		}

		if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t n;
			if (in.size - in.used < 65536) {
				size_t size = in.size ? in.size * 2 : 131072;
				char *bigger = realloc(in.bytes, size);
				if (!bigger) {
					fprintf(stderr, "runlimpet: out of memory\n");
					goto done;
				}
				in.bytes = bigger;
				in.size = size;
			}
			n = read(sock, in.bytes + in.used, in.size - in.used);
			if (n < 0 && errno != EINTR && errno != EAGAIN) {
				fprintf(stderr, "runlimpet: reading from the other limpet: %s\n",
					strerror(errno));
				goto done;
			}
			if (n == 0) {
				if (verbosity > 0)
					printf("C Limpet: the other limpet has gone away\n");
				status = 0;
				goto done;
			}
			if (n > 0)
				in.used += (size_t)n;
		}
	}
done:
	free(in.bytes);
	return status;
}

int main(int argc, char *argv[])
{
	int is_server = -1, is_tcp = 0, ii, sock, status;
	uint32_t network_id = 0, other_id = 0, bus = 0, verbosity = 1;
	const char *address = NULL, *message = "$.*", *termination = NULL;
	char host[256] = "", port_text[16] = "", banner_tail[1200];
	unsigned char helo[8];
	kbus_ksock_t ksock;
	kbus_limpet_context_t *context = NULL;

	if (argc < 2) {
		usage();
		return 0;
	}
	for (ii = 1; ii < argc; ii++) {
		const char *a = argv[ii];
		const char *next = ii + 1 < argc ? argv[ii + 1] : NULL;
		if (!strcmp(a, "-h") || !strcmp(a, "-help") || !strcmp(a, "--help")) {
			usage();
			return 0;
		} else if (!strcmp(a, "-s") || !strcmp(a, "-server")) {
			is_server = 1;
		} else if (!strcmp(a, "-c") || !strcmp(a, "-client")) {
			is_server = 0;
		} else if (!strcmp(a, "-id")) {
			if (int_value(a, next, 1, &network_id))
				return 1;
			ii++;
		} else if (!strcmp(a, "-k") || !strcmp(a, "-kbus")) {
			if (int_value(a, next, 0, &bus))
				return 1;
			ii++;
		} else if (!strcmp(a, "-v") || !strcmp(a, "-verbose")) {
			if (int_value(a, next, 0, &verbosity))
				return 1;
			ii++;
		} else if (!strcmp(a, "-m") || !strcmp(a, "-message")) {
			if (!next) {
				fprintf(stderr, "runlimpet: %s needs a message name\n", a);
				return 1;
			}
			message = next;
			ii++;
		} else if (!strcmp(a, "-t")) {
			if (!next) {
				fprintf(stderr, "runlimpet: -t needs a message name\n");
				return 1;
			}
			termination = next;
			ii++;
		} else if (a[0] == '-') {
			fprintf(stderr, "runlimpet: unknown switch '%s' (try -help)\n", a);
			return 1;
		} else {
			address = a;
		}
	}
	if (is_server < 0) {
		fprintf(stderr, "runlimpet: say -s (server) or -c (client)\n");
		return 1;
	}
	if (!address) {
		fprintf(stderr, "runlimpet: say where: <host>:<port> or a socket <path>\n");
		return 1;
	}
	if (network_id == 0)
		network_id = is_server ? 2 : 1;

	/* <host>:<port> (digits after the last colon, no '/') or a path. */
	{
		const char *colon = strrchr(address, ':');
		if (colon && !strchr(address, '/') && colon[1] &&
		    strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
			size_t hlen = (size_t)(colon - address);
			if (hlen >= sizeof host || strlen(colon + 1) >= sizeof port_text) {
				fprintf(stderr, "runlimpet: address '%s' is too long\n", address);
				return 1;
			}
			memcpy(host, address, hlen);
			host[hlen] = 0;
			strcpy(port_text, colon + 1);
			is_tcp = 1;
		}
	}
	snprintf(banner_tail, sizeof banner_tail, "for KBUS %u, using network id %u, listening for '%s'",
		 bus, network_id, message);

	sock = connect_socket(is_server, is_tcp, host, port_text, address, banner_tail, (int)verbosity);
	if (sock < 0)
		return 2;

	/* §10.2-1: HELO and our network id, big-endian; then the other's. */
	memcpy(helo, "HELO", 4);
	{
		uint32_t id = htonl(network_id);
		memcpy(helo + 4, &id, 4);
	}
	if (write_all(sock, helo, sizeof helo) || read_all(sock, helo, sizeof helo)) {
		fprintf(stderr, "runlimpet: the HELO exchange with the other limpet failed\n");
		close(sock);
		return 3;
	}
	if (memcmp(helo, "HELO", 4)) {
		fprintf(stderr, "runlimpet: the other end did not say HELO: not a limpet\n");
		close(sock);
		return 3;
	}
	memcpy(&other_id, helo + 4, 4);
	other_id = ntohl(other_id);
	if (other_id == network_id || other_id == 0) {
		fprintf(stderr,
			"runlimpet: the other limpet uses network id %u; the two ends need "
			"different network ids, > 0\n",
			other_id);
		close(sock);
		return 3;
	}

	ksock = kbus_ksock_open(bus, O_RDWR);
	if (ksock < 0) {
		fprintf(stderr, "runlimpet: cannot open KBUS %u: %s\n", bus, strerror(-ksock));
		close(sock);
		return 2;
	}
	status = kbus_limpet_new_context(ksock, network_id, other_id, message, verbosity, &context);
	if (status < 0) {
		fprintf(stderr, "runlimpet: cannot set up the limpet on KBUS %u: %s\n", bus,
			strerror(-status));
		kbus_ksock_close(ksock);
		close(sock);
		return status == -EBADMSG ? 1 : 2;
	}
	if (verbosity > 0) {
		printf("C Limpet: linked to the limpet with network id %u\n", other_id);
		fflush(stdout);
	}

	status = run(context, ksock, sock, termination, (int)verbosity);

	kbus_limpet_free_context(&context);
	kbus_ksock_close(ksock); /* KBUS answers the Requests we still held */
	close(sock);
	if (is_server && !is_tcp)
		unlink(address);
	return status;
}
