/* nftables through the nft program (nft.h: myce_nft_exec).  nft joins its
 * arguments into one buffer and runs it as one transaction, exactly as
 * libnftables' nft_run_cmd_from_buffer does for myce_nft_run. */
#include "nft.h"

#include "cmd.h"
#include "config.h"

int myce_nft_exec(const char *cmds, struct myce_error **err)
{
	return MYCE_CMD(err, MYCE_NFT_BINARY, cmds);
}
