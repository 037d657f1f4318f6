#include "nft.h"
#include "util.h"

#include <errno.h>
#include <nftables/libnftables.h>
#include <string.h>

static void ctxp(struct nft_ctx **c)
{
	if (*c)
		nft_ctx_free(*c);
}
#define _cleanup_nft_ __attribute__((cleanup(ctxp)))

static char *trim(const char *s)
{
	char *c = xstrdup(s);
	size_t n = strlen(c);
	while (n > 0 && (c[n - 1] == '\n' || c[n - 1] == ' '))
		c[--n] = '\0';
	return c;
}

char *myce_nft_query(const char *cmds, struct myce_error **err)
{
	_cleanup_nft_ struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!ctx) {
		myce_error_set(err, ENOMEM, "nft context");
		return NULL;
	}
	nft_ctx_buffer_output(ctx);
	nft_ctx_buffer_error(ctx);
	if (nft_run_cmd_from_buffer(ctx, cmds) != 0) {
		_cleanup_free_ char *e = trim(nft_ctx_get_error_buffer(ctx));
		myce_error_set(err, EINVAL, "nft: %s", *e ? e : "command failed");
		return NULL;
	}
	return xstrdup(nft_ctx_get_output_buffer(ctx));
}

int myce_nft_run(const char *cmds, struct myce_error **err)
{
	_cleanup_free_ char *out = myce_nft_query(cmds, err);
	return out ? 0 : -1;
}

int myce_nft_delete_tables_prefix(const char *prefix, struct myce_error **err)
{
	_cleanup_free_ char *out = myce_nft_query("list tables", err);
	if (!out)
		return -1;
	/* Lines look like "table inet CRIU-1234". */
	char *save = NULL;
	for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char family[32], name[256];
		if (sscanf(line, "table %31s %255s", family, name) != 2)
			continue;
		if (strncmp(name, prefix, strlen(prefix)) != 0)
			continue;
		_cleanup_free_ char *cmd = xasprintf("delete table %s %s", family, name);
		if (myce_nft_run(cmd, err) < 0)
			return -1;
	}
	return 0;
}
