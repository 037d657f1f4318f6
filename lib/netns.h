/* Network namespaces: named ones under /run/netns (compatible with iproute2's
 * `ip netns`), and running a function inside one from a private thread so the
 * calling thread's namespace never changes. */
#ifndef MYCE_NETNS_H
#define MYCE_NETNS_H

#include "error.h"

/* Creates /run/netns/NAME (a new network namespace with lo up).  Fails with
 * EEXIST when it exists. */
int myce_netns_create(const char *name, struct myce_error **err);
/* Removes /run/netns/NAME; a missing one is not an error. */
int myce_netns_delete(const char *name, struct myce_error **err);
/* Opens /run/netns/NAME (O_RDONLY|O_CLOEXEC); returns fd or negative error. */
int myce_netns_open(const char *name, struct myce_error **err);
bool myce_netns_exists(const char *name);

typedef int (*myce_netns_fn)(void *arg, struct myce_error **err);
/* Runs fn(arg, err) on a new thread that first enters the network namespace
 * nsfd; returns fn's result. */
int myce_netns_run(int nsfd, myce_netns_fn fn, void *arg, struct myce_error **err);

#endif
