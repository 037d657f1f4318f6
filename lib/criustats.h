/* CRIU's own timings of a dump or restore: the stats-dump / stats-restore
 * image CRIU leaves in the images directory (images/stats.proto: a
 * StatsEntry holding a DumpStatsEntry or a RestoreStatsEntry), so that a
 * migration can say where its freeze went. */
#ifndef MYCE_CRIUSTATS_H
#define MYCE_CRIUSTATS_H

#include "error.h"

#include <stdint.h>

struct myce_criu_stats {
	/* dump, microseconds */
	uint64_t freezing_us, frozen_us, memdump_us, memwrite_us;
	uint64_t pages_scanned, pages_written;
	/* restore, microseconds */
	uint64_t forking_us, restore_us;
	uint64_t pages_restored;
};

/* Reads imgdir/stats-dump (dump = true) or imgdir/stats-restore.  Fields the
 * image lacks stay 0. */
int myce_criu_stats_read(const char *imgdir, bool dump, struct myce_criu_stats *out,
			 struct myce_error **err);

#endif
