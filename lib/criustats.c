/* CRIU's stats images (criustats.h).  The file: two u32 magics, one u32
 * (little-endian) length, then the StatsEntry protobuf; decoded by hand,
 * field numbers from CRIU's images/stats.proto. */
#include "criustats.h"
#include "util.h"

#include <errno.h>
#include <string.h>

/* One varint at *p (< end); false if malformed. */
static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; *p < end && shift < 64; shift += 7) {
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/* Calls back for every varint field of the message in [p, end); an
 * embedded message (wire type 2) with number `descend` is entered. */
static bool walk(const uint8_t *p, const uint8_t *end, unsigned descend, bool dump,
		 struct myce_criu_stats *s)
{
	while (p < end) {
		uint64_t key, v;
		if (!varint(&p, end, &key))
			return false;
		unsigned field = (unsigned)(key >> 3), type = key & 7;
		if (type == 2) {
			if (!varint(&p, end, &v) || v > (uint64_t)(end - p))
				return false;
			if (field == descend && !walk(p, p + v, 0, dump, s))
				return false;
			p += v;
			continue;
		}
		if (type != 0 || !varint(&p, end, &v))
			return false; /* only varints in these messages */
		if (dump) {
			switch (field) {
			case 1: s->freezing_us = v; break;
			case 2: s->frozen_us = v; break;
			case 3: s->memdump_us = v; break;
			case 4: s->memwrite_us = v; break;
			case 5: s->pages_scanned = v; break;
			case 7: s->pages_written = v; break;
			}
		} else {
			switch (field) {
			case 3: s->forking_us = v; break;
			case 4: s->restore_us = v; break;
			case 5: s->pages_restored = v; break;
			}
		}
	}
	return true;
}

int myce_criu_stats_read(const char *imgdir, bool dump, struct myce_criu_stats *out,
			 struct myce_error **err)
{
	memset(out, 0, sizeof(*out));
	_cleanup_free_ char *path = xasprintf("%s/stats-%s", imgdir, dump ? "dump" : "restore");
	size_t n = 0;
	_cleanup_free_ char *buf = myce_read_file(path, &n);
	if (!buf)
		return myce_error_errno(err, "read %s", path);
	const uint8_t *p = (const uint8_t *)buf;
	if (n < 12)
		return myce_error_set(err, EPROTO, "%s: too short", path);
	uint32_t len = (uint32_t)p[8] | (uint32_t)p[9] << 8 | (uint32_t)p[10] << 16 | (uint32_t)p[11] << 24;
	if (len > n - 12 || !walk(p + 12, p + 12 + len, dump ? 1 : 2, dump, out))
		return myce_error_set(err, EPROTO, "%s: not a CRIU stats image", path);
	return 0;
}
