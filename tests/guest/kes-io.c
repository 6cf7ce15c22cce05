// SPDX-License-Identifier: GPL-2.0-only
/*
 * kes-io - one system call on a file, with its result in a parseable form.
 *
 *   kes-io write FILE DATA      one write(2) of DATA (may be empty)
 *   kes-io junk FILE N          one write(2) of N bytes of junk
 *   kes-io read FILE            open and read FILE to its end
 *   kes-io read-as UID FILE     drop to UID/GID, then the same
 *   kes-io write-as UID FILE DATA  drop to UID/GID, then write DATA to FILE
 *
 * Prints "ok N" (bytes) or "error ENAME" and exits 0 either way; exits 2 on
 * bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int result(ssize_t n)
{
	if (n < 0)
		printf("error %s\n", strerrorname_np(errno));
	else
		printf("ok %zd\n", n);
	return 0;
}

static void drop_to(const char *id)
{
	uid_t uid = strtoul(id, NULL, 0);

	if (setgid(uid) || setuid(uid)) {
		perror("kes-io: setuid");
		exit(2);
	}
}

static int do_write(const char *path, const char *buf, size_t len)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0)
		return result(-1);
	return result(write(fd, buf, len));
}

static int do_read(const char *path)
{
	char buf[4096];
	ssize_t n, total = 0;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return result(-1);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += n;
	return result(n < 0 ? n : total);
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "write"))
		return do_write(argv[2], argv[3], strlen(argv[3]));

	if (argc == 4 && !strcmp(argv[1], "junk")) {
		size_t n = strtoul(argv[3], NULL, 0);
		char *buf = malloc(n + 1);

		if (!buf)
			return 2;
		for (size_t i = 0; i < n; i++)
			buf[i] = "0junk\n\x01\xff"[i % 8];
		return do_write(argv[2], buf, n);
	}

	if (argc == 3 && !strcmp(argv[1], "read"))
		return do_read(argv[2]);

	if (argc == 4 && !strcmp(argv[1], "read-as")) {
		drop_to(argv[2]);
		return do_read(argv[3]);
	}

	if (argc == 5 && !strcmp(argv[1], "write-as")) {
		drop_to(argv[2]);
		return do_write(argv[3], argv[4], strlen(argv[4]));
	}

	fprintf(stderr, "usage: kes-io write FILE DATA | junk FILE N | read FILE | read-as UID FILE | write-as UID FILE DATA\n");
	return 2;
}
