// The command line as a new user meets it (bin/tsvm, spawned): every command family answers a bad
// argument with one line in tsvm's words and exit status 2, `tsvm help CMD` is CMD's help, and
// `tsvm --version` is package.json's version. No daemon is involved: bad arguments are refused first.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type CliInstallation, cliInstallation } from "./fixtures/cli-installation.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
let installation: CliInstallation;
const tsvm = (...args: string[]) => installation.tsvm(...args);

before(async () => {
  installation = await cliInstallation("cli-main");
});

after(async () => {
  await installation.remove();
});

test("a bad argument to any command: one line in tsvm's words on stderr, exit status 2", async () => {
  const cases: Array<[args: string[], line: RegExp]> = [
    [["run", "--frobnicate"], /^tsvm run: unknown option '--frobnicate'; see 'tsvm run --help'$/],
    [["image", "build", "--x"], /^tsvm image: unknown option '--x' for 'build'/],
    [["create", "--bogus", "vm"], /^tsvm create: unknown option '--bogus'; see 'tsvm create --help'$/],
    [["create", "vm", "--memory"], /^tsvm create: --memory needs a value; see 'tsvm create --help'$/],
    [["list", "extra"], /^tsvm list: unexpected argument 'extra'; see 'tsvm list --help'$/],
    [["describe", "--format"], /^tsvm describe: --format needs a value; see 'tsvm describe --help'$/],
    [
      ["describe", "vm", "--format", "yaml"],
      /^tsvm describe: --format must be table or json \(got 'yaml'\)$/,
    ],
    [["start", "vm", "--async=yes"], /^tsvm start: --async takes no value; see 'tsvm start --help'$/],
    [["delete", "-x", "vm"], /^tsvm delete: unknown option '-x'; see 'tsvm delete --help'$/],
    [["operations", "--nope"], /^tsvm operations: unknown option '--nope'; see 'tsvm operations --help'$/],
    [["events", "--bogus", "x"], /^tsvm events: unknown option '--bogus'; see 'tsvm events --help'$/],
    [["daemon", "--x"], /^tsvm daemon: unknown option '--x'; see 'tsvm daemon --help'$/],
    [
      ["daemon", "--shared-storage", "/srv/shared"],
      /^tsvm daemon: --shared-storage is for a cluster: give --cluster, --host, --listen and --token-file too/,
    ],
    [["logs", "vm", "--follow=1"], /^tsvm logs: --follow takes no value; see 'tsvm logs --help'$/],
    [["top", "--interval"], /^tsvm top: --interval needs a value; see 'tsvm top --help'$/],
    [["console", "--raw", "vm"], /^tsvm console: unknown option '--raw'; see 'tsvm console --help'$/],
    [
      ["exec", "vm", "--timeout", "--", "true"],
      /^tsvm exec: --timeout needs a value; see 'tsvm exec --help'$/,
    ],
    [["set-machine-type", "vm"], /^tsvm set-machine-type: give the machine type \(--machine-type TYPE\)/],
    [["set-machine-type", "--type", "t1-micro"], /^tsvm set-machine-type: unknown option '--type'/],
    [["machine-types", "all"], /^tsvm machine-types: unexpected argument 'all'/],
    [["update", "vm"], /^tsvm update: nothing to change: give --forward \(repeatable\) or --no-forwards/],
    [
      ["update", "vm", "--forward", "tcp:8080:80", "--no-forwards"],
      /^tsvm update: give --forward or --no-forwards, not both; see 'tsvm update --help'$/,
    ],
    [
      ["create", "vm", "--forward", "8080:80"],
      /^tsvm create: --forward: '8080:80' is not a forward: write PROTOCOL/,
    ],
    [["create", "vm", "--no-nat", "--forward", "tcp:8080:80"], /^tsvm create: --forward needs the NAT card/],
    [["version", "now"], /^tsvm version: unexpected argument 'now'/],
    [["help", "nope"], /^tsvm: unknown command 'nope'; see 'tsvm --help'$/],
    [["frobnicate"], /^tsvm: unknown command 'frobnicate'; see 'tsvm --help'$/],
  ];
  for (const [args, line] of cases) {
    const r = await tsvm(...args);
    const what = `tsvm ${args.join(" ")}: ${JSON.stringify(r.stderr)}`;
    assert.equal(r.code, 2, what);
    const lines = r.stderr.split("\n").filter((l) => l !== "");
    assert.equal(lines.length, 1, what);
    assert.match(lines[0]!, line, what);
    assert.doesNotMatch(r.stderr, /TypeError|ERR_PARSE_ARGS|To specify|\n\s+at /, what);
    assert.equal((lines[0]!.match(/'/g) ?? []).length % 2, 0, `${what}: quotes are balanced`);
    assert.equal(r.stdout, "", what);
  }
});

test("tsvm help CMD prints CMD's help, as tsvm CMD --help does", async () => {
  for (const command of ["describe", "start", "set-machine-type", "image", "run", "exec", "update"]) {
    const viaHelp = await tsvm("help", command);
    const viaOption = await tsvm(command, "--help");
    assert.equal(viaHelp.code, 0, `tsvm help ${command}: ${viaHelp.stderr}`);
    assert.match(viaHelp.stdout, new RegExp(`^Usage: tsvm ${command}\\b`));
    assert.equal(viaHelp.stdout, viaOption.stdout);
  }
  const general = await tsvm("help");
  assert.equal(general.code, 0);
  assert.match(general.stdout, /set-machine-type +change a stopped VM's vCPUs and memory/);
});

test("tsvm --version and tsvm version print package.json's version", async () => {
  const { version } = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { version: string };
  for (const args of [["--version"], ["version"]]) {
    const r = await tsvm(...args);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `tsvm ${version}\n`);
  }
});
