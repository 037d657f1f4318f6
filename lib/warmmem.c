/* Warm memory for the freeze (warmmem.h). */
#include "warmmem.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct myce_warmmem {
	void *p;
	size_t bytes;
};

static size_t mem_available(void)
{
	_cleanup_free_ char *mi = myce_read_file("/proc/meminfo", NULL);
	const char *p = mi ? strstr(mi, "MemAvailable:") : NULL;
	return p ? (size_t)(atof(p + 13) * 1024) : 0;
}

struct myce_warmmem *myce_warmmem_new(size_t bytes)
{
	size_t cap = mem_available() / 4;
	if (bytes > cap)
		bytes = cap;
	bytes &= ~(size_t)4095;
	if (bytes == 0)
		return NULL;
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	/* 4 KiB pages, like the ones the freeze will want. */
	madvise(p, bytes, MADV_NOHUGEPAGE);
	for (size_t off = 0; off < bytes; off += 4096)
		((volatile char *)p)[off] = 1;
	struct myce_warmmem *w = xzalloc(sizeof(*w));
	w->p = p;
	w->bytes = bytes;
	return w;
}

void myce_warmmem_release(struct myce_warmmem *w)
{
	if (!w)
		return;
	munmap(w->p, w->bytes);
	free(w);
}

size_t myce_warmmem_bytes(const struct myce_warmmem *w)
{
	return w ? w->bytes : 0;
}
