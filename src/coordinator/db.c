/* The coordinator's SQLite state: WAL, one writer, versioned schema. */
#include "coord.h"

#include "util.h"

#include <errno.h>
#include <string.h>

static const char *const schema[] = {
	/* version 1 */
	"CREATE TABLE nodes(name TEXT PRIMARY KEY, ip TEXT NOT NULL, registered_us INTEGER NOT NULL);"
	"CREATE TABLE apps(name TEXT PRIMARY KEY, port INTEGER NOT NULL, svc_ip TEXT NOT NULL UNIQUE,"
	"  cmd TEXT NOT NULL, pod_id INTEGER, migrating INTEGER NOT NULL DEFAULT 0, created_us INTEGER NOT NULL);"
	"CREATE TABLE pods(id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, node TEXT NOT NULL,"
	"  addr TEXT NOT NULL, carried TEXT NOT NULL DEFAULT '[]', state TEXT NOT NULL, role TEXT NOT NULL,"
	"  created_us INTEGER NOT NULL);"
	"CREATE TABLE migrations(id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, src_node TEXT NOT NULL,"
	"  dst_node TEXT NOT NULL, src_pod INTEGER NOT NULL, dst_pod INTEGER, mode TEXT NOT NULL,"
	"  phase TEXT NOT NULL, outcome TEXT, reason TEXT, result TEXT, handoff INTEGER NOT NULL DEFAULT 0,"
	"  created_us INTEGER NOT NULL, updated_us INTEGER NOT NULL);"
	"CREATE TABLE phases(migration_id INTEGER NOT NULL, phase TEXT NOT NULL, t_us INTEGER NOT NULL);",
	/* version 2: the registry of containers announced by Execution Agents */
	"CREATE TABLE containers(id INTEGER PRIMARY KEY AUTOINCREMENT, pod TEXT NOT NULL, container TEXT NOT NULL,"
	"  node TEXT NOT NULL, pod_id INTEGER, labels TEXT NOT NULL DEFAULT '{}', endpoint TEXT, role TEXT NOT NULL,"
	"  registered_us INTEGER NOT NULL, UNIQUE(pod, container));",
	/* version 3: Kubernetes-mode migrations (docs/k8s-migration.md): the
	 * migrations row holds the phases (app = "namespace/pod", src_pod and
	 * dst_pod the nodes' local pod ids); this one the API objects. */
	"CREATE TABLE k8s_migrations(migration_id INTEGER PRIMARY KEY REFERENCES migrations(id),"
	"  namespace TEXT NOT NULL, src_name TEXT NOT NULL, src_uid TEXT NOT NULL, dst_name TEXT NOT NULL,"
	"  dst_uid TEXT, template_hash TEXT, src_addr TEXT NOT NULL, carried TEXT NOT NULL DEFAULT '[]');",
	/* version 4: the addresses a Kubernetes-mode migration's target pod
	 * carries, reserved until its node releases them (no connection left)
	 * or the pod goes away: the kubelets allocate pod addresses themselves
	 * and ask for this list first (k8s_carry.c). */
	"CREATE TABLE k8s_carried(addr TEXT NOT NULL, migration_id INTEGER NOT NULL REFERENCES migrations(id),"
	"  pod TEXT NOT NULL, PRIMARY KEY(addr, migration_id));",
};

int db_open(struct coord *c, const char *path, struct myce_error **err)
{
	if (sqlite3_open(path, &c->db) != SQLITE_OK)
		return myce_error_set(err, EIO, "open database %s: %s", path, sqlite3_errmsg(c->db));
	sqlite3_busy_timeout(c->db, 5000);
	if (db_exec(c, err, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-512;") < 0)
		return -1;
	_cleanup_json_ cJSON *v = db_query_one(c, "PRAGMA user_version");
	int version = (int)myce_json_num(v, "user_version", 0);
	for (int i = version; i < (int)ARRAY_SIZE(schema); i++) {
		if (db_exec(c, err, "BEGIN; %s PRAGMA user_version=%d; COMMIT;", schema[i], i + 1) < 0) {
			db_exec(c, NULL, "ROLLBACK;");
			return myce_error_wrap(err, "schema migration to version %d", i + 1);
		}
	}
	return 0;
}

int db_exec(struct coord *c, struct myce_error **err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *sql = sqlite3_vmprintf(fmt, ap);
	va_end(ap);
	char *msg = NULL;
	int r = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
	sqlite3_free(sql);
	if (r != SQLITE_OK) {
		myce_error_set(err, EIO, "database: %s", msg ? msg : sqlite3_errstr(r));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static cJSON *query_v(struct coord *c, bool one, const char *fmt, va_list ap)
{
	char *sql = sqlite3_vmprintf(fmt, ap);
	sqlite3_stmt *st = NULL;
	cJSON *rows = cJSON_CreateArray();
	if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) == SQLITE_OK) {
		while (sqlite3_step(st) == SQLITE_ROW) {
			cJSON *row = cJSON_CreateObject();
			for (int i = 0; i < sqlite3_column_count(st); i++) {
				const char *name = sqlite3_column_name(st, i);
				switch (sqlite3_column_type(st, i)) {
				case SQLITE_INTEGER:
					cJSON_AddNumberToObject(row, name, (double)sqlite3_column_int64(st, i));
					break;
				case SQLITE_FLOAT:
					cJSON_AddNumberToObject(row, name, sqlite3_column_double(st, i));
					break;
				case SQLITE_NULL:
					cJSON_AddNullToObject(row, name);
					break;
				default:
					cJSON_AddStringToObject(row, name, (const char *)sqlite3_column_text(st, i));
				}
			}
			cJSON_AddItemToArray(rows, row);
			if (one)
				break;
		}
	}
	sqlite3_finalize(st);
	sqlite3_free(sql);
	if (!one)
		return rows;
	cJSON *first = cJSON_DetachItemFromArray(rows, 0);
	cJSON_Delete(rows);
	return first;
}

cJSON *db_query(struct coord *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cJSON *r = query_v(c, false, fmt, ap);
	va_end(ap);
	return r;
}

cJSON *db_query_one(struct coord *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cJSON *r = query_v(c, true, fmt, ap);
	va_end(ap);
	return r;
}

int64_t db_last_id(struct coord *c)
{
	return sqlite3_last_insert_rowid(c->db);
}
