/* static_open.c - a statically linked program that opens /dev/kbus0, as a
 * program for the original module would: `kbus run` cannot reach it
 * (docs/device.md), so the open fails. Prints "open: <errno name>". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	int fd = open("/dev/kbus0", O_RDWR);
	if (fd >= 0) {
		printf("open: ok\n");
		close(fd);
		return 0;
	}
	printf("open: %s\n", errno == ENOENT ? "ENOENT" : "other error");
	return 0;
}
