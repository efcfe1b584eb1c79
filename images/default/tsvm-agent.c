/*
 * tsvm-agent: the guest agent of the default image (protocol version 2, docs/guest-agent.md). It runs the
 * host's commands and sessions and streams their bytes over the virtio-console port given as argv[1]
 * (/dev/virtio-ports/org.tsvm.agent.0), in one poll() loop, without threads.
 *
 * One line per message, printable ASCII, fields separated by one space, ids 1 … 2^31-1, payloads base64.
 *   host → guest  PING id | EXEC id b64 | KILL id                       (version 1)
 *                 OPEN id pipe|pty cols rows b64|- | IN id b64 | EOF id | WINCH id cols rows
 *                 SIGNAL id n | ACK id bytes | VERSION id              (version 2)
 *   guest → host  HELLO tsvm-agent 2 | PONG id | OUT id b64 | ERR id b64 | EXIT id status | BUSY id
 *                 ACK id bytes (stdin bytes written to the command) | VERSION id 2
 * The host is trusted to run anything, but not to speak well: every line is bounded and parsed strictly;
 * a line that is not a message is dropped and logged to /run/tsvm-agent.log.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PROTOCOL_VERSION 2
#ifndef LOG_PATH /* overridable to try the agent on a build host */
#define LOG_PATH "/run/tsvm-agent.log"
#define LOCK_PATH "/run/tsvm-agent.lock"
#endif
/* The log is a diagnostic, not an archive: a host that sends garbage forever cannot fill /run. */
#define LOG_MAX (256 * 1024)

#define MAX_ID 0x7fffffffL
/* Sessions at once (EXEC and OPEN together); one more is answered BUSY. */
#define MAX_SESSIONS 32
/* Longest command (bytes), as the host client allows. */
#define MAX_COMMAND 16384
/* Longest line from the host: an OPEN of a 16 KiB command is ~21.9 KB; longer lines are dropped. */
#define MAX_LINE 32768
/* Raw bytes per OUT/ERR line (~4020 bytes of line), as in version 1. */
#define CHUNK 3000
/* Output bytes of an OPEN session the host has not acknowledged, beyond which its output is not read. */
#define OUTPUT_WINDOW (256 * 1024)
/* The host keeps at most 64 KiB of stdin unacknowledged; this much is kept before IN is refused. */
#define STDIN_MAX (128 * 1024)
/* Lines waiting for the port. Session output is read only while this much is free… */
#define OUT_CAP (1024 * 1024)
#define OUT_READ_FREE (512 * 1024)
/* …and the host's requests, each answered by at most one short line, only while this much is free. */
#define IN_READ_FREE (256 * 1024)
#define IN_READ (16 * 1024)
/* Bytes read from one session's output in one turn of the loop (a multiple of CHUNK). */
#define OUTPUT_READ (16 * CHUNK)
/* A pty session whose shell has ended is given this long for its last output before EXIT. */
#define PTY_LINGER_MS 300
#define REOPEN_MS 1000

enum kind { EXEC_SESSION, PIPE_SESSION, PTY_SESSION };

struct session {
  int used;
  long id;
  enum kind kind;
  pid_t pid;         /* the leader: its session id and process group id are its pid */
  int status;        /* EXIT status once reaped, else -1 */
  int in_fd;         /* stdin: a pipe's write end, the pty master (same as out_fd), or -1 */
  int out_fd;        /* stdout, or the pty master */
  int err_fd;        /* stderr (pipe sessions), or -1 */
  unsigned char *in; /* stdin bytes not written yet */
  size_t in_len;
  int in_eof;        /* EOF asked: close stdin (pty: type VEOF) once `in` is written */
  int last_newline;  /* pty: the last byte typed ended a line (so one VEOF is an end of file) */
  size_t acked_in;   /* stdin bytes written and not yet reported with ACK */
  size_t unacked;    /* output bytes sent and not acknowledged (OPEN sessions) */
  long long linger_until; /* pty: EXIT at this time even if the terminal is still held open */
};

static struct session sessions[MAX_SESSIONS];
static const char *port_path;
static int port = -1;
static long long reopen_at;
static unsigned char *out_buf;
static size_t out_len;
static unsigned char in_buf[MAX_LINE + 1];
static size_t in_len;
static int in_discarding;
static int log_fd = -1;
/* The commands' environment; a terminal session fills TERM_SLOT. */
static char **child_env;
#define TERM_SLOT 5

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...) {
  char line[512];
  va_list ap;
  struct stat st;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof line - 2) n = sizeof line - 2;
  line[n++] = '\n';
  if (log_fd < 0) return;
  if (fstat(log_fd, &st) == 0 && st.st_size > LOG_MAX) ftruncate(log_fd, 0);
  if (write(log_fd, line, n) < 0) return;
}

/* ---- base64 (standard, padded; decoding refuses anything the encoder would not write) ---- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static signed char b64_value[256];

static size_t b64_encode(const unsigned char *src, size_t n, char *dst) {
  char *d = dst;
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    unsigned v = (unsigned)src[i] << 16 | (unsigned)src[i + 1] << 8 | src[i + 2];
    d[0] = B64[v >> 18];
    d[1] = B64[(v >> 12) & 63];
    d[2] = B64[(v >> 6) & 63];
    d[3] = B64[v & 63];
    d += 4;
  }
  if (i < n) {
    unsigned v = (unsigned)src[i] << 16 | (i + 1 < n ? (unsigned)src[i + 1] << 8 : 0);
    d[0] = B64[v >> 18];
    d[1] = B64[(v >> 12) & 63];
    d[2] = i + 1 < n ? B64[(v >> 6) & 63] : '=';
    d[3] = '=';
    d += 4;
  }
  return d - dst;
}

/* Decodes `n` characters into dst (room for n / 4 * 3); returns the length, or -1 if not canonical. */
static long b64_decode(const char *src, size_t n, unsigned char *dst) {
  if (n % 4 != 0) return -1;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    int last = i + 4 == n;
    int a = b64_value[(unsigned char)src[i]], b = b64_value[(unsigned char)src[i + 1]];
    int c = b64_value[(unsigned char)src[i + 2]], d = b64_value[(unsigned char)src[i + 3]];
    if (a < 0 || b < 0) return -1;
    if (last && src[i + 2] == '=' && src[i + 3] == '=') {
      if (b & 15) return -1;
      dst[o++] = a << 2 | b >> 4;
      break;
    }
    if (last && src[i + 3] == '=') {
      if (c < 0 || (c & 3)) return -1;
      dst[o++] = a << 2 | b >> 4;
      dst[o++] = (b & 15) << 4 | c >> 2;
      break;
    }
    if (c < 0 || d < 0) return -1;
    dst[o++] = a << 2 | b >> 4;
    dst[o++] = (b & 15) << 4 | c >> 2;
    dst[o++] = (c & 3) << 6 | d;
  }
  return (long)o;
}

/* ---- lines to the host ---- */

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...) {
  va_list ap;
  /* Callers keep OUT_CAP - out_len well above a short line (see OUT_READ_FREE, IN_READ_FREE). */
  if (port < 0 || OUT_CAP - out_len < 128) return;
  va_start(ap, fmt);
  int n = vsnprintf((char *)out_buf + out_len, 128, fmt, ap);
  va_end(ap);
  if (n > 0 && n < 128) out_len += n;
}

static void emit_data(const char *verb, long id, const unsigned char *bytes, size_t n) {
  if (port < 0) return;
  for (size_t at = 0; at < n; at += CHUNK) {
    size_t part = n - at < CHUNK ? n - at : CHUNK;
    char *d = (char *)out_buf + out_len;
    d += sprintf(d, "%s %ld ", verb, id);
    d += b64_encode(bytes + at, part, d);
    *d++ = '\n';
    out_len = d - (char *)out_buf;
  }
}

/* Writes what the port takes now. */
static void flush_port(void) {
  size_t done = 0;
  while (port >= 0 && done < out_len) {
    ssize_t n = write(port, out_buf + done, out_len - done);
    if (n > 0) {
      done += n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break; /* EAGAIN: poll says when; other errors show as a hang-up on the next read */
  }
  if (done > 0) {
    memmove(out_buf, out_buf + done, out_len - done);
    out_len -= done;
  }
}

/* ---- sessions ---- */

static struct session *find_session(long id) {
  for (int i = 0; i < MAX_SESSIONS; i++)
    if (sessions[i].used && sessions[i].id == id) return &sessions[i];
  return NULL;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static void close_stdin(struct session *s) {
  if (s->kind != PTY_SESSION) close_fd(&s->in_fd);
  s->in_fd = -1;
  free(s->in);
  s->in = NULL;
  s->in_len = 0;
}

/* SIGKILL to every process of the session: its leader's group and the jobs a shell made in it. */
static void kill_session(struct session *s) {
  kill(-s->pid, SIGKILL);
  DIR *proc = opendir("/proc");
  if (!proc) return;
  struct dirent *e;
  while ((e = readdir(proc))) {
    char path[64], stat[512];
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%.20s/stat", e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, stat, sizeof stat - 1);
    close(fd);
    if (n <= 0) continue;
    stat[n] = 0;
    /* pid (comm) state ppid pgrp session …: comm may hold anything, so parse after its last ')'. */
    char *p = strrchr(stat, ')');
    int ppid, pgrp, sid;
    char state;
    if (p && sscanf(p + 1, " %c %d %d %d", &state, &ppid, &pgrp, &sid) == 4 && sid == s->pid)
      kill(atoi(e->d_name), SIGKILL);
  }
  closedir(proc);
}

/* Reports the session's end (unless it is an orphan of a host that left) and frees its slot. */
static void end_session(struct session *s) {
  if (s->id > 0) emit("EXIT %ld %d\n", s->id, s->status);
  close_stdin(s); /* a pty's stdin is its master, closed as out_fd: that hangs up what is left on it */
  close_fd(&s->out_fd);
  close_fd(&s->err_fd);
  s->used = 0;
}

/* Everything about one session is done when its leader was reaped and its output read to the end. */
static void check_done(struct session *s) {
  if (s->status < 0) return;
  if (s->kind == PTY_SESSION) {
    /* A job left in the background may hold the terminal for ever: its output is not waited for
       (beyond a short linger, longer while the host has not acknowledged what came before). */
    if (s->out_fd >= 0 && (now_ms() < s->linger_until || s->unacked >= OUTPUT_WINDOW)) return;
    end_session(s);
    return;
  }
  /* Like version 1: a pipe session ends when its output does, even if a daemon holds it open. */
  if (s->out_fd < 0 && s->err_fd < 0) end_session(s);
}

/* Every signal back to its default: rcS starts the agent with `&`, which leaves SIGINT and SIGQUIT
   ignored, and an ignored signal stays ignored across exec (a ^C would not stop anything). */
static void default_signals(void) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
}

static void child_exec(const char *command, int login) {
  default_signals();
  if (chdir(login ? "/root" : "/") < 0 && chdir("/") < 0) _exit(126);
  if (login) execle("/bin/sh", "-sh", "-l", (char *)NULL, child_env);
  else execle("/bin/sh", "sh", "-c", command, (char *)NULL, child_env);
  _exit(127);
}

static int nonblocking(int fd) {
  return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Starts a session; returns 0, or -1 (logged) when it could not. `command` NULL: a login shell. */
static int start_session(struct session *s, const char *command, int cols, int rows) {
  int out[2] = {-1, -1}, err[2] = {-1, -1}, in[2] = {-1, -1}, master = -1;
  char *slave_name = NULL;
  if (s->kind == PTY_SESSION) {
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 || !(slave_name = ptsname(master))) {
      logf_("session %ld: no pseudo-terminal: %s", s->id, strerror(errno));
      if (master >= 0) close(master);
      return -1;
    }
    ioctl(master, TIOCSWINSZ, &ws);
  } else if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
             (s->kind == PIPE_SESSION && pipe2(in, O_CLOEXEC) < 0)) {
    logf_("session %ld: no pipes: %s", s->id, strerror(errno));
    goto fail;
  }
  /* Closed by the child's exec: until then a SIGNAL or KILL would find no process group to reach. */
  int started[2];
  if (pipe2(started, O_CLOEXEC) < 0) {
    logf_("session %ld: no pipe: %s", s->id, strerror(errno));
    goto fail;
  }
  pid_t pid = fork();
  if (pid < 0) {
    logf_("session %ld: fork: %s", s->id, strerror(errno));
    close(started[0]), close(started[1]);
    goto fail;
  }
  if (pid == 0) {
    setsid();
    if (s->kind == PTY_SESSION) {
      int slave = open(slave_name, O_RDWR);
      child_env[TERM_SLOT] = "TERM=xterm-256color";
      if (slave < 0 || ioctl(slave, TIOCSCTTY, 0) < 0) _exit(126);
      dup2(slave, 0), dup2(slave, 1), dup2(slave, 2);
      if (slave > 2) close(slave);
    } else {
      int null = -1;
      if (s->kind == PIPE_SESSION) dup2(in[0], 0);
      else if ((null = open("/dev/null", O_RDONLY)) >= 0) dup2(null, 0);
      dup2(out[1], 1), dup2(err[1], 2);
      if (null > 2) close(null);
    }
    child_exec(command, command == NULL);
  }
  close(started[1]);
  char byte;
  while (read(started[0], &byte, 1) < 0 && errno == EINTR) {
  }
  close(started[0]);
  s->pid = pid;
  s->status = -1;
  s->in = NULL;
  s->in_len = s->acked_in = s->unacked = 0;
  s->in_eof = 0;
  s->last_newline = 1;
  if (s->kind == PTY_SESSION) {
    s->in_fd = s->out_fd = master;
    s->err_fd = -1;
    nonblocking(master);
  } else {
    close(out[1]), close(err[1]);
    s->out_fd = out[0], s->err_fd = err[0];
    nonblocking(out[0]), nonblocking(err[0]);
    s->in_fd = -1;
    if (s->kind == PIPE_SESSION) {
      close(in[0]);
      s->in_fd = in[1];
      nonblocking(in[1]);
    }
  }
  s->used = 1;
  return 0;
fail:
  for (int i = 0; i < 2; i++) {
    if (out[i] >= 0) close(out[i]);
    if (err[i] >= 0) close(err[i]);
    if (in[i] >= 0) close(in[i]);
  }
  if (master >= 0) close(master);
  return -1;
}

/* Writes what stdin takes now; then closes it (or types VEOF) if EOF was asked and all is written. */
static void feed_stdin(struct session *s) {
  if (s->in_fd < 0) return;
  size_t done = 0;
  while (done < s->in_len) {
    ssize_t n = write(s->in_fd, s->in + done, s->in_len - done);
    if (n > 0) {
      done += n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    /* The command closed its stdin (EPIPE) or the terminal is gone: what is left is dropped. */
    s->acked_in += s->in_len - done;
    close_stdin(s);
    return;
  }
  if (done > 0) {
    s->last_newline = s->in[done - 1] == '\n';
    memmove(s->in, s->in + done, s->in_len - done);
    s->in_len -= done;
    s->acked_in += done;
  }
  if (s->in_len == 0 && s->in_eof) {
    if (s->kind == PTY_SESSION) {
      struct termios t;
      if (tcgetattr(s->in_fd, &t) == 0) {
        unsigned char eof[2] = {t.c_cc[VEOF], t.c_cc[VEOF]};
        /* In canonical mode a VEOF after a partial line only ends that line: a second one ends input. */
        int n = (t.c_lflag & ICANON) && !s->last_newline ? 2 : 1;
        if (write(s->in_fd, eof, n) < 0) logf_("session %ld: EOF: %s", s->id, strerror(errno));
      }
      s->in_fd = -1;
      s->in_eof = 0;
    } else {
      close_stdin(s);
    }
  }
}

/* Reads one output stream of a session into OUT/ERR lines; closes it at its end. */
static void read_output(struct session *s, int *fd, const char *verb) {
  static unsigned char buf[OUTPUT_READ];
  size_t room = OUTPUT_READ;
  if (s->kind != EXEC_SESSION && s->id != 0) {
    if (s->unacked >= OUTPUT_WINDOW) return;
    if (OUTPUT_WINDOW - s->unacked < room) room = OUTPUT_WINDOW - s->unacked;
  }
  /* Room for the lines it makes (the loop polls output only while OUT_READ_FREE is free). */
  if (OUT_CAP - out_len < (OUTPUT_READ / CHUNK) * (CHUNK / 3 * 4 + 32)) return;
  ssize_t n = read(*fd, buf, room);
  if (n > 0) {
    if (s->id == 0) return; /* an orphan: nobody to read it */
    emit_data(verb, s->id, buf, n);
    if (s->kind != EXEC_SESSION) s->unacked += n;
    if (s->kind == PTY_SESSION && s->status >= 0) s->linger_until = now_ms() + PTY_LINGER_MS;
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  /* 0: every writer closed it; EIO: a pty whose every slave descriptor is closed. */
  if (s->kind == PTY_SESSION) {
    close(*fd);
    s->out_fd = s->in_fd = -1;
    free(s->in);
    s->in = NULL;
    s->in_len = 0;
  } else {
    close_fd(fd);
  }
}

/* ---- the host's requests ---- */

/* A decimal number without leading zeros, min … max; -1 otherwise. */
static long parse_number(const char *s, long min, long max) {
  if (!*s || (s[0] == '0' && s[1]) || strlen(s) > 10) return -1;
  long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    v = v * 10 + (*p - '0');
  }
  return v >= min && v <= max ? v : -1;
}

/* A command from base64: NUL-terminated, no NUL inside, at most MAX_COMMAND bytes; NULL otherwise. */
static char *decode_command(const char *b64) {
  size_t n = strlen(b64);
  static char command[MAX_COMMAND + 4];
  if (n > (MAX_COMMAND + 2) / 3 * 4) return NULL;
  long len = b64_decode(b64, n, (unsigned char *)command);
  if (len < 0 || len > MAX_COMMAND || memchr(command, 0, len)) return NULL;
  command[len] = 0;
  return command;
}

static struct session *new_session(long id) {
  if (find_session(id)) {
    logf_("session %ld: that id is in use", id);
    return NULL;
  }
  for (int i = 0; i < MAX_SESSIONS; i++)
    if (!sessions[i].used) {
      memset(&sessions[i], 0, sizeof sessions[i]);
      sessions[i].id = id;
      sessions[i].in_fd = sessions[i].out_fd = sessions[i].err_fd = -1;
      return &sessions[i];
    }
  logf_("session %ld: %d sessions already run", id, MAX_SESSIONS);
  return NULL;
}

static void bad_line(const char *why, const char *line) {
  logf_("ignored a line from the host (%s): %.80s", why, line);
}

static void handle_line(char *line, size_t len) {
  char *field[7];
  int fields = 0;
  for (size_t i = 0; i < len; i++)
    if (line[i] < 0x20 || line[i] > 0x7e) return bad_line("not printable ASCII", "");
  line[len] = 0;
  /* Fields separated by exactly one space: an empty field (but the last) is malformed. */
  char *p = line;
  for (;;) {
    if (fields == 7) return bad_line("too many fields", line);
    field[fields++] = p;
    char *sp = strchr(p, ' ');
    if (!sp) break;
    *sp = 0;
    p = sp + 1;
  }
  for (int i = 0; i < fields - 1; i++)
    if (!*field[i]) return bad_line("empty field", line);
  if (fields < 2) return bad_line("no id", line);
  const char *verb = field[0];
  long id = parse_number(field[1], 1, MAX_ID);
  if (id < 0) return bad_line("bad id", verb);
  struct session *s = find_session(id);

#define EXPECT(n)                                        \
  do {                                                   \
    if (fields != (n)) return bad_line("fields", verb);  \
  } while (0)

  if (!strcmp(verb, "PING")) {
    EXPECT(2);
    emit("PONG %ld\n", id);
  } else if (!strcmp(verb, "VERSION")) {
    /* For a host that missed HELLO (the agent ran before a restore); a version-1 agent ignores it. */
    EXPECT(2);
    emit("VERSION %ld %d\n", id, PROTOCOL_VERSION);
  } else if (!strcmp(verb, "EXEC") || !strcmp(verb, "OPEN")) {
    int open_ = verb[0] == 'O';
    EXPECT(open_ ? 6 : 3);
    const char *b64 = field[fields - 1];
    char *command = NULL;
    int cols = 0, rows = 0;
    enum kind kind = EXEC_SESSION;
    if (open_) {
      if (!strcmp(field[2], "pipe")) kind = PIPE_SESSION;
      else if (!strcmp(field[2], "pty")) kind = PTY_SESSION;
      else return bad_line("mode", field[2]);
      cols = parse_number(field[3], 0, 65535);
      rows = parse_number(field[4], 0, 65535);
      if (cols < 0 || rows < 0) return bad_line("window size", verb);
    }
    if (!(open_ && !strcmp(b64, "-")) && !(command = decode_command(b64)))
      return bad_line("command", verb);
    struct session *n = new_session(id);
    if (n) n->kind = kind;
    if (!n || start_session(n, command, cols, rows) < 0) emit("BUSY %ld\n", id);
  } else if (!strcmp(verb, "KILL")) {
    EXPECT(2);
    /* Also once the leader has ended: what it left in its session may still hold the output open. */
    if (s) kill_session(s);
  } else if (!strcmp(verb, "IN")) {
    static unsigned char bytes[MAX_LINE];
    EXPECT(3);
    long n = b64_decode(field[2], strlen(field[2]), bytes);
    if (n < 0) return bad_line("base64", verb);
    if (!s || s->kind == EXEC_SESSION) return;
    if (s->in_fd < 0 || s->in_eof) {
      s->acked_in += n; /* stdin is closed: the bytes are gone, but the host's window moves on */
      return;
    }
    if (s->in_len + n > STDIN_MAX) {
      logf_("session %ld: more than %d bytes of stdin unacknowledged; dropped %ld", id, STDIN_MAX, n);
      s->acked_in += n;
      return;
    }
    unsigned char *grown = realloc(s->in, s->in_len + n + 1);
    if (!grown) return bad_line("out of memory", verb);
    s->in = grown;
    memcpy(s->in + s->in_len, bytes, n);
    s->in_len += n;
    feed_stdin(s);
  } else if (!strcmp(verb, "EOF")) {
    EXPECT(2);
    if (!s || s->kind == EXEC_SESSION || s->in_fd < 0) return;
    s->in_eof = 1;
    feed_stdin(s);
  } else if (!strcmp(verb, "WINCH")) {
    EXPECT(4);
    long cols = parse_number(field[2], 0, 65535), rows = parse_number(field[3], 0, 65535);
    if (cols < 0 || rows < 0) return bad_line("window size", verb);
    if (!s || s->kind != PTY_SESSION || s->out_fd < 0) return;
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    /* The kernel sends SIGWINCH to the terminal's foreground process group. */
    ioctl(s->out_fd, TIOCSWINSZ, &ws);
  } else if (!strcmp(verb, "SIGNAL")) {
    EXPECT(3);
    long sig = parse_number(field[2], 1, 64);
    if (sig < 0) return bad_line("signal", verb);
    if (!s || s->status >= 0) return;
    pid_t group = s->pid;
    if (s->kind == PTY_SESSION && s->out_fd >= 0) {
      pid_t fg = tcgetpgrp(s->out_fd);
      if (fg > 0) group = fg;
    }
    if (kill(-group, sig) < 0) logf_("session %ld: signal %ld: %s", id, sig, strerror(errno));
  } else if (!strcmp(verb, "ACK")) {
    EXPECT(3);
    long n = parse_number(field[2], 0, MAX_ID);
    if (n < 0) return bad_line("count", verb);
    if (!s || s->kind == EXEC_SESSION) return;
    if ((size_t)n > s->unacked) {
      logf_("session %ld: ACK of %ld bytes, only %zu unacknowledged", id, n, s->unacked);
      n = s->unacked;
    }
    s->unacked -= n;
  } else {
    bad_line("unknown message", verb);
  }
}

/* Splits what came from the port into lines; the rest of a line over MAX_LINE is dropped. */
static void read_port(void) {
  static char buf[IN_READ];
  ssize_t n = read(port, buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    /* End of file: no host program is connected. Everything running is for a host that is gone. */
    if (n < 0) logf_("reading the port: %s", strerror(errno));
    close_fd(&port);
    out_len = 0;
    in_len = 0;
    in_discarding = 0;
    /* Orphans (id 0) are killed, their output read and dropped, and their EXIT not sent. */
    for (int i = 0; i < MAX_SESSIONS; i++)
      if (sessions[i].used) kill_session(&sessions[i]), sessions[i].id = 0;
    reopen_at = now_ms() + REOPEN_MS;
    return;
  }
  for (ssize_t i = 0; i < n; i++) {
    char c = buf[i];
    if (c == '\n') {
      if (!in_discarding) handle_line((char *)in_buf, in_len);
      in_discarding = 0;
      in_len = 0;
    } else if (!in_discarding) {
      if (in_len == MAX_LINE) {
        logf_("ignored a line from the host longer than %d bytes", MAX_LINE);
        in_discarding = 1;
        in_len = 0;
      } else {
        in_buf[in_len++] = c;
      }
    }
    if (port < 0) return;
  }
}

static void open_port(void) {
  port = open(port_path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (port < 0) {
    logf_("cannot open %s: %s", port_path, strerror(errno));
    reopen_at = now_ms() + REOPEN_MS;
    return;
  }
  emit("HELLO tsvm-agent %d\n", PROTOCOL_VERSION);
}

static void reap(int sigfd) {
  struct signalfd_siginfo info;
  while (read(sigfd, &info, sizeof info) > 0) {
  }
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (int i = 0; i < MAX_SESSIONS; i++) {
      struct session *s = &sessions[i];
      if (!s->used || s->pid != pid) continue;
      s->status = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
      s->linger_until = now_ms() + PTY_LINGER_MS;
    }
  }
}

static void setup(void) {
  for (int i = 0; i < 256; i++) b64_value[i] = -1;
  for (int i = 0; i < 64; i++) b64_value[(unsigned char)B64[i]] = i;
  static char *env[] = {
      "PATH=/sbin:/bin:/usr/sbin:/usr/bin", "HOME=/root", "SHELL=/bin/sh", "USER=root", "LOGNAME=root", NULL,
      NULL};
  child_env = env;
  out_buf = malloc(OUT_CAP);
  if (!out_buf) exit(1);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: tsvm-agent PORT\n");
    return 2;
  }
  port_path = argv[1];
  mkdir("/run", 0755);
  /* At most one agent: the kernel lets only one process hold a virtio port open anyway. */
  int lock = open(LOCK_PATH, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) < 0) return 0;
  /* Nothing of ours may reach the serial console, where users (and tests) read their own shell. */
  log_fd = open(LOG_PATH, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) dup2(null, 0), dup2(null, 1), dup2(null, 2);
  if (null > 2) close(null);
  /* Out of the console's session: a ^C typed there must not reach the agent. */
  setsid();
  if (chdir("/") < 0) return 1;
  setup();
  default_signals();
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  int sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sigfd < 0) return 1;
  logf_("tsvm-agent %d started on %s", PROTOCOL_VERSION, port_path);
  open_port();

  struct pollfd fds[2 + 2 * MAX_SESSIONS];
  struct session *owner[2 + 2 * MAX_SESSIONS];
  int *which[2 + 2 * MAX_SESSIONS];
  for (;;) {
    long long now = now_ms();
    int timeout = -1;
    if (port < 0) {
      if (now >= reopen_at) open_port();
      if (port < 0) timeout = (int)(reopen_at - now);
    }
    int nfds = 0;
    fds[nfds++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
    short port_events = 0;
    if (port >= 0 && OUT_CAP - out_len >= IN_READ_FREE) port_events |= POLLIN;
    if (out_len > 0) port_events |= POLLOUT;
    fds[nfds++] = (struct pollfd){.fd = port_events ? port : -1, .events = port_events};
    int reading = port >= 0 && OUT_CAP - out_len >= OUT_READ_FREE;
    for (int i = 0; i < MAX_SESSIONS; i++) {
      struct session *s = &sessions[i];
      if (!s->used) continue;
      if (s->kind == PTY_SESSION && s->status >= 0 && s->out_fd >= 0) {
        int left = (int)(s->linger_until - now);
        if (left < 0) left = 0;
        if (timeout < 0 || left < timeout) timeout = left;
      }
      int windowed = s->kind != EXEC_SESSION && s->id != 0 && s->unacked >= OUTPUT_WINDOW;
      /* An orphan's output is read and dropped, so nothing of it blocks on a full pipe. */
      int *streams[2] = {&s->out_fd, &s->err_fd};
      for (int k = 0; k < 2; k++) {
        int fd = *streams[k];
        if (fd < 0) continue;
        short ev = 0;
        if ((reading || s->id == 0) && !windowed) ev |= POLLIN;
        if (k == 0 && s->in_fd >= 0 && (s->in_len > 0 || s->in_eof)) ev |= POLLOUT;
        if (!ev) continue;
        owner[nfds] = s, which[nfds] = streams[k];
        fds[nfds++] = (struct pollfd){.fd = fd, .events = ev};
      }
      if (s->in_fd >= 0 && s->in_fd != s->out_fd && (s->in_len > 0 || s->in_eof)) {
        owner[nfds] = s, which[nfds] = NULL;
        fds[nfds++] = (struct pollfd){.fd = s->in_fd, .events = POLLOUT};
      }
    }
    if (poll(fds, nfds, timeout) < 0 && errno != EINTR) {
      logf_("poll: %s", strerror(errno));
      sleep(1);
      continue;
    }
    if (fds[0].revents) reap(sigfd);
    for (int i = 2; i < nfds; i++) {
      struct session *s = owner[i];
      short r = fds[i].revents;
      if (!r || !s->used) continue;
      if (which[i] == NULL || (r & POLLOUT)) feed_stdin(s);
      if (which[i] && (r & (POLLIN | POLLHUP | POLLERR)) && *which[i] == fds[i].fd) {
        read_output(s, which[i], which[i] == &s->err_fd ? "ERR" : "OUT");
      }
    }
    if (port >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) read_port();
    /* After the requests: their stdin writes are acknowledged in this turn. */
    for (int i = 0; i < MAX_SESSIONS; i++) {
      struct session *s = &sessions[i];
      if (!s->used) continue;
      if (s->acked_in > 0) {
        if (s->id > 0) emit("ACK %ld %zu\n", s->id, s->acked_in);
        s->acked_in = 0;
      }
      check_done(s);
    }
    flush_port();
  }
}
