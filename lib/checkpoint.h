/* Checkpoint and restore of a process tree through libcriu (`criu swrk`),
 * with established TCP connections and the nftables network lock.  Runs in
 * the caller's namespaces: the Execution Agent calls it from inside its pod,
 * so the pod's own namespaces are never part of the image. */
#ifndef MYCE_CHECKPOINT_H
#define MYCE_CHECKPOINT_H

#include "error.h"

#include <stdbool.h>
#include <stdint.h>

struct myce_ckpt_result {
	int64_t start_wall_us; /* just before CRIU was asked (freeze starts there) */
	int64_t end_wall_us;
	double ms;             /* wall time of the CRIU call */
	int pid;               /* restore: the restored root's PID */
};

/* Dumps the tree rooted at pid into imgdir (created if needed; log dump.log
 * in it).  The tree is killed after a successful dump; the network lock stays
 * in place (remove it with myce_nft_delete_tables_prefix("CRIU-")). */
int myce_ckpt_dump(int pid, const char *imgdir, struct myce_ckpt_result *res, struct myce_error **err);
/* Restores from imgdir.  post_restore (may be NULL) runs when CRIU reports
 * "post-restore": the tasks exist and are about to resume.  tcp_close
 * restores established connections closed (the stop-and-copy baseline). */
int myce_ckpt_restore(const char *imgdir, bool tcp_close, void (*post_restore)(void), struct myce_ckpt_result *res,
		      struct myce_error **err);
/* `criu check` through the service: 0 if CRIU works here. */
int myce_ckpt_check(struct myce_error **err);
/* Path of the criu binary used (compiled in, overridable by $MYCE_CRIU). */
const char *myce_ckpt_binary(void);

#endif
