// A parallel stress program for a Linux guest (linux-stress.test.ts runs it on 2 and 4 vCPUs): in each round,
// threads fight over a pthread mutex and a condition variable (futexes between threads), processes fight over
// a lock built on the raw futex syscall in shared memory (futexes between processes), a ring of processes
// passes a token through pipes, and every process streams a checksummed buffer back to its parent through a
// pipe. Every result is known in advance, so one wrong value — a lost wake-up, a lost increment, a torn pipe
// write — prints FAIL and exits 1; a lost wake-up that never comes back is the test's timeout. Prints
// "STRESS OK rounds=N" at the end.
//
// Usage: linux-stress WORKERS ROUNDS [SECONDS [STOPFILE]]
//   rounds repeat until SECONDS passed, and with STOPFILE until that file exists
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MUTEX_ITERS 2000
#define PINGPONG_ITERS 300
#define FUTEX_ITERS 1000
#define RING_LAPS 40
#define STREAM_BYTES (64 * 1024)

static int workers;

static void fail(const char *what, long got, long want) {
  printf("STRESS FAIL %s: got %ld, want %ld\n", what, got, want);
  fflush(stdout);
  _exit(1);
}

static void check(int ok, const char *what) {
  if (!ok) {
    printf("STRESS FAIL %s: %s\n", what, strerror(errno));
    fflush(stdout);
    _exit(1);
  }
}

// --- threads: a contended mutex, and pairs ping-ponging on a condition variable -------------------------

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long locked_counter;
static atomic_long atomic_counter;

struct pair {
  pthread_mutex_t m;
  pthread_cond_t c;
  int turn; // whose turn: 0 or 1
  long passes;
};

struct thread_arg {
  struct pair *pair;
  int side;
};

static void *thread_main(void *p) {
  struct thread_arg *a = p;
  for (int i = 0; i < MUTEX_ITERS; i++) {
    pthread_mutex_lock(&lock);
    long v = locked_counter;
    if ((i & 63) == 0) sched_yield(); // hold the lock across a reschedule now and then: waiters sleep
    locked_counter = v + 1;
    pthread_mutex_unlock(&lock);
    atomic_fetch_add(&atomic_counter, 1);
  }
  struct pair *pr = a->pair;
  for (int i = 0; i < PINGPONG_ITERS; i++) {
    pthread_mutex_lock(&pr->m);
    while (pr->turn != a->side) pthread_cond_wait(&pr->c, &pr->m);
    pr->passes++;
    pr->turn = 1 - a->side;
    pthread_cond_signal(&pr->c);
    pthread_mutex_unlock(&pr->m);
  }
  return NULL;
}

static void threads_round(void) {
  int n = workers * 2; // even: threads go in pairs
  pthread_t t[64];
  struct thread_arg args[64];
  struct pair pairs[32];
  locked_counter = 0;
  atomic_store(&atomic_counter, 0);
  for (int i = 0; i < n / 2; i++) {
    pthread_mutex_init(&pairs[i].m, NULL);
    pthread_cond_init(&pairs[i].c, NULL);
    pairs[i].turn = 0;
    pairs[i].passes = 0;
  }
  for (int i = 0; i < n; i++) {
    args[i].pair = &pairs[i / 2];
    args[i].side = i & 1;
    errno = pthread_create(&t[i], NULL, thread_main, &args[i]);
    check(errno == 0, "pthread_create");
  }
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  if (locked_counter != (long)n * MUTEX_ITERS) fail("mutex counter", locked_counter, (long)n * MUTEX_ITERS);
  if (atomic_load(&atomic_counter) != (long)n * MUTEX_ITERS)
    fail("atomic counter", atomic_load(&atomic_counter), (long)n * MUTEX_ITERS);
  for (int i = 0; i < n / 2; i++)
    if (pairs[i].passes != 2 * PINGPONG_ITERS) fail("condvar passes", pairs[i].passes, 2 * PINGPONG_ITERS);
}

// --- processes: a futex lock in shared memory --------------------------------------------------------

struct shared {
  atomic_int word; // 0 free, 1 locked, 2 locked with waiters (Drepper, "Futexes Are Tricky", mutex 2)
  long counter;
};

static long futex(atomic_int *uaddr, int op, int val) {
  return syscall(SYS_futex, uaddr, op, val, NULL, NULL, 0);
}

static void futex_lock(atomic_int *w) {
  int c = 0;
  if (atomic_compare_exchange_strong(w, &c, 1)) return;
  if (c != 2) c = atomic_exchange(w, 2);
  while (c != 0) {
    futex(w, FUTEX_WAIT, 2);
    c = atomic_exchange(w, 2);
  }
}

static void futex_unlock(atomic_int *w) {
  if (atomic_fetch_sub(w, 1) != 1) {
    atomic_store(w, 0);
    futex(w, FUTEX_WAKE, 1);
  }
}

static void futex_round(void) {
  struct shared *s = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  check(s != MAP_FAILED, "mmap");
  atomic_store(&s->word, 0);
  s->counter = 0;
  for (int i = 0; i < workers; i++) {
    pid_t pid = fork();
    check(pid >= 0, "fork");
    if (pid == 0) {
      for (int k = 0; k < FUTEX_ITERS; k++) {
        futex_lock(&s->word);
        long v = s->counter;
        if ((k & 31) == 0) sched_yield();
        s->counter = v + 1;
        futex_unlock(&s->word);
      }
      _exit(0);
    }
  }
  for (int i = 0; i < workers; i++) {
    int status;
    check(wait(&status) > 0, "wait");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("futex child status", status, 0);
  }
  if (s->counter != (long)workers * FUTEX_ITERS) fail("futex counter", s->counter, (long)workers * FUTEX_ITERS);
  munmap(s, 4096);
}

// --- processes: a token around a ring of pipes, and checksummed streams to the parent -------------------

static void read_all(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    check(r > 0, "read");
    p += r;
    n -= (size_t)r;
  }
}

static void write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t r = write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    check(r > 0, "write");
    p += r;
    n -= (size_t)r;
  }
}

static uint64_t fill_stream(unsigned char *buf, int id, int round) {
  uint64_t x = 0x9e3779b97f4a7c15ULL * (uint64_t)(id + 1) + (uint64_t)round, sum = 0;
  for (int i = 0; i < STREAM_BYTES; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    buf[i] = (unsigned char)x;
    sum = sum * 31 + buf[i];
  }
  return sum;
}

static uint64_t sum_stream(const unsigned char *buf) {
  uint64_t sum = 0;
  for (int i = 0; i < STREAM_BYTES; i++) sum = sum * 31 + buf[i];
  return sum;
}

static void pipes_round(int round) {
  int n = workers * 2;
  int ring[64][2], back[64][2];
  for (int i = 0; i < n; i++) check(pipe(ring[i]) == 0 && pipe(back[i]) == 0, "pipe");
  for (int i = 0; i < n; i++) {
    pid_t pid = fork();
    check(pid >= 0, "fork");
    if (pid == 0) {
      // Child i reads the token from ring[i] and passes it, plus i + 1, to ring[(i + 1) % n].
      int in = ring[i][0], out = ring[(i + 1) % n][1];
      for (int j = 0; j < n; j++) {
        if (j != i) close(ring[j][0]);
        if (j != (i + 1) % n) close(ring[j][1]);
        close(back[j][0]);
        if (j != i) close(back[j][1]);
      }
      static unsigned char buf[STREAM_BYTES];
      uint64_t sum = fill_stream(buf, i, round);
      for (int lap = 0; lap < RING_LAPS; lap++) {
        if (i != 0 || lap > 0) {
          long token;
          read_all(in, &token, sizeof token);
          token += i + 1;
          write_all(out, &token, sizeof token);
        } else {
          long token = 1;
          write_all(out, &token, sizeof token);
        }
      }
      write_all(back[i][1], &sum, sizeof sum);
      write_all(back[i][1], buf, STREAM_BYTES);
      if (i == 0) {
        long token;
        read_all(in, &token, sizeof token);
        write_all(back[i][1], &token, sizeof token);
      }
      _exit(0);
    }
  }
  for (int i = 0; i < n; i++) {
    close(ring[i][0]);
    close(ring[i][1]);
    close(back[i][1]);
  }
  static unsigned char buf[STREAM_BYTES], want[STREAM_BYTES];
  for (int i = 0; i < n; i++) {
    uint64_t sum;
    read_all(back[i][0], &sum, sizeof sum);
    read_all(back[i][0], buf, STREAM_BYTES);
    uint64_t expect = fill_stream(want, i, round);
    if (sum != expect || sum_stream(buf) != expect || memcmp(buf, want, STREAM_BYTES) != 0)
      fail("pipe stream checksum of child", i, i);
    if (i == 0) {
      long token;
      read_all(back[0][0], &token, sizeof token);
      // The token starts at 1 and gains i + 1 at every child but child 0's first send, every lap; child 0
      // adds 1 on each of its reads (RING_LAPS - 1 reads in its loop); its final read is sent back as is.
      long laps_sum = (long)n * (n + 1) / 2;
      long expected = 1 + RING_LAPS * (laps_sum - 1) + (RING_LAPS - 1) * 1;
      if (token != expected) fail("ring token", token, expected);
    }
    close(back[i][0]);
  }
  for (int i = 0; i < n; i++) {
    int status;
    check(wait(&status) > 0, "wait");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail("pipe child status", status, 0);
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: linux-stress WORKERS ROUNDS [SECONDS [STOPFILE]]\n");
    return 2;
  }
  workers = atoi(argv[1]);
  int rounds = atoi(argv[2]);
  double seconds = argc > 3 ? atof(argv[3]) : 0;
  const char *stopfile = argc > 4 ? argv[4] : NULL;
  if (workers < 1 || workers > 32 || rounds < 1) {
    fprintf(stderr, "linux-stress: WORKERS must be 1 to 32 and ROUNDS at least 1\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  double t0 = now();
  int done = 0;
  while (done < rounds || now() - t0 < seconds || (stopfile != NULL && access(stopfile, F_OK) != 0)) {
    threads_round();
    futex_round();
    pipes_round(done);
    done++;
  }
  printf("STRESS OK rounds=%d seconds=%.1f\n", done, now() - t0);
  return 0;
}
