/* Kubernetes mode: the addresses a migrated pod carries for its clients'
 * established connections (docs/k8s-migration.md, "Carried addresses").
 *
 * The embedded mode's coordinator allocates every pod address and so never
 * hands out one a pod still carries.  In Kubernetes mode the kubelets
 * allocate pod addresses from their node's range themselves; once the
 * source pod S is gone, its address is free as far as its node can see,
 * while the target T still carries it.  So each migration reserves what T
 * carries (table k8s_carried, written with the migration's record), every
 * kubelet reads the reservations (GET /v1/carried) before it allocates, and
 * a reservation ends when T's node releases the address (no connection
 * uses it any more: POST /v1/pods/{T's local id}/release) or T goes away
 * for good (`remove`).  SQLite keeps them across restarts of everything.
 *
 * A reservation counts while its migration is in flight or completed; a
 * failed or rolled-back migration's rows reserve nothing (the source kept
 * its address).  A chained migration (T migrates on) reserves the same
 * addresses again under its own id: only the newest holder may release. */
#include "coord.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <string.h>

#define ACTIVE "(m.outcome IS NULL OR m.outcome = 'completed')"

int k8s_carry_reserve(struct coord *c, long mid, const char *pod, const cJSON *carried, struct myce_error **err)
{
	const cJSON *a;
	cJSON_ArrayForEach(a, carried)
	{
		if (!cJSON_IsString(a))
			continue;
		if (db_exec(c, err, "INSERT OR REPLACE INTO k8s_carried(addr, migration_id, pod) VALUES(%Q, %ld, %Q)",
			    a->valuestring, mid, pod) < 0)
			return myce_error_wrap(err, "reserve carried address %s", a->valuestring);
	}
	return 0;
}

cJSON *k8s_carry_list(struct coord *c)
{
	return db_query(c, "SELECT c.addr, MAX(c.migration_id) AS migration_id, c.pod, m.dst_node AS node"
			   " FROM k8s_carried c JOIN migrations m ON m.id = c.migration_id WHERE " ACTIVE
			   " GROUP BY c.addr ORDER BY c.addr");
}

int k8s_carry_release(struct coord *c, long local_id, const char *addr, struct myce_error **err)
{
	/* The newest active reservation of addr must be this pod's: an older
	 * holder (a target that migrated on, whose sockets left with its
	 * application) must not free what its successor still carries. */
	_cleanup_json_ cJSON *r = db_query_one(
		c, "SELECT c.migration_id, c.pod, m.dst_pod, m.outcome FROM k8s_carried c"
		   " JOIN migrations m ON m.id = c.migration_id WHERE c.addr = %Q AND " ACTIVE
		   " ORDER BY c.migration_id DESC LIMIT 1", addr);
	if (!r || (long)myce_json_num(r, "dst_pod", -1) != local_id)
		return myce_error_set(err, ENOENT, "no running pod %ld carries %s", local_id, addr);
	if (!myce_json_str(r, "outcome"))
		return myce_error_set(err, EBUSY, "pod %ld is migrating", local_id);
	_cleanup_json_ cJSON *busy = db_query_one(
		c, "SELECT m.id FROM migrations m JOIN k8s_migrations k ON k.migration_id = m.id"
		   " WHERE m.outcome IS NULL AND m.src_pod = %ld", local_id);
	if (busy)
		return myce_error_set(err, EBUSY, "pod %ld is migrating", local_id);
	if (db_exec(c, err, "DELETE FROM k8s_carried WHERE addr = %Q", addr) < 0)
		return -1;
	net_route_addr_del(addr);
	log_info("pod %s (local %ld): carried address %s released", myce_json_str(r, "pod"), local_id, addr);
	return 0;
}

void k8s_carry_drop_pod(struct coord *c, const char *pod)
{
	_cleanup_json_ cJSON *rows = db_query(
		c, "SELECT c.addr FROM k8s_carried c JOIN migrations m ON m.id = c.migration_id WHERE c.pod = %Q AND " ACTIVE
		   " AND c.migration_id = (SELECT MAX(c2.migration_id) FROM k8s_carried c2 JOIN migrations m2"
		   " ON m2.id = c2.migration_id WHERE c2.addr = c.addr AND (m2.outcome IS NULL OR m2.outcome = 'completed'))",
		pod);
	db_exec(c, NULL, "DELETE FROM k8s_carried WHERE pod = %Q", pod);
	const cJSON *a;
	cJSON_ArrayForEach(a, rows)
	{
		/* Its holder is gone and took the connections with it. */
		const char *addr = myce_json_str(a, "addr");
		net_route_addr_del(addr);
		log_info("pod %s removed: its carried address %s is free again", pod, addr);
	}
}
