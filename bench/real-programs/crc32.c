// crc32: table-driven CRC-32 (the zlib polynomial) over a 1 MiB buffer, byte by byte: a byte load, a table
// lookup and a few ALU operations per byte, as in zlib, gzip and every archive format.
#include <string.h>

#include "real-program.h"

static uint32_t table[256];
static uint8_t buf[1 << 20];

static void make_table(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
}

static uint32_t crc32(uint32_t crc, const uint8_t *p, size_t n) {
  crc = ~crc;
  while (n--) crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

int main(int argc, char **argv) {
  unsigned scale = rp_scale(argc, argv);
  struct rp_timer t = rp_begin();
  make_table();
  uint64_t seed = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < sizeof buf; i += 8) {
    uint64_t r = rp_rand(&seed);
    memcpy(buf + i, &r, 8);
  }
  uint64_t sum = 0;
  uint32_t crc = 0;
  for (unsigned pass = 0; pass < 24 * scale; pass++) {
    // Each pass starts at a different offset, so no two passes see the same bytes in the same order.
    size_t off = (pass * 4099u) % 4096u;
    crc = crc32(crc, buf + off, sizeof buf - off);
    sum = sum * 31 + crc;
  }
  rp_end("crc32", t, sum);
  return 0;
}
