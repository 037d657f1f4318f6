#include "cluster.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

char *myce_node_name(int idx) { return xasprintf("node%d", idx); }
char *myce_node_netns(int idx) { return xasprintf("myce-node%d", idx); }
char *myce_node_ip(int idx) { return xasprintf("10.77.0.%d", 10 + idx); }
char *myce_node_hostveth(int idx) { return xasprintf("myce-n%d", idx); }
char *myce_node_podnet(int idx) { return xasprintf("10.78.%d.0/24", idx); }
char *myce_pod_netns(long id) { return xasprintf("myce-pod%ld", id); }
char *myce_pod_veth(long id) { return xasprintf("mycp%ld", id); }
char *myce_pod_dir(long id) { return xasprintf(MYCE_RUN_DIR "/pods/%ld", id); }
char *myce_coord_url(void) { return xasprintf("http://%s:%d", MYCE_BRIDGE_IP, MYCE_COORD_PORT); }
char *myce_token_path(void) { return xstrdup(MYCE_RUN_DIR "/token"); }

int myce_node_index(const char *name)
{
	if (!name || strncmp(name, "node", 4) != 0 || name[4] < '1' || name[4] > '9')
		return -1;
	char *end;
	long v = strtol(name + 4, &end, 10);
	if (*end || v < 1 || v > MYCE_MAX_NODES || name[4] == '0')
		return -1;
	return (int)v;
}
