/* Holding new connections off a process about to be checkpointed: see
 * synhold.h. */
#include "synhold.h"

#include "nft.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TCP_SYN_RECV 0x03
#define TCP_LISTEN 0x0A

int myce_synhold_begin(struct myce_error **err)
{
	/* Priority -300: before conntrack, so a dropped SYN leaves no state.
	 * Not on loopback: CRIU itself connects over it (its TCP repair check),
	 * as may the application's own containers. */
	return myce_nft_run("add table inet " MYCE_SYNHOLD_TABLE "\n"
			    "add chain inet " MYCE_SYNHOLD_TABLE " in { type filter hook prerouting priority -300; }\n"
			    "add rule inet " MYCE_SYNHOLD_TABLE " in iifname != \"lo\" tcp flags & (syn | ack) == syn drop\n",
			    err);
}

void myce_synhold_end(void)
{
	myce_nft_run("delete table inet " MYCE_SYNHOLD_TABLE "\n", NULL);
}

int myce_synhold_count(const char *text)
{
	int n = 0;
	const char *line = strchr(text, '\n'); /* skip the header */
	while (line && *++line) {
		unsigned st;
		unsigned long txq, rxq;
		/* sl local rem st tx_queue:rx_queue ... */
		if (sscanf(line, "%*s %*s %*s %x %lx:%lx", &st, &txq, &rxq) == 3) {
			if (st == TCP_SYN_RECV)
				n++;
			else if (st == TCP_LISTEN)
				n += (int)rxq; /* a listener's rx_queue is its accept backlog */
		}
		line = strchr(line, '\n');
	}
	return n;
}

static int in_flight(void)
{
	int n = 0;
	static const char *const files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		_cleanup_free_ char *text = myce_read_file(files[i], NULL);
		if (text)
			n += myce_synhold_count(text);
	}
	return n;
}

int myce_synhold_drain(int timeout_ms)
{
	int64_t end = myce_now_us() + (int64_t)timeout_ms * 1000;
	int n;
	while ((n = in_flight()) > 0 && myce_now_us() < end)
		usleep(1000);
	return n;
}
