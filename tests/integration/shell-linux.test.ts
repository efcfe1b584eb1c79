// Sessions with a real Linux guest (the default image's agent, version 2) through the daemon and bin/tsvm:
// `tsvm shell` on a real host pty (util-linux `script`) reports the window size, Ctrl-C interrupts
// `sleep 100` and the shell answers the next command, `exit 7` is tsvm's status and the terminal is as it
// was; `echo hi | tsvm exec VM -- cat`; `tsvm cp` round-trips a 20 MiB random file (same sha256) and a tree
// (modes, times) through busybox tar; and the bad inputs: the agent not up yet, missing sources and
// destination directories, a file that changes size mid-copy — one line each, nothing left behind.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  truncate,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { cpWhile, onTerminal } from "../../src/cli/fixtures/terminal-run.ts";
import { BOOT_TIMEOUT_MS, linuxVmFixture, noImage, root } from "./linux-vm-fixture.ts";

const bin = join(root, "bin/tsvm");
const { home, tsvm, exec, booted } = await linuxVmFixture("shell-linux");
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), "tsvm-shell-linux-files-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const sha = async (path: string) =>
  createHash("sha256")
    .update(await readFile(path))
    .digest("hex");

test("while the guest boots, a shell is refused clearly; then the agent answers", {
  skip: noImage,
  timeout: BOOT_TIMEOUT_MS + 120_000,
}, async () => {
  const created = await tsvm("create", "web", "--memory", "256M");
  assert.equal(created.code, 0, created.stderr);
  const early = await tsvm("shell", "web", "--agent-wait", "0");
  assert.equal(early.code, 255);
  assert.equal(
    early.stderr.trim().split("\n").at(-1),
    "tsvm shell: the guest agent is not connected yet (the VM is still booting?)",
  );
  const cpEarly = await tsvm("cp", "--agent-wait", "0", "web:/etc/hostname", work);
  assert.equal(cpEarly.code, 1);
  assert.match(cpEarly.stderr, /the guest agent is not connected yet/);
  await booted("web");
});

test("tsvm shell in a pty: stty size, Ctrl-C interrupts sleep 100, the shell answers, exit 7 is tsvm's, the terminal is restored", {
  skip: noImage,
}, async () => {
  const shown = await onTerminal(
    home,
    `stty cols 100 rows 30; stty -g > ${work}/before; ${bin} shell web; echo "rc=$?"; stty -g > ${work}/after`,
    [
      { after: /# $/m, type: "stty size\r" },
      { after: /30 100/, type: "sleep 100\r" },
      { after: /sleep 100\r*\n/, type: "\x03" },
      { after: /\^C/, type: "echo alive-$((6*7))\r" },
      { after: /alive-42/, type: "exit 7\r" },
    ],
  );
  assert.match(shown, /30 100/);
  assert.match(shown, /alive-42/);
  assert.match(shown, /rc=7/);
  assert.equal(await readFile(join(work, "after"), "utf8"), await readFile(join(work, "before"), "utf8"));
});

test("exec with stdin: echo hi | tsvm exec web -- cat; -t gives the command a terminal", {
  skip: noImage,
}, async () => {
  const r = await new Promise<{ code: number; stdout: string }>((resolve) => {
    const child = spawn("bash", ["-c", `echo hi | ${bin} exec web -- cat`], {
      env: { ...process.env, TSVM_HOME: home },
    });
    let stdout = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    child.on("close", (code) => resolve({ code: code ?? 1, stdout }));
  });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, "hi\n");
  const t = await tsvm("exec", "-t", "web", "--", "sh", "-c", "test -t 0 && test -t 1 && echo tty");
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /^tty\r?\n$/);
});

test("tsvm cp round-trips a 20 MiB random file and a tree with modes and times", {
  skip: noImage,
  timeout: 1_200_000,
}, async () => {
  const src = join(work, "tree");
  await mkdir(join(src, "sub", "deeper"), { recursive: true });
  await writeFile(join(src, "big.bin"), randomBytes(20 * 1048576));
  await writeFile(join(src, "sub", "run.sh"), "#!/bin/sh\necho ok\n");
  await chmod(join(src, "sub", "run.sh"), 0o751);
  await writeFile(join(src, "sub", "deeper", "secret"), "s");
  await chmod(join(src, "sub", "deeper", "secret"), 0o600);
  const old = new Date("2020-01-02T03:04:05Z");
  await utimes(join(src, "sub", "run.sh"), old, old);
  await utimes(join(src, "sub", "deeper"), old, old);

  const into = await tsvm("cp", src, "web:/root/");
  assert.equal(into.code, 0, into.stderr);
  const inGuest = await exec(
    "web",
    "sha256sum /root/tree/big.bin | cut -d' ' -f1; stat -c '%a %Y' /root/tree/sub/run.sh /root/tree/sub/deeper/secret /root/tree/sub/deeper",
  );
  const [guestSha, runSh, secret, deeper] = inGuest.trim().split("\n");
  assert.equal(guestSha, await sha(join(src, "big.bin")));
  assert.equal(runSh, `751 ${old.getTime() / 1000}`);
  assert.match(secret!, /^600 /);
  assert.equal(deeper, `755 ${old.getTime() / 1000}`, "a directory keeps its time");

  const back = join(work, "back");
  const out = await tsvm("cp", "web:/root/tree", back);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(await sha(join(back, "big.bin")), await sha(join(src, "big.bin")));
  const runBack = await stat(join(back, "sub", "run.sh"));
  assert.equal(runBack.mode & 0o7777, 0o751);
  assert.equal(runBack.mtime.getTime(), old.getTime());
  assert.equal((await stat(join(back, "sub", "deeper"))).mtime.getTime(), old.getTime());
  assert.equal((await stat(join(back, "sub", "deeper", "secret"))).mode & 0o7777, 0o600);
  assert.deepEqual(
    (await readdir(work)).filter((n) => n.startsWith(".tsvm-cp")),
    [],
  );
  assert.equal((await exec("web", "ls -A /root | grep -c tsvm-cp || true")).trim(), "0");
  await exec("web", "rm -r /root/tree");
});

test("tsvm cp's bad inputs: one line each, nothing left behind", {
  skip: noImage,
  timeout: 1_200_000,
}, async () => {
  const cases: [string[], RegExp][] = [
    [[join(work, "nope"), "web:/root/"], /nope: no such file or directory$/],
    [["web:/root/nope", work], /\/root\/nope: no such file or directory in the VM$/],
    [["web:/etc/hostname", join(work, "missing", "x")], /the directory .*missing does not exist$/],
    [[join(work, "tree", "sub"), "web:/missing/x"], /the directory \/missing does not exist in the VM$/],
  ];
  for (const [args, message] of cases) {
    const r = await tsvm("cp", ...args);
    assert.equal(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr.trim().split("\n").at(-1)!, message);
  }
  // A guest file that shrinks while it is copied out: busybox tar fails, nothing is placed here. In the
  // guest's tmpfs: 50 MB (long enough to be cut mid-copy) is more than the image's 64 MiB disk has free.
  await exec("web", "head -c 50000000 /dev/urandom > /tmp/shrinking");
  const out = await cpWhile(home, ["web:/tmp/shrinking", join(work, "shrunk")], () =>
    exec("web", ": > /tmp/shrinking"),
  );
  assert.equal(out.code, 1, out.stderr);
  await assert.rejects(stat(join(work, "shrunk")));
  // Guest files that vanish while a tree is copied out, before busybox tar reaches them: tar fails naming
  // them, nothing is placed here. Whichever order the guest's tmpfs lists the tree in, four of the small
  // files come after the large one.
  await exec(
    "web",
    "mkdir /tmp/vanishing && cd /tmp/vanishing && for i in 1 2 3 4; do echo $i > m$i; done && " +
      "head -c 50000000 /dev/urandom > a.bin && for i in 5 6 7 8; do echo $i > m$i; done",
  );
  const vanished = await cpWhile(home, ["web:/tmp/vanishing", join(work, "vanished")], () =>
    exec("web", "rm /tmp/vanishing/m*"),
  );
  assert.equal(vanished.code, 1, vanished.stderr);
  assert.match(vanished.stderr, /m\d/);
  await assert.rejects(stat(join(work, "vanished")));
  await exec("web", "rm -r /tmp/vanishing");
  // A host file that shrinks while it is copied in: nothing is placed in the guest.
  await writeFile(join(work, "shrinking"), randomBytes(50_000_000));
  const into = await cpWhile(home, [join(work, "shrinking"), "web:/root/in"], () =>
    truncate(join(work, "shrinking"), 1000),
  );
  assert.equal(into.code, 1, into.stderr);
  assert.match(into.stderr, /EOF|changed/);
  assert.equal((await exec("web", "ls -A /root | grep -c -e '^in$' -e tsvm-cp || true")).trim(), "0");
  assert.deepEqual(
    (await readdir(work)).filter((n) => n.startsWith(".tsvm-cp")),
    [],
  );
});
