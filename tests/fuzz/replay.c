/* Runs fuzz inputs through the harness without libFuzzer: the seed corpus as
 * a unit test under any compiler (and sanitizer), and a crash file found by
 * the fuzzer under gdb or gcc's ASan.
 *
 *     api_replay FILE|DIR...     exit 0 when every input passed the checks */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	size_t n = 0;
	char *data = myce_read_file(path, &n);
	if (!data) {
		fprintf(stderr, "api_replay: cannot read %s\n", path);
		return -1;
	}
	fprintf(stderr, "api_replay: %s\n", path); /* the last one named is the culprit of an abort */
	/* An exact-size copy: the harness must not read past the input. */
	uint8_t *copy = xmalloc(n ? n : 1);
	memcpy(copy, data, n);
	free(data);
	LLVMFuzzerTestOneInput(copy, n);
	free(copy);
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: api_replay FILE|DIR...\n");
		return 2;
	}
	LLVMFuzzerInitialize(&argc, &argv);
	int inputs = 0, errors = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "api_replay: %s: not found\n", argv[i]);
			errors++;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			errors += run_file(argv[i]) < 0;
			inputs++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		char **names = NULL;
		size_t count = 0;
		for (struct dirent *de; d && (de = readdir(d));) {
			if (de->d_name[0] == '.')
				continue;
			names = xrealloc(names, (count + 1) * sizeof(*names));
			names[count++] = xasprintf("%s/%s", argv[i], de->d_name);
		}
		if (d)
			closedir(d);
		qsort(names, count, sizeof(*names), cmp);
		for (size_t k = 0; k < count; k++) {
			errors += run_file(names[k]) < 0;
			inputs++;
			free(names[k]);
		}
		free(names);
	}
	printf("api_replay: %d input(s), %d unreadable\n", inputs, errors);
	return errors || !inputs ? 1 : 0;
}
