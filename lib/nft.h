/* nftables through libnftables, in the calling thread's network namespace.
 * Rule sets are given in nft's own language; a buffer is one transaction. */
#ifndef MYCE_NFT_H
#define MYCE_NFT_H

#include "error.h"

int myce_nft_run(const char *cmds, struct myce_error **err);
/* The same transaction through a short-lived `nft` process (nft_exec.c), for
 * a long-running program that should not keep libnftables and its
 * dependencies mapped (the coordinator: ~1 MB of resident memory). */
int myce_nft_exec(const char *cmds, struct myce_error **err);
/* Runs cmds and returns nft's textual output (caller frees) or NULL on error. */
char *myce_nft_query(const char *cmds, struct myce_error **err);
/* Deletes every table whose name starts with prefix (e.g. CRIU's "CRIU-"). */
int myce_nft_delete_tables_prefix(const char *prefix, struct myce_error **err);

#endif
