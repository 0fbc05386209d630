/* original_defns.c - a program that includes the original kernel module's
 * public header by its original name, <linux/kbus_defns.h>, and nothing
 * else of kbus (KBUS-SPEC.md §12.1): the layout and ioctl numbers must be
 * the original's. Prints "linux/kbus_defns.h: ok" and exits 0 if they are.
 */
#include <stdio.h>

#include <linux/kbus_defns.h>

int main(void)
{
	int bad = 0;
	/* §3.1: the header's fixed part; §3.2 the guards; §4.5 the ioctls. */
	bad |= KBUS_MSG_START_GUARD != 0x7375624B;
	bad |= KBUS_MSG_END_GUARD != 0x4B627573;
	bad |= KBUS_IOC_MAGIC != 'k';
	bad |= KBUS_MAX_NAME_LEN != 1000;
	bad |= sizeof(struct kbus_msg_id) != 8;
	bad |= sizeof(struct kbus_message_header) != (sizeof(void *) == 8 ? 88 : 72);
	if (bad) {
		printf("linux/kbus_defns.h: wrong layout or constants\n");
		return 1;
	}
	printf("linux/kbus_defns.h: ok\n");
	return 0;
}
