// SPDX-License-Identifier: GPL-2.0-only
/*
 * kes-vga - repaint the VGA text screen many times, through /dev/mem.
 *
 *   kes-vga ROUNDS USEC   ROUNDS times: give each of the 80x25 cells a new
 *                         character and colour, then sleep USEC microseconds
 *
 * Under bochs every repaint reaches the emulator's `term` display, which
 * writes it to its pseudo-terminal: a few hundred repaints are far more than
 * a pty holds when nobody reads it.  tests/test_harness.py uses this to prove
 * that tests/run-in-vm drains that pty.  Prints "ok ROUNDS"; exits 1 on error,
 * 2 on bad usage.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define VGA_TEXT	0xb8000
#define VGA_CELLS	(80 * 25)

int main(int argc, char **argv)
{
	volatile uint16_t *screen;
	unsigned long rounds, usec, r;
	char *end;
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: kes-vga ROUNDS USEC\n");
		return 2;
	}
	rounds = strtoul(argv[1], &end, 10);
	if (*end)
		return 2;
	usec = strtoul(argv[2], &end, 10);
	if (*end)
		return 2;
	fd = open("/dev/mem", O_RDWR | O_SYNC);
	if (fd < 0) {
		perror("kes-vga: /dev/mem");
		return 1;
	}
	screen = mmap(NULL, VGA_CELLS * 2, PROT_READ | PROT_WRITE, MAP_SHARED,
		      fd, VGA_TEXT);
	if (screen == MAP_FAILED) {
		perror("kes-vga: mmap");
		return 1;
	}
	/*
	 * Neighbouring cells differ in character and colour, so that the
	 * display has to redraw every cell: no run of blanks or of one colour
	 * to shorten into a clear-to-end-of-line.
	 */
	for (r = 0; r < rounds; r++) {
		for (unsigned long i = 0; i < VGA_CELLS; i++) {
			unsigned long k = i + r;

			screen[i] = (uint16_t)((k % 7 + 1) << 8 | ('A' + k % 26));
		}
		usleep(usec);
	}
	printf("ok %lu\n", rounds);
	return 0;
}
