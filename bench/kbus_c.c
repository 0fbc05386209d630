/* kbus_bench_c: kbus through the C API of <libkbus/kbus.h>, against a kbusd
 * that bench/run.py started (--dir DIR, bus 0). The same tests, options and
 * RESULT lines as kbus_bench_kbus (bench/kbus_cpp.cpp), for the C library.
 *
 *   rtt   --dir D [--payload B] [--iterations N]
 *         request/reply round trip with the original libkbus calls
 *         (KBUS-SPEC.md §12.2) on both sides, the generic way: the requester
 *         sends with kbus_ksock_send_msg(), waits with
 *         kbus_wait_for_message() and reads with kbus_ksock_read_next_msg();
 *         the replier does the same in the other order.
 *   tput  --dir D --listeners L [--payload B] [--messages M] [--batch B]
 *         [--recv-batch R] [--queue Q]
 *         announcements, 1 sender -> L listeners. --batch 1:
 *         kbus_ksock_send_msg() and poll() + kbus_ksock_read_next_msg(), one
 *         message per call; --batch B > 1: kbus_ksock_send_msgs() of B
 *         messages and kbus_ksock_wait_for_msgs(1024) (the batch calls,
 *         kbus extensions); --recv-batch sets the listeners' count apart
 *         (kbus_ksock_wait_for_msgs(R)). Sends are ALL_OR_WAIT and listener
 *         queues are raised (kbus_ksock_max_messages(Q), default 100 000), so
 *         a full queue makes the sender wait: nothing may be lost.
 *
 * Prints one RESULT line, as the other benchmarks of bench/ do (see
 * bench/bench_common.hpp: the listeners' protocol and the rate are the same).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libkbus/kbus.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char kEcho[] = "$.Bench.Echo";
static const char kTick[] = "$.Bench.Tick";
static const char *g_dir;

static unsigned long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void fail(const char *what, int rc)
{
	fprintf(stderr, "kbus_bench_c: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
	exit(3);
}

/* All n bytes read (writing == 0) or written; 0 on EOF or error. */
static int io_full(int fd, void *buf, size_t n, int writing)
{
	char *p = buf;
	while (n) {
		ssize_t r = writing ? write(fd, p, n) : read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return 0;
		p += r;
		n -= (size_t)r;
	}
	return 1;
}

static int read_full(int fd, void *buf, size_t n)
{
	return io_full(fd, buf, n, 0);
}

static int write_full(int fd, const void *buf, size_t n)
{
	return io_full(fd, (void *)buf, n, 1);
}

static kbus_ksock_t open_bus(void)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/kbus0", g_dir);
	kbus_ksock_t k = kbus_ksock_open_by_name(path, O_RDWR);
	if (k < 0)
		fail("kbus_ksock_open_by_name", k);
	return k;
}

/* One RESULT line, the format of bench_common.hpp's emit(). */
static void emit(const char *system, const char *test, long payload, long listeners,
		 double p50_us, double p99_us, double mean_us, long n, double rate, long sent,
		 long lost, const char *note)
{
	printf("RESULT {\"system\": \"%s\", \"test\": \"%s\", \"payload\": %ld, \"listeners\": %ld, "
	       "\"p50_us\": %.3f, \"p99_us\": %.3f, \"mean_us\": %.3f, \"n\": %ld, \"rate\": %.1f, "
	       "\"sent\": %ld, \"lost\": %ld, \"value\": %.3f, \"unit\": \"\", \"note\": \"%s\"}\n",
	       system, test, payload, listeners, p50_us, p99_us, mean_us, n, rate, sent, lost, -1.0,
	       note);
	fflush(stdout);
}

/* ---------------------------------------------------------------- rtt */

static void replier(int ready_fd)
{
	kbus_ksock_t k = open_bus();
	int rc = kbus_ksock_bind(k, kEcho, 1);
	if (rc < 0)
		fail("bind", rc);
	if (write(ready_fd, "r", 1) != 1)
		_exit(3);
	for (;;) {
		kbus_message_t *req = NULL, *rep = NULL;
		rc = kbus_wait_for_message(k, KBUS_KSOCK_READABLE);
		if (rc < 0)
			break;
		rc = kbus_ksock_read_next_msg(k, &req);
		if (rc < 0)
			break;
		if (!req)
			continue;
		rc = kbus_msg_create_entire_reply_to(&rep, req, kbus_msg_data_ptr(req), req->data_len, 0);
		if (rc == 0)
			rc = kbus_ksock_send_msg(k, rep, NULL);
		kbus_msg_delete(&rep);
		kbus_msg_delete(&req);
		if (rc < 0)
			break;
	}
	_exit(0);
}

static void rtt(long payload, long iterations)
{
	int ready[2];
	if (pipe(ready) != 0)
		fail("pipe", errno);
	fflush(stdout);
	pid_t child = fork();
	if (child == 0) {
		close(ready[0]);
		replier(ready[1]);
	}
	char c;
	if (read(ready[0], &c, 1) != 1)
		fail("replier did not start", EIO);

	kbus_ksock_t k = open_bus();
	char *data = malloc((size_t)payload);
	memset(data, 'x', (size_t)payload);
	kbus_message_t *req = NULL;
	int rc = kbus_msg_create_entire_request(&req, kEcho, sizeof kEcho - 1, data, (uint32_t)payload, 0);
	if (rc < 0)
		fail("create request", rc);
	long warm = iterations / 10, bad = 0;
	double *ns = malloc(sizeof(double) * (size_t)iterations);
	unsigned long long start = 0;
	for (long i = 0; i < warm + iterations; ++i) {
		if (i == warm)
			start = now_ns();
		unsigned long long t0 = now_ns();
		kbus_msg_id_t id;
		rc = kbus_ksock_send_msg(k, req, &id);
		if (rc < 0) {
			++bad;
			continue;
		}
		for (;;) {
			kbus_message_t *m = NULL;
			if (kbus_wait_for_message(k, KBUS_KSOCK_READABLE) < 0)
				fail("wait", EIO);
			if (kbus_ksock_read_next_msg(k, &m) < 0)
				fail("read", EIO);
			int mine = m && m->in_reply_to.network_id == id.network_id &&
				   m->in_reply_to.serial_num == id.serial_num;
			kbus_msg_delete(&m);
			if (mine)
				break;
		}
		if (i >= warm)
			ns[i - warm] = (double)(now_ns() - t0);
	}
	double elapsed = (double)(now_ns() - start);
	kbus_msg_delete(&req);
	kbus_ksock_close(k);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);

	qsort(ns, (size_t)iterations, sizeof(double), cmp_double);
	double sum = 0;
	for (long i = 0; i < iterations; ++i)
		sum += ns[i];
	long p99 = iterations * 99 / 100;
	if (p99 >= iterations)
		p99 = iterations - 1;
	emit("kbus C send+wait+read", "round trip", payload, 0, ns[iterations / 2] / 1000.0,
	     ns[p99] / 1000.0, sum / (double)iterations / 1000.0, iterations,
	     (double)iterations * 1e9 / elapsed, -1, -1, bad ? "failed sends" : "");
	free(ns);
	free(data);
}

/* ---------------------------------------------------------------- tput
 *
 * As bench_common.hpp's run_throughput: the first 8 bytes of each payload
 * are a sequence number, 0..M-1 for data and kEnd for the marker after it; a
 * listener stops after M data messages, at kEnd, or after idle_ms without a
 * message, and reports {received, time of the last one, out of order}.
 * Rate per listener = received / listeners / (last arrival - first send). */

static const uint64_t kEnd = ~(uint64_t)0 - 1;
enum { kIdleMs = 3000 };

struct report {
	uint64_t received, t_last, out_of_order;
};

struct counter {
	uint64_t expected, next;
	struct report rep;
};

/* Counts one message; 0 when the listener should stop. */
static int on_msg(struct counter *c, const kbus_message_t *m)
{
	uint64_t s = ~(uint64_t)0;
	if (m->data_len >= 8)
		memcpy(&s, kbus_msg_data_ptr(m), 8);
	if (s == kEnd)
		return 0;
	if (s != c->next)
		++c->rep.out_of_order;
	c->next = s + 1;
	++c->rep.received;
	c->rep.t_last = now_ns();
	return c->rep.received < c->expected;
}

static void listen_loop(int ready_fd, struct counter *c, int recv_batch, uint32_t queue)
{
	kbus_ksock_t k = open_bus();
	uint32_t max = queue;
	int rc = kbus_ksock_max_messages(k, &max);
	if (rc < 0)
		fail("max_messages", rc);
	rc = kbus_ksock_bind(k, kTick, 0);
	if (rc < 0)
		fail("bind", rc);
	write_full(ready_fd, "r", 1);
	if (recv_batch == 1) {
		/* The original calls: poll() for the idle timeout (the original
		 * kbus_wait_for_message has none), then read one message. */
		for (;;) {
			struct pollfd p = { k, POLLIN, 0 };
			if (poll(&p, 1, kIdleMs) <= 0)
				break;
			kbus_message_t *m = NULL;
			if (kbus_ksock_read_next_msg(k, &m) < 0)
				break;
			if (!m)
				continue;
			int more = on_msg(c, m);
			kbus_msg_delete(&m);
			if (!more)
				break;
		}
	} else {
		kbus_message_t **ms = malloc(sizeof(*ms) * (size_t)recv_batch);
		for (;;) {
			size_t got = 0;
			rc = kbus_ksock_wait_for_msgs(k, ms, (size_t)recv_batch, &got, kIdleMs);
			if (rc < 0 || got == 0)
				break;
			int more = 1;
			for (size_t i = 0; i < got; ++i) {
				if (more)
					more = on_msg(c, ms[i]);
				kbus_msg_delete(&ms[i]);
			}
			if (!more)
				break;
		}
		free(ms);
	}
	kbus_ksock_close(k);
}

struct sender {
	kbus_ksock_t k;
	long waits, failures;
};

static void after_failure(struct sender *s, int rc)
{
	if (rc == -EAGAIN) {
		/* Pending: kbusd delivers it when room appears; the Ksock is
		 * writable again then. */
		++s->waits;
		kbus_wait_for_message(s->k, KBUS_KSOCK_WRITABLE);
	} else {
		++s->failures;
		fprintf(stderr, "kbus_bench_c: send failed: %s\n", strerror(-rc));
	}
}

/* Sends msgs[0..n) in order, as one batch when there are several, waiting
 * for room whenever a listener's queue is full. */
static void send_all(struct sender *s, kbus_message_t **msgs, size_t n)
{
	if (n == 1) {
		int rc = kbus_ksock_send_msg(s->k, msgs[0], NULL);
		if (rc < 0)
			after_failure(s, rc);
		return;
	}
	size_t done = 0;
	while (done < n) {
		size_t attempted = 0;
		int rc = kbus_ksock_send_msgs(s->k, msgs + done, n - done, NULL, &attempted);
		done += attempted;
		if (rc == 0)
			return;
		after_failure(s, rc);
		if (attempted == 0)
			return; /* no message's failure: give up on this batch */
	}
}

static void tput(int listeners, long payload, long messages, int batch, int recv_batch,
		 uint32_t queue)
{
	const char *test = batch > 1 ? "fan-out, batch calls"
			   : recv_batch > 1 ? "fan-out, send one, read batch"
					    : "fan-out, one per call";
	int ready[2], result[2];
	if (pipe(ready) != 0 || pipe(result) != 0)
		fail("pipe", errno);
	pid_t *kids = calloc((size_t)listeners, sizeof(pid_t));
	for (int i = 0; i < listeners; ++i) {
		fflush(stdout);
		kids[i] = fork();
		if (kids[i] < 0)
			fail("fork", errno);
		if (kids[i] == 0) {
			close(ready[0]);
			close(result[0]);
			struct counter c;
			memset(&c, 0, sizeof c);
			c.expected = (uint64_t)messages;
			listen_loop(ready[1], &c, recv_batch, queue);
			write_full(result[1], &c.rep, sizeof c.rep);
			_exit(0);
		}
	}
	close(ready[1]);
	close(result[1]);
	for (int i = 0; i < listeners; ++i) {
		char ch;
		if (!read_full(ready[0], &ch, 1)) {
			for (int j = 0; j < listeners; ++j) {
				kill(kids[j], SIGKILL);
				waitpid(kids[j], NULL, 0);
			}
			emit("kbus C", test, payload, listeners, -1, -1, -1, 0, -1, -1, -1,
			     "failed: listener did not start");
			return;
		}
	}

	struct sender s = { open_bus(), 0, 0 };
	char *data = calloc(1, (size_t)payload);
	memset(data + 8, 'x', (size_t)payload - 8);
	/* The messages of one batch, each with its own sequence number. */
	kbus_message_t **pending = calloc((size_t)batch, sizeof(*pending));
	for (int i = 0; i < batch; ++i) {
		int rc = kbus_msg_create_entire(&pending[i], kTick, sizeof kTick - 1, data,
						(uint32_t)payload, KBUS_BIT_ALL_OR_WAIT);
		if (rc < 0)
			fail("create", rc);
	}
	size_t n = 0;
	const unsigned long long t0 = now_ns();
	for (long i = 0; i <= messages; ++i) {
		uint64_t seq = i < messages ? (uint64_t)i : kEnd;
		memcpy(kbus_msg_data_ptr(pending[n]), &seq, 8);
		if (++n == (size_t)batch) {
			send_all(&s, pending, n);
			n = 0;
		}
	}
	if (n)
		send_all(&s, pending, n);

	uint64_t received = 0, t_last = t0, ooo = 0;
	for (int i = 0; i < listeners; ++i) {
		struct report rep;
		if (read_full(result[0], &rep, sizeof rep)) {
			received += rep.received;
			if (rep.t_last > t_last)
				t_last = rep.t_last;
			ooo += rep.out_of_order;
		}
	}
	for (int i = 0; i < listeners; ++i)
		waitpid(kids[i], NULL, 0);
	kbus_ksock_close(s.k);
	close(ready[0]);
	close(result[0]);

	const uint64_t expected = (uint64_t)messages * (uint64_t)listeners;
	const double secs = (double)(t_last - t0) / 1e9;
	char note[256] = "";
	size_t at = 0;
	if (ooo)
		at += (size_t)snprintf(note + at, sizeof note - at, "out of order: %llu",
				       (unsigned long long)ooo);
	if (s.waits)
		at += (size_t)snprintf(note + at, sizeof note - at,
				       "%sa full queue made the sender wait %ldx (ALL_OR_WAIT)",
				       at ? "; " : "", s.waits);
	if (s.failures)
		snprintf(note + at, sizeof note - at, "%sfailed sends %ld", at ? (s.waits ? ", " : "; ") : "",
			 s.failures);
	emit("kbus C", test, payload, listeners, -1, -1, -1, 0,
	     secs > 0 ? (double)received / listeners / secs : 0, messages,
	     (long)(expected - (received < expected ? received : expected)), note);
	for (int i = 0; i < batch; ++i)
		kbus_msg_delete(&pending[i]);
	free(pending);
	free(data);
	free(kids);
}

/* ---------------------------------------------------------------- main */

static void usage(void)
{
	fprintf(stderr, "usage: kbus_bench_c rtt|tput --dir DIR [options]\n"
			"(see the comment at the top of bench/kbus_c.c)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *cmd = NULL;
	long payload = 64, iterations = 20000, listeners = 1, messages = 100000, batch = 1,
	     recv_batch = 0, queue = 100000;
	for (int i = 1; i < argc; ++i) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2) != 0) {
			if (cmd)
				usage();
			cmd = a;
			continue;
		}
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (!strcmp(a, "--dir"))
			g_dir = v;
		else if (!strcmp(a, "--payload"))
			payload = strtol(v, NULL, 10);
		else if (!strcmp(a, "--iterations"))
			iterations = strtol(v, NULL, 10);
		else if (!strcmp(a, "--listeners"))
			listeners = strtol(v, NULL, 10);
		else if (!strcmp(a, "--messages"))
			messages = strtol(v, NULL, 10);
		else if (!strcmp(a, "--batch"))
			batch = strtol(v, NULL, 10);
		else if (!strcmp(a, "--recv-batch"))
			recv_batch = strtol(v, NULL, 10);
		else if (!strcmp(a, "--queue"))
			queue = strtol(v, NULL, 10);
		else
			usage();
	}
	if (!cmd)
		usage();
	if (!g_dir) {
		fprintf(stderr, "kbus_bench_c: --dir is required\n");
		return 2;
	}
	if (payload < 8)
		payload = 8;
	if (!strcmp(cmd, "rtt")) {
		if (iterations < 1)
			iterations = 1;
		rtt(payload, iterations);
	} else if (!strcmp(cmd, "tput")) {
		if (batch < 1)
			batch = 1;
		if (recv_batch < 1)
			recv_batch = batch > 1 ? 1024 : 1;
		if (listeners < 1)
			listeners = 1;
		if (messages < 1)
			messages = 1;
		tput((int)listeners, payload, messages, (int)batch, (int)recv_batch, (uint32_t)queue);
	} else {
		usage();
	}
	return 0;
}
