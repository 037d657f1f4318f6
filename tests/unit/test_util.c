/* Unit tests for lib/util.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static char *root; /* temp dir of the current test */

static int setup(void **state)
{
	root = xstrdup("/tmp/test_util.XXXXXX");
	return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
	myce_rm_rf(root);
	free(root);
	return 0;
}

static void test_name_valid(void **state)
{
	static const char *const good[] = { "a", "web", "pg-1", "a-b-c", "0", "9lives", "x0-y1" };
	static const char *const bad[] = { "", "-a", "a-", "A", "Web", "a_b", "a.b", "a b", "é",
					   "a/b", "a\nb" };
	for (size_t i = 0; i < ARRAY_SIZE(good); i++)
		if (!myce_name_valid(good[i]))
			fail_msg("\"%s\" should be valid", good[i]);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (myce_name_valid(bad[i]))
			fail_msg("\"%s\" should be invalid", bad[i]);
	assert_false(myce_name_valid(NULL));
	char longname[70];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_false(myce_name_valid(longname)); /* longer than a DNS label */
}

static void test_pid_runs(void **state)
{
	(void)state;
	assert_true(myce_pid_runs(getpid(), "test_util"));
	assert_false(myce_pid_runs(getpid(), "test_uti"));
	assert_false(myce_pid_runs(getpid(), "myce-agent"));
	assert_false(myce_pid_runs(0x7ffffff0, "test_util")); /* no such process */
}

static void test_const_eq(void **state)
{
	assert_true(myce_const_eq("", ""));
	assert_true(myce_const_eq("secret", "secret"));
	assert_false(myce_const_eq("secret", "secreT"));
	assert_false(myce_const_eq("secret", "secret2"));
	assert_false(myce_const_eq("secret2", "secret"));
	assert_false(myce_const_eq("", "x"));
	assert_false(myce_const_eq("x", ""));
	assert_false(myce_const_eq("abab", "ab")); /* repeats of the shorter one */
}

static void test_mkdir_p_rm_rf(void **state)
{
	char *deep = xasprintf("%s/a/b/c", root);
	assert_int_equal(myce_mkdir_p(deep, 0755), 0);
	assert_int_equal(myce_mkdir_p(deep, 0755), 0); /* exists: fine */
	struct stat st;
	assert_int_equal(stat(deep, &st), 0);
	assert_true(S_ISDIR(st.st_mode));

	char *file = xasprintf("%s/a/b/file", root);
	assert_int_equal(myce_write_file_atomic(file, "x", 1, 0600), 0);
	char *under_file = xasprintf("%s/a/b/file/sub", root);
	assert_int_equal(myce_mkdir_p(under_file, 0755), -ENOTDIR);

	char *a = xasprintf("%s/a", root);
	char *link = xasprintf("%s/a/b/c/link", root);
	assert_int_equal(symlink(root, link), 0); /* must not be followed */
	assert_int_equal(myce_rm_rf(a), 0);
	assert_int_equal(stat(a, &st), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(stat(root, &st), 0);
	assert_int_equal(myce_rm_rf(a), 0); /* already gone: success */
	free(deep);
	free(file);
	free(under_file);
	free(a);
	free(link);
}

static void test_write_file_atomic(void **state)
{
	char *path = xasprintf("%s/state.json", root);
	assert_int_equal(myce_write_file_atomic(path, "{\"v\":1}", 7, 0640), 0);
	size_t len;
	char *data = myce_read_file(path, &len);
	assert_non_null(data);
	assert_int_equal(len, 7);
	assert_string_equal(data, "{\"v\":1}");
	free(data);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	mode_t mask = umask(0);
	umask(mask);
	assert_int_equal(st.st_mode & 0777, 0640 & ~mask);

	assert_int_equal(myce_write_file_atomic(path, "{}", 2, 0640), 0); /* replace */
	data = myce_read_file(path, &len);
	assert_string_equal(data, "{}");
	free(data);

	/* No temp file left behind. */
	DIR *d = opendir(root);
	struct dirent *de;
	int n = 0;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	assert_int_equal(n, 1);

	char *nodir = xasprintf("%s/missing/x", root);
	assert_int_equal(myce_write_file_atomic(nodir, "x", 1, 0600), -ENOENT);
	free(nodir);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_const_eq),
		cmocka_unit_test(test_pid_runs),
		cmocka_unit_test_setup_teardown(test_mkdir_p_rm_rf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_file_atomic, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
