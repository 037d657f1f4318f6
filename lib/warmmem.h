/* Warm memory for the freeze.
 *
 * On the VMs this runs on, a page the guest has not touched for a while
 * costs ~2 ms per MiB the first time it is used again (the host backs it
 * lazily), while a page freed a moment ago is reused at memory speed.  The
 * freeze allocates hundreds of MiB at once (CRIU's page images on tmpfs,
 * the destination's rebuilt images, the restored process's memory):
 * measured for a 512 MiB Redis, CRIU's "memory write time" was 836 ms into
 * fresh pages and 115-125 ms into just-freed ones.  So before the freeze a
 * node touches that much memory and frees it right when the freeze begins.
 * On hardware without that cost it is ~0.2 s of work outside the freeze. */
#ifndef MYCE_WARMMEM_H
#define MYCE_WARMMEM_H

#include <stddef.h>

struct myce_warmmem;

/* Maps and touches `bytes` (capped at a quarter of MemAvailable).  NULL if
 * bytes is 0 or nothing could be mapped; never fails otherwise. */
struct myce_warmmem *myce_warmmem_new(size_t bytes);
/* Frees it (its pages go back to the kernel's free lists); NULL is fine. */
void myce_warmmem_release(struct myce_warmmem *w);
size_t myce_warmmem_bytes(const struct myce_warmmem *w);

#endif
