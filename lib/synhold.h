/* Holding new connections off a process about to be checkpointed.
 *
 * CRIU dumps established connections (TCP repair) but skips those still in
 * their handshake or waiting in a listen backlog (--tcp-skip-in-flight):
 * after the restore their clients get a reset.  So just before the dump, in
 * the pod's network namespace, new SYNs are dropped (clients retransmit
 * them, after the freeze) and we wait, briefly, until no connection is half
 * open and every listen backlog is empty.  Called by the agent, in the
 * pod's namespaces. */
#ifndef MYCE_SYNHOLD_H
#define MYCE_SYNHOLD_H

#include "error.h"

#define MYCE_SYNHOLD_TABLE "myce-synhold"

/* Drops incoming TCP SYNs (not SYN-ACKs) in this network namespace. */
int myce_synhold_begin(struct myce_error **err);
/* Polls /proc/net/tcp{,6} until no socket is in SYN_RECV and every
 * listening socket's accept queue is empty, for at most timeout_ms.
 * Returns how many connections were still in flight (0 = drained). */
int myce_synhold_drain(int timeout_ms);
/* Removes the drop (idempotent). */
void myce_synhold_end(void);

/* For tests: connections in flight in one /proc/net/tcp-format text. */
int myce_synhold_count(const char *proc_net_tcp);

#endif
