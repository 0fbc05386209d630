/* kbus_bench_c: request/reply round trip through kbusd with the C API of
 * <libkbus/kbus.h> (the original libkbus calls of KBUS-SPEC.md §12.2), on
 * both sides, the generic way: the requester sends with
 * kbus_ksock_send_msg(), waits with kbus_wait_for_message() and reads with
 * kbus_ksock_read_next_msg(); the replier does the same in the other order.
 *
 *   kbus_bench_c rtt --dir DIR [--payload B] [--iterations N]
 *
 * Prints one RESULT line as the other benchmarks of bench/ do.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libkbus/kbus.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char kName[] = "$.Bench.Echo";

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

static kbus_ksock_t open_bus(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/kbus0", dir);
	kbus_ksock_t k = kbus_ksock_open_by_name(path, O_RDWR);
	if (k < 0)
		fail("kbus_ksock_open_by_name", k);
	return k;
}

static void replier(const char *dir, int ready_fd)
{
	kbus_ksock_t k = open_bus(dir);
	int rc = kbus_ksock_bind(k, kName, 1);
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

int main(int argc, char **argv)
{
	const char *dir = NULL;
	long payload = 64, iterations = 20000;
	for (int i = 1; i < argc; ++i) {
		if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--payload") && i + 1 < argc)
			payload = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--iterations") && i + 1 < argc)
			iterations = strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "rtt") != 0) {
			fprintf(stderr, "usage: kbus_bench_c rtt --dir DIR [--payload B] [--iterations N]\n");
			return 2;
		}
	}
	if (!dir) {
		fprintf(stderr, "kbus_bench_c: --dir is required\n");
		return 2;
	}
	int ready[2];
	if (pipe(ready) != 0)
		return 3;
	fflush(stdout);
	pid_t child = fork();
	if (child == 0) {
		close(ready[0]);
		replier(dir, ready[1]);
	}
	char c;
	if (read(ready[0], &c, 1) != 1)
		fail("replier did not start", EIO);

	kbus_ksock_t k = open_bus(dir);
	char *data = malloc((size_t)payload);
	memset(data, 'x', (size_t)payload);
	kbus_message_t *req = NULL;
	int rc = kbus_msg_create_entire_request(&req, kName, sizeof kName - 1, data, (uint32_t)payload, 0);
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
	printf("RESULT {\"system\": \"kbus C send+wait+read\", \"test\": \"round trip\", "
	       "\"payload\": %ld, \"listeners\": 0, \"p50_us\": %.3f, \"p99_us\": %.3f, "
	       "\"mean_us\": %.3f, \"n\": %ld, \"rate\": %.1f, \"sent\": -1, \"lost\": -1, "
	       "\"value\": -1, \"unit\": \"\", \"note\": \"%s\"}\n",
	       payload, ns[iterations / 2] / 1000.0, ns[p99] / 1000.0, sum / (double)iterations / 1000.0,
	       iterations, (double)iterations * 1e9 / elapsed, bad ? "failed sends" : "");
	free(ns);
	free(data);
	return 0;
}
