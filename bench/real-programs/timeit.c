// timeit: runs a command and prints the real-programs result line for it, so that programs the bench did
// not write (sqlite's speedtest1, busybox gzip and sha256sum, esbuild) report the same way as its own:
//   timeit NAME [-m PREFIX] COMMAND [ARG...]
// The checksum is FNV-1a over the command's standard output, or with -m over its lines that start with
// PREFIX only (those are printed too; the rest, e.g. per-test timings, are dropped). ns and instret cover
// the whole command, start-up included (instret counts every instruction the hart retires meanwhile, the
// kernel's for this process included).
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "real-program.h"

static uint64_t hash = 0xcbf29ce484222325ull;

static void fnv(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) hash = (hash ^ (uint8_t)p[i]) * 0x100000001b3ull;
}

static char line[4096];
static size_t line_len;

// With a prefix: keeps the lines that start with it (truncated at the buffer's size).
static void filter(const char *prefix, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (line_len < sizeof line) line[line_len++] = p[i];
    if (p[i] != '\n') continue;
    if (line_len >= strlen(prefix) && memcmp(line, prefix, strlen(prefix)) == 0) {
      fnv(line, line_len);
      fwrite(line, 1, line_len, stdout);
    }
    line_len = 0;
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: timeit NAME [-m PREFIX] COMMAND [ARG...]\n");
    return 2;
  }
  const char *name = argv[1], *prefix = NULL;
  int first = 2;
  if (strcmp(argv[2], "-m") == 0) {
    if (argc < 5) {
      fprintf(stderr, "timeit: -m needs a PREFIX and a COMMAND\n");
      return 2;
    }
    prefix = argv[3];
    first = 4;
  }
  int fd[2];
  if (pipe(fd)) {
    perror("timeit: pipe");
    return 1;
  }
  struct rp_timer t = rp_begin();
  pid_t pid = fork();
  if (pid < 0) {
    perror("timeit: fork");
    return 1;
  }
  if (pid == 0) {
    dup2(fd[1], 1);
    close(fd[0]);
    close(fd[1]);
    execvp(argv[first], argv + first);
    fprintf(stderr, "timeit: cannot run %s\n", argv[first]);
    _exit(127);
  }
  close(fd[1]);
  static char buf[65536];
  ssize_t n;
  while ((n = read(fd[0], buf, sizeof buf)) > 0) {
    if (prefix) filter(prefix, buf, (size_t)n);
    else fnv(buf, (size_t)n);
  }
  int status;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    printf("real-program: %s failed (status 0x%x)\n", name, status);
    return 1;
  }
  rp_end(name, t, hash);
  return 0;
}
