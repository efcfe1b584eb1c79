/*
 * tsvm-reseed: mixes the host's random bytes (hex on stdin) into the kernel's input pool and reseeds the
 * kernel's CRNG from it at once, so that two guests restored from one memory image stop producing the same
 * /dev/urandom bytes (docs/guest-agent.md, "Identity after a restore").
 *
 * Linux 6.1 (drivers/char/random.c): a write to /dev/urandom only mixes into the input pool; the CRNG that
 * /dev/urandom and getrandom() read keeps its key until its next timed reseed (up to 60 s away). Only the
 * RNDRESEEDCRNG ioctl reseeds it now; RNDADDENTROPY first mixes the bytes in (and credits them, which
 * makes a CRNG that was not yet ready ready, as RNDRESEEDCRNG requires). Both need CAP_SYS_ADMIN. busybox
 * has no ioctl applet, hence this program.
 *
 * Usage: tsvm-reseed < HEX   (32 to 512 bytes as hex digits; whitespace ignored)
 * Exit status: 0 reseeded, 1 an ioctl or open failed (message on stderr), 2 bad input.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define MIN_BYTES 32
#define MAX_BYTES 512

/* struct rand_pool_info ends in a flexible array; this one has room for MAX_BYTES. */
static struct {
  int entropy_count;
  int buf_size;
  unsigned char buf[MAX_BYTES];
} pool_info;

static int hex_value(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int main(void) {
  unsigned char text[2 * MAX_BYTES + 256];
  size_t length = 0;
  ssize_t got;
  while ((got = read(0, text + length, sizeof(text) - length)) > 0) {
    length += (size_t)got;
    if (length == sizeof(text)) {
      fprintf(stderr, "tsvm-reseed: more than %d bytes of hex on stdin\n", MAX_BYTES);
      return 2;
    }
  }
  if (got < 0) {
    fprintf(stderr, "tsvm-reseed: reading stdin: %s\n", strerror(errno));
    return 2;
  }
  int bytes = 0, high = -1;
  for (size_t i = 0; i < length; i++) {
    int c = text[i];
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') continue;
    int v = hex_value(c);
    if (v < 0) {
      fprintf(stderr, "tsvm-reseed: stdin holds a character that is not a hex digit (0x%02x)\n", c);
      return 2;
    }
    if (high < 0) {
      high = v;
    } else {
      if (bytes == MAX_BYTES) {
        fprintf(stderr, "tsvm-reseed: more than %d bytes of hex on stdin\n", MAX_BYTES);
        return 2;
      }
      pool_info.buf[bytes++] = (unsigned char)(high << 4 | v);
      high = -1;
    }
  }
  if (high >= 0 || bytes < MIN_BYTES) {
    fprintf(stderr, "tsvm-reseed: expected %d to %d bytes as an even number of hex digits, got %d%s\n",
            MIN_BYTES, MAX_BYTES, bytes, high >= 0 ? " and an odd digit" : "");
    return 2;
  }
  int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "tsvm-reseed: opening /dev/urandom: %s\n", strerror(errno));
    return 1;
  }
  /* The host's bytes come from its CSPRNG: credit them in full. */
  pool_info.entropy_count = bytes * 8;
  pool_info.buf_size = bytes;
  if (ioctl(fd, RNDADDENTROPY, &pool_info) != 0) {
    fprintf(stderr, "tsvm-reseed: RNDADDENTROPY: %s\n", strerror(errno));
    return 1;
  }
  if (ioctl(fd, RNDRESEEDCRNG) != 0) {
    fprintf(stderr, "tsvm-reseed: RNDRESEEDCRNG: %s\n", strerror(errno));
    return 1;
  }
  memset(pool_info.buf, 0, sizeof(pool_info.buf));
  close(fd);
  return 0;
}
