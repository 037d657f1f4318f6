/* Unit tests for lib/synhold.c: counting connections in flight. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "synhold.h"

/* /proc/net/tcp as the kernel prints it: a listener with 2 connections in
 * its accept backlog, one with none, one half-open connection (SYN_RECV),
 * and established / time-wait ones that do not count. */
static const char *TCP =
	"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	"   0: 0100007F:18EB 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n"
	"   1: 0202000A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n"
	"   2: 0202000A:18EB 0100000A:C350 03 00000000:00000000 01:00000066 00000000     0        0 0 1 0 100 0 0 10 0\n"
	"   3: 0202000A:18EB 0100000A:C351 01 00000000:00000010 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n"
	"   4: 0202000A:18EB 0100000A:C352 06 00000000:00000000 03:00000F9E 00000000     0        0 0 3 0\n";

static void test_count(void **state)
{
	(void)state;
	assert_int_equal(myce_synhold_count(TCP), 3);
	assert_int_equal(myce_synhold_count("  sl  local_address rem_address   st\n"), 0);
	assert_int_equal(myce_synhold_count(""), 0);
	assert_int_equal(myce_synhold_count("header\ngarbage line\n"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_count),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
