#include "nlroute.h"
#include "util.h"

#include <errno.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <sys/socket.h>

static void sockp(struct nl_sock **s)
{
	if (*s)
		nl_socket_free(*s);
}
static void addrp(struct nl_addr **a)
{
	if (*a)
		nl_addr_put(*a);
}
#define _cleanup_nlsock_ __attribute__((cleanup(sockp)))
#define _cleanup_nladdr_ __attribute__((cleanup(addrp)))

static struct nl_sock *nl_open(struct myce_error **err)
{
	struct nl_sock *s = nl_socket_alloc();
	if (!s) {
		myce_error_set(err, ENOMEM, "netlink socket");
		return NULL;
	}
	int r = nl_connect(s, NETLINK_ROUTE);
	if (r < 0) {
		nl_socket_free(s);
		myce_error_set(err, EIO, "netlink connect: %s", nl_geterror(r));
		return NULL;
	}
	return s;
}

static int addr_change(const char *ifname, const char *cidr, bool add, struct myce_error **err)
{
	unsigned idx = if_nametoindex(ifname);
	if (!idx)
		return myce_error_errno(err, "interface %s", ifname);
	_cleanup_nlsock_ struct nl_sock *s = nl_open(err);
	if (!s)
		return -1;
	_cleanup_nladdr_ struct nl_addr *local = NULL;
	int r = nl_addr_parse(cidr, AF_INET, &local);
	if (r < 0)
		return myce_error_set(err, EINVAL, "address %s: %s", cidr, nl_geterror(r));
	struct rtnl_addr *a = rtnl_addr_alloc();
	rtnl_addr_set_ifindex(a, (int)idx);
	rtnl_addr_set_local(a, local);
	rtnl_addr_set_prefixlen(a, nl_addr_get_prefixlen(local));
	r = add ? rtnl_addr_add(s, a, NLM_F_REPLACE) : rtnl_addr_delete(s, a, 0);
	rtnl_addr_put(a);
	if (r < 0 && !(add && r == -NLE_EXIST) && !(!add && (r == -NLE_NOADDR || r == -NLE_OBJ_NOTFOUND)))
		return myce_error_set(err, EIO, "%s address %s on %s: %s", add ? "add" : "delete", cidr,
				      ifname, nl_geterror(r));
	return 0;
}

int myce_nl_addr_add(const char *ifname, const char *cidr, struct myce_error **err)
{
	return addr_change(ifname, cidr, true, err);
}

int myce_nl_addr_del(const char *ifname, const char *cidr, struct myce_error **err)
{
	return addr_change(ifname, cidr, false, err);
}

static struct rtnl_route *route_new(const char *dst, struct myce_error **err)
{
	_cleanup_nladdr_ struct nl_addr *d = NULL;
	int r = nl_addr_parse(dst, AF_INET, &d);
	if (r < 0) {
		myce_error_set(err, EINVAL, "route destination %s: %s", dst, nl_geterror(r));
		return NULL;
	}
	struct rtnl_route *rt = rtnl_route_alloc();
	rtnl_route_set_family(rt, AF_INET);
	rtnl_route_set_table(rt, RT_TABLE_MAIN);
	rtnl_route_set_dst(rt, d);
	return rt;
}

int myce_nl_route_replace(const char *dst, const char *via, const char *dev, struct myce_error **err)
{
	_cleanup_nlsock_ struct nl_sock *s = nl_open(err);
	if (!s)
		return -1;
	struct rtnl_route *rt = route_new(dst, err);
	if (!rt)
		return -1;
	struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
	if (dev) {
		unsigned idx = if_nametoindex(dev);
		if (!idx) {
			rtnl_route_nh_free(nh);
			rtnl_route_put(rt);
			return myce_error_errno(err, "route %s: interface %s", dst, dev);
		}
		rtnl_route_nh_set_ifindex(nh, (int)idx);
	}
	if (via) {
		_cleanup_nladdr_ struct nl_addr *gw = NULL;
		int r = nl_addr_parse(via, AF_INET, &gw);
		if (r < 0) {
			rtnl_route_nh_free(nh);
			rtnl_route_put(rt);
			return myce_error_set(err, EINVAL, "route gateway %s: %s", via, nl_geterror(r));
		}
		rtnl_route_nh_set_gateway(nh, gw);
	}
	rtnl_route_add_nexthop(rt, nh);
	rtnl_route_set_scope(rt, via ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
	int r = rtnl_route_add(s, rt, NLM_F_REPLACE | NLM_F_CREATE);
	rtnl_route_put(rt);
	if (r < 0)
		return myce_error_set(err, EIO, "replace route %s via %s dev %s: %s", dst, via ? via : "-",
				      dev ? dev : "-", nl_geterror(r));
	return 0;
}

int myce_nl_route_del(const char *dst, struct myce_error **err)
{
	_cleanup_nlsock_ struct nl_sock *s = nl_open(err);
	if (!s)
		return -1;
	struct rtnl_route *rt = route_new(dst, err);
	if (!rt)
		return -1;
	rtnl_route_set_scope(rt, RT_SCOPE_NOWHERE);
	int r = rtnl_route_delete(s, rt, 0);
	rtnl_route_put(rt);
	if (r < 0 && r != -NLE_OBJ_NOTFOUND && r != -NLE_NOADDR)
		return myce_error_set(err, EIO, "delete route %s: %s", dst, nl_geterror(r));
	return 0;
}
