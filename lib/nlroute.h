/* Addresses and routes through rtnetlink (libnl-route), in the calling
 * thread's network namespace.  Used on the migration's hot path, where
 * spawning `ip` would cost milliseconds per call. */
#ifndef MYCE_NLROUTE_H
#define MYCE_NLROUTE_H

#include "error.h"

/* cidr like "10.78.1.5/32". */
int myce_nl_addr_add(const char *ifname, const char *cidr, struct myce_error **err);
int myce_nl_addr_del(const char *ifname, const char *cidr, struct myce_error **err);
/* Replaces the route to dst (cidr) by one via gateway `via` (may be NULL) out of
 * device `dev` (may be NULL if via is given). */
int myce_nl_route_replace(const char *dst, const char *via, const char *dev, struct myce_error **err);
/* Deletes the route to dst; a missing route is not an error. */
int myce_nl_route_del(const char *dst, struct myce_error **err);

#endif
