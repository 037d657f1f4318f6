/* Host-side network state, kube-proxy style: service addresses DNAT'ed to
 * their endpoint by an nftables map, and /32 host routes that make a pod
 * address follow its workload where traffic enters the cluster. */
#include "coord.h"

#include "cluster.h"
#include "nft.h"
#include "nlroute.h"
#include "util.h"

int net_services_init(struct coord *c, struct myce_error **err)
{
	/* "add" then "delete" makes the delete succeed whether or not the table existed. */
	if (myce_nft_exec("add table ip " MYCE_SVC_TABLE "\ndelete table ip " MYCE_SVC_TABLE "\n"
			 "add table ip " MYCE_SVC_TABLE "\n"
			 "add map ip " MYCE_SVC_TABLE " endpoints { type ipv4_addr . inet_service : ipv4_addr . inet_service; }\n"
			 "add chain ip " MYCE_SVC_TABLE " output { type nat hook output priority -100; }\n"
			 "add chain ip " MYCE_SVC_TABLE " prerouting { type nat hook prerouting priority -100; }\n"
			 "add rule ip " MYCE_SVC_TABLE " output dnat ip to ip daddr . tcp dport map @endpoints\n"
			 "add rule ip " MYCE_SVC_TABLE " prerouting dnat ip to ip daddr . tcp dport map @endpoints\n",
			 err) < 0)
		return myce_error_wrap(err, "service table");
	_cleanup_json_ cJSON *rows =
		db_query(c, "SELECT a.svc_ip, a.port, p.addr FROM apps a JOIN pods p ON p.id = a.pod_id");
	const cJSON *r;
	cJSON_ArrayForEach(r, rows)
	{
		if (net_service_set(myce_json_str(r, "svc_ip"), (int)myce_json_num(r, "port", 0), NULL,
				    myce_json_str(r, "addr"), err) < 0)
			return -1;
	}
	return 0;
}

int net_service_set(const char *svc_ip, int port, const char *old_ep, const char *ep_ip, struct myce_error **err)
{
	/* One transaction: the old mapping is replaced atomically. */
	_cleanup_free_ char *del = old_ep ? xasprintf("delete element ip " MYCE_SVC_TABLE " endpoints { %s . %d }\n",
						      svc_ip, port)
					  : xstrdup("");
	_cleanup_free_ char *cmd = xasprintf("%sadd element ip " MYCE_SVC_TABLE " endpoints { %s . %d : %s . %d }\n",
					     del, svc_ip, port, ep_ip, port);
	return myce_nft_exec(cmd, err);
}

int net_service_del(const char *svc_ip, int port, struct myce_error **err)
{
	_cleanup_free_ char *cmd = xasprintf("delete element ip " MYCE_SVC_TABLE " endpoints { %s . %d }\n",
					     svc_ip, port);
	return myce_nft_exec(cmd, err);
}

int net_route_addr(const char *addr, const char *via, struct myce_error **err)
{
	_cleanup_free_ char *cidr = xasprintf("%s/32", addr);
	return myce_nl_route_replace(cidr, via, NULL, err);
}

void net_route_addr_del(const char *addr)
{
	_cleanup_free_ char *cidr = xasprintf("%s/32", addr);
	myce_nl_route_del(cidr, NULL);
}
