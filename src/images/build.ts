// Builds a guest image from a recipe in images/<name>/ and Debian's packages: Linux 6.1 for QEMU's riscv64
// virt board, a static busybox, an (uncompressed) cpio initramfs, a 64 MiB ext4 root disk and OpenSBI's
// fw_dynamic, cached by a hash of everything that goes in.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CpioNewcWriter } from "./cpio-newc.ts";
import { ImageBuildError } from "./image-build-error.ts";
import {
  IMAGE_MANIFEST,
  type ImageInfo,
  type ImageManifest,
  imageDirName,
  imagesCacheDir,
  listImages,
  readImage,
} from "./image-store.ts";
import { applyKconfigFragment, droppedKconfigOptions } from "./kconfig-fragment.ts";
import { captureOutput, runLogged } from "./logged-command.ts";

export interface BuildImageOptions {
  /** Receives each progress line (no newline); by default they go to stderr. */
  readonly onProgress?: (line: string) => void;
  /** The images cache directory; by default imagesCacheDir(). */
  readonly cacheDir?: string;
}

const builderDir = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(builderDir, "../..");
/** The recipes: one directory per image name. */
export const RECIPES_DIR = join(repoRoot, "images");
const SETUP_HOST = join(repoRoot, "scripts", "setup-host.sh");

/**
 * Installs the Debian packages a build needs (scripts/setup-host.sh: one dpkg-query when all are there),
 * so that the first `tsvm run` on a fresh host builds its image without a separate set-up step.
 */
function ensureHostPackages(): void {
  const r = spawnSync(SETUP_HOST, { stdio: ["ignore", 2, 2] });
  if (r.status !== 0) {
    throw new ImageBuildError(
      "IMAGE_BUILD_FAILED",
      `setting up the host failed: ${SETUP_HOST} ended with ${r.status ?? r.signal ?? r.error?.message}; see its message above`,
      "host set-up",
    );
  }
}

const LINUX_SOURCE_TARBALL = "/usr/src/linux-source-6.1.tar.xz";
const OPENSBI_FW_DYNAMIC = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin";
const CROSS_COMPILE = "riscv64-linux-gnu-";
const DISK_SIZE = "64M";
/** Debian packages whose contents end up in the image; their versions are part of the recipe hash. */
const DEBIAN_PACKAGES = [
  "linux-source-6.1",
  "gcc-riscv64-linux-gnu",
  "binutils-riscv64-linux-gnu",
  "libc6-dev-riscv64-cross",
  "opensbi",
  "e2fsprogs",
];
/** Files every recipe directory must have. */
const RECIPE_FILES = [
  "linux.config",
  "busybox.config",
  "init",
  "inittab",
  "rcS",
  "profile",
  "hostname",
  "passwd",
  "group",
  "tsvm-agent.c",
  "tsvm-reseed.c",
  "udhcpc.script",
  "nsswitch.conf",
  "hosts",
];
const STEPS = 5;
const HEARTBEAT_MS = 60_000;

/** The recipe names available in the repository (directories of images/). */
export function recipeNames(): string[] {
  if (!existsSync(RECIPES_DIR)) return [];
  return readdirSync(RECIPES_DIR)
    .filter((entry) => statSync(join(RECIPES_DIR, entry)).isDirectory())
    .sort();
}

/** Versions of the Debian packages a build uses: installed binaries, and the busybox source apt would fetch. */
export async function debianVersions(): Promise<Record<string, string>> {
  const versions: Record<string, string> = {};
  const installed = await captureOutput("dpkg-query", [
    "-W",
    `-f=\${Package} \${Version}\n`,
    ...DEBIAN_PACKAGES,
  ]).catch((err: Error) => {
    throw new ImageBuildError(
      "IMAGE_BUILD_FAILED",
      `image build needs the Debian packages ${DEBIAN_PACKAGES.join(" ")} (run scripts/setup-host.sh): ${err.message}`,
    );
  });
  for (const line of installed.trim().split("\n")) {
    const [pkg, version] = line.split(" ");
    if (pkg && version) versions[pkg] = version;
  }
  const sources = await captureOutput("apt-cache", ["showsrc", "--only-source", "busybox"]).catch(
    (err: Error) => {
      throw new ImageBuildError(
        "IMAGE_BUILD_FAILED",
        `cannot find Debian's busybox source package (is a deb-src entry configured? run scripts/setup-host.sh): ${err.message}`,
      );
    },
  );
  // Without an epoch: "1:1.35.0-4+deb12u1" is busybox_1.35.0-4+deb12u1.dsc. Several entries (bookworm and
  // bookworm-updates) all go into the hash; apt-get source fetches the newest.
  const sourceVersions = [...sources.matchAll(/^Version: (?:\d+:)?(\S+)$/gm)].map((m) => m[1]!);
  if (sourceVersions.length === 0) {
    throw new ImageBuildError(
      "IMAGE_BUILD_FAILED",
      "cannot find Debian's busybox source package: apt-cache showsrc busybox lists no version; run scripts/setup-host.sh",
    );
  }
  versions["busybox (source)"] = [...new Set(sourceVersions)].sort().join(",");
  return versions;
}

/**
 * sha256 (hex) of every file of the recipe, the builder's own source (src/images, tests excluded) and the
 * Debian package versions: an image is rebuilt exactly when one of these changes.
 */
export function recipeHash(recipeDir: string, versions: Record<string, string>): string {
  const hash = createHash("sha256");
  const feed = (label: string, content: string | Buffer) => {
    hash.update(`${label}\0${content.length}\0`);
    hash.update(content);
  };
  for (const file of readdirSync(recipeDir).sort())
    feed(`recipe/${file}`, readFileSync(join(recipeDir, file)));
  for (const file of readdirSync(builderDir).sort()) {
    if (file.endsWith(".ts") && !file.endsWith(".test.ts")) {
      feed(`builder/${file}`, readFileSync(join(builderDir, file)));
    }
  }
  for (const pkg of Object.keys(versions).sort()) feed(`debian/${pkg}`, versions[pkg]!);
  return hash.digest("hex");
}

function formatElapsed(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes temporary directories (image builds, parts being saved) left by builds whose process is gone,
 * e.g. killed by a timeout; they hold the sources of a half-finished build.
 */
export function removeStaleBuilds(cacheDir: string): void {
  const sweep = (dir: string, pattern: RegExp) => {
    let entries: string[] = [];
    try {
      entries = readdirSync(dir);
    } catch {
      return;
    }
    for (const entry of entries) {
      const pid = Number(pattern.exec(entry)?.[1]);
      if (Number.isInteger(pid) && pid > 0 && !processAlive(pid)) {
        rmSync(join(dir, entry), { recursive: true, force: true });
      }
    }
  };
  sweep(cacheDir, /^\..+\.build-(\d+)$/);
  sweep(join(cacheDir, PARTS_DIR), /\.tmp-(\d+)$/);
}

const LOCK_POLL_MS = 2000;

/**
 * Takes the build lock (a file holding the builder's pid, created exclusively), waiting while a live
 * process holds it; a lock left by a dead process is taken over.
 */
export async function acquireBuildLock(lockPath: string, name: string, progress: (line: string) => void) {
  let announced = false;
  for (;;) {
    try {
      writeFileSync(lockPath, String(process.pid), { flag: "wx" });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    let holder = Number.NaN;
    try {
      holder = Number(readFileSync(lockPath, "utf8"));
    } catch {
      continue; // released between our two calls
    }
    if (!Number.isInteger(holder) || !processAlive(holder)) {
      rmSync(lockPath, { force: true });
      continue;
    }
    if (!announced) {
      progress(`waiting for process ${holder}, which is building image '${name}' (lock ${lockPath})…`);
      announced = true;
    }
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
  }
}

/** The only directory in `dir` whose name starts with `prefix` (what tar and apt-get source unpacked). */
function unpackedDir(dir: string, prefix: string, step: string, logPath: string): string {
  const found = readdirSync(dir).filter(
    (entry) => entry.startsWith(prefix) && statSync(join(dir, entry)).isDirectory(),
  );
  if (found.length !== 1) {
    throw new ImageBuildError(
      "IMAGE_BUILD_FAILED",
      `image build step '${step}' failed: expected one ${prefix}* directory in ${dir}, found ${found.length}; full log: ${logPath}`,
      step,
      logPath,
    );
  }
  return join(dir, found[0]!);
}

/**
 * The kernel and busybox builds are cached on their own ("parts"), keyed by only what goes into them, so
 * changing an init script rebuilds the image in seconds instead of recompiling Linux. Bump PARTS_FORMAT
 * whenever the linux or busybox step changes what it produces.
 */
const PARTS_FORMAT = "1";
const PARTS_DIR = ".parts";
/** Written last into a part directory: the part is complete. */
const PART_DONE = "done";
const LINUX_INPUTS = ["linux-source-6.1", "gcc-riscv64-linux-gnu", "binutils-riscv64-linux-gnu"];
const BUSYBOX_INPUTS = [
  "busybox (source)",
  "gcc-riscv64-linux-gnu",
  "binutils-riscv64-linux-gnu",
  "libc6-dev-riscv64-cross",
];

function pick(versions: Record<string, string>, keys: readonly string[]): string[] {
  return keys.map((key) => `${key}=${versions[key] ?? "?"}`);
}

function partHash(part: string, inputs: readonly string[]): string {
  const hash = createHash("sha256");
  for (const input of [PARTS_FORMAT, part, ...inputs]) hash.update(`${input.length}\0${input}\0`);
  return hash.digest("hex").slice(0, 16);
}

/** Copies files and trees into the part directory `dir` through a temporary directory and a rename. */
function savePart(dir: string, files: Record<string, string>): void {
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  for (const [name, source] of Object.entries(files)) {
    cpSync(source, join(tmp, name), { recursive: true, verbatimSymlinks: true });
  }
  writeFileSync(join(tmp, PART_DONE), "");
  try {
    renameSync(tmp, dir);
  } catch {
    // Another build saved the same part first; both are equal.
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Every path below `dir`, as absolute guest paths ("/bin", "/bin/busybox", …), parents first. */
function guestPaths(dir: string, prefix = ""): string[] {
  const paths: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const path = `${prefix}/${entry}`;
    paths.push(path);
    if (lstatSync(join(dir, entry)).isDirectory()) paths.push(...guestPaths(join(dir, entry), path));
  }
  return paths;
}

/**
 * Builds the image `name` from images/<name>/ unless the cache already has it for the current recipe
 * hash, and returns it. The build happens in a temporary directory renamed into place at the end, so a
 * half-built image is never seen; logs stay in <image>/logs/ (or the temporary directory on failure).
 */
export async function buildImage(name = "default", opts: BuildImageOptions = {}): Promise<ImageInfo> {
  const progress = opts.onProgress ?? ((line: string) => process.stderr.write(`${line}\n`));
  const cacheDir = opts.cacheDir ?? imagesCacheDir();
  const recipeDir = join(RECIPES_DIR, name);
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(name) || !existsSync(recipeDir)) {
    throw new ImageBuildError(
      "IMAGE_UNKNOWN",
      `unknown image '${name}'; available: ${recipeNames().join(", ") || "none"}`,
    );
  }
  for (const file of RECIPE_FILES) {
    if (!existsSync(join(recipeDir, file))) {
      throw new ImageBuildError("IMAGE_BUILD_FAILED", `recipe ${recipeDir} lacks the file ${file}`);
    }
  }

  ensureHostPackages();
  const versions = await debianVersions();
  const hash = recipeHash(recipeDir, versions);
  const dirName = imageDirName(name, hash);
  const finalDir = join(cacheDir, dirName);
  const cached = readImage(finalDir);
  if (cached) return cached;

  mkdirSync(cacheDir, { recursive: true });
  // One build per image at a time: a second caller (say `tsvm run` while the tests build) waits for the
  // first and then finds the image in the cache.
  const lockPath = join(cacheDir, `.${dirName}.lock`);
  await acquireBuildLock(lockPath, name, progress);
  try {
    return readImage(finalDir) ?? (await buildLocked(name, recipeDir, versions, hash, cacheDir, progress));
  } finally {
    rmSync(lockPath, { force: true });
  }
}

/** The build itself, under the image's lock. */
async function buildLocked(
  name: string,
  recipeDir: string,
  versions: Record<string, string>,
  hash: string,
  cacheDir: string,
  progress: (line: string) => void,
): Promise<ImageInfo> {
  const dirName = imageDirName(name, hash);
  const finalDir = join(cacheDir, dirName);
  removeStaleBuilds(cacheDir);
  const buildDir = join(cacheDir, `.${dirName}.build-${process.pid}`);
  rmSync(buildDir, { recursive: true, force: true });
  const workDir = join(buildDir, "work");
  const logsDir = join(buildDir, "logs");
  mkdirSync(workDir, { recursive: true });
  mkdirSync(logsDir);

  const partsDir = join(cacheDir, PARTS_DIR);
  const started = Date.now();
  const jobs = String(availableParallelism());
  const linuxVersion = (versions["linux-source-6.1"] ?? "6.1").replace(/-.*$/, "");
  const busyboxVersion = (versions["busybox (source)"] ?? "").replace(/[-,].*$/, "");
  // Fixed build identity and time, so the kernel's banner does not depend on who built it or when.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    LC_ALL: "C",
    KBUILD_BUILD_USER: "tsvm",
    KBUILD_BUILD_HOST: "tsvm",
    KBUILD_BUILD_TIMESTAMP: "1970-01-01",
    SOURCE_DATE_EPOCH: "0",
  };
  const recipe = (file: string) => join(recipeDir, file);

  let step = "";
  let logPath = "";
  let stepStarted = 0;
  const beginStep = (index: number, label: string, log: string) => {
    step = label;
    logPath = join(logsDir, log);
    stepStarted = Date.now();
    progress(`[${index}/${STEPS}] ${label}…`);
  };
  const phase = (index: number, label: string) => {
    step = label;
    progress(`[${index}/${STEPS}] ${label}…`);
  };
  const endStep = (index: number, label: string) =>
    progress(`[${index}/${STEPS}] ${label}: done (${formatElapsed(Date.now() - stepStarted)})`);
  const run = (command: string, args: string[], cwd: string, input?: string) =>
    runLogged(command, args, { step, logPath, cwd, env, input });
  /** Runs a long command, printing a line with the elapsed time every minute so the user sees it alive. */
  const runLong = async (index: number, command: string, args: string[], cwd: string) => {
    const label = step;
    const timer = setInterval(
      () => progress(`[${index}/${STEPS}] ${label}… ${formatElapsed(Date.now() - stepStarted)}`),
      HEARTBEAT_MS,
    );
    try {
      await run(command, args, cwd);
    } finally {
      clearInterval(timer);
    }
  };
  const fail = (why: string): never => {
    throw new ImageBuildError(
      "IMAGE_BUILD_FAILED",
      `image build step '${step}' failed: ${why}; full log: ${logPath}`,
      step,
      logPath,
    );
  };

  progress(`building image '${name}' (${dirName}) in ${buildDir}`);
  try {
    // 1. Linux: tinyconfig + our fragment, every fragment option checked after olddefconfig.
    const linux = `linux ${linuxVersion}`;
    const linuxPart = join(
      partsDir,
      `linux-${partHash("linux", [readFileSync(recipe("linux.config"), "utf8"), ...pick(versions, LINUX_INPUTS)])}`,
    );
    if (existsSync(join(linuxPart, PART_DONE))) {
      beginStep(1, `${linux}: reusing the kernel built for this config (${linuxPart})`, "linux.log");
    } else {
      beginStep(1, `${linux}: unpacking ${LINUX_SOURCE_TARBALL}`, "linux.log");
      await run("tar", ["-xf", LINUX_SOURCE_TARBALL, "-C", workDir], workDir);
      const linuxDir = unpackedDir(workDir, "linux-source-", step, logPath);
      const kmake = [`ARCH=riscv`, `CROSS_COMPILE=${CROSS_COMPILE}`];
      phase(1, `${linux}: configuring`);
      await run("make", [...kmake, "tinyconfig"], linuxDir);
      await run("scripts/kconfig/merge_config.sh", ["-m", ".config", recipe("linux.config")], linuxDir);
      await run("make", [...kmake, "olddefconfig"], linuxDir);
      const kernelConfig = readFileSync(join(linuxDir, ".config"), "utf8");
      const droppedLinux = droppedKconfigOptions(readFileSync(recipe("linux.config"), "utf8"), kernelConfig);
      if (droppedLinux.length > 0) fail(`olddefconfig dropped ${droppedLinux.join(", ")}`);
      phase(1, `${linux}: building Image (make -j${jobs})`);
      await runLong(1, "make", [...kmake, `-j${jobs}`, "Image"], linuxDir);
      savePart(linuxPart, {
        Image: join(linuxDir, "arch/riscv/boot/Image"),
        "linux.config": join(linuxDir, ".config"),
        "linux.log": logPath,
      });
      // The kernel tree is about a gigabyte; nothing later needs it.
      rmSync(linuxDir, { recursive: true, force: true });
    }
    copyFileSync(join(linuxPart, "Image"), join(buildDir, "Image"));
    copyFileSync(join(linuxPart, "linux.config"), join(buildDir, "linux.config"));
    copyFileSync(join(linuxPart, "linux.log"), logPath);
    endStep(1, linux);

    // 2. busybox: Debian's source, defconfig + our fragment, one static riscv64 binary.
    const busybox = `busybox ${busyboxVersion}`;
    const busyboxPart = join(
      partsDir,
      `busybox-${partHash("busybox", [readFileSync(recipe("busybox.config"), "utf8"), ...pick(versions, BUSYBOX_INPUTS)])}`,
    );
    const rootfs = join(workDir, "rootfs");
    if (existsSync(join(busyboxPart, PART_DONE))) {
      beginStep(2, `${busybox}: reusing the build for this config (${busyboxPart})`, "busybox.log");
    } else {
      const busyboxSrc = join(workDir, "busybox-source");
      mkdirSync(busyboxSrc);
      beginStep(2, `${busybox}: fetching Debian's source (apt-get source busybox)`, "busybox.log");
      await run("apt-get", ["source", "-q", "busybox"], busyboxSrc);
      const busyboxDir = unpackedDir(busyboxSrc, "busybox-", step, logPath);
      phase(2, `${busybox}: configuring`);
      await run("make", ["defconfig"], busyboxDir);
      const busyboxConfigPath = join(busyboxDir, ".config");
      const busyboxFragment = readFileSync(recipe("busybox.config"), "utf8");
      writeFileSync(
        busyboxConfigPath,
        applyKconfigFragment(readFileSync(busyboxConfigPath, "utf8"), busyboxFragment),
      );
      // busybox's kconfig has no olddefconfig: answer every question oldconfig might ask with its default.
      await run("make", ["oldconfig"], busyboxDir, "\n".repeat(10_000));
      const busyboxConfig = readFileSync(busyboxConfigPath, "utf8");
      const droppedBusybox = droppedKconfigOptions(busyboxFragment, busyboxConfig);
      if (droppedBusybox.length > 0) fail(`oldconfig dropped ${droppedBusybox.join(", ")}`);
      phase(2, `${busybox}: building (static, riscv64, make -j${jobs})`);
      await runLong(2, "make", [`-j${jobs}`, "busybox"], busyboxDir);
      const installed = join(busyboxSrc, "install");
      await run("make", [`CONFIG_PREFIX=${installed}`, "install"], busyboxDir);
      savePart(busyboxPart, {
        install: installed,
        "busybox.config": busyboxConfigPath,
        "busybox.log": logPath,
      });
      rmSync(busyboxSrc, { recursive: true, force: true });
    }
    cpSync(join(busyboxPart, "install"), rootfs, { recursive: true, verbatimSymlinks: true });
    copyFileSync(join(busyboxPart, "busybox.config"), join(buildDir, "busybox.config"));
    copyFileSync(join(busyboxPart, "busybox.log"), logPath);
    endStep(2, busybox);

    // 3. The root tree (shared by the initramfs and the disk), then the initramfs.
    beginStep(3, "initramfs: assembling the root tree and writing the cpio archive", "initramfs.log");
    rmSync(join(rootfs, "linuxrc"), { force: true });
    for (const dir of ["dev", "proc", "sys", "run", "tmp", "mnt", "root", "etc/init.d", "etc/tsvm"]) {
      mkdirSync(join(rootfs, dir), { recursive: true });
    }
    chmodSync(join(rootfs, "tmp"), 0o1777);
    chmodSync(join(rootfs, "root"), 0o700);
    const install = (file: string, dest: string, mode: number) => {
      copyFileSync(recipe(file), join(rootfs, dest));
      chmodSync(join(rootfs, dest), mode);
    };
    install("inittab", "etc/inittab", 0o644);
    install("rcS", "etc/init.d/rcS", 0o755);
    install("profile", "etc/profile", 0o644);
    install("hostname", "etc/hostname", 0o644);
    install("passwd", "etc/passwd", 0o644);
    install("group", "etc/group", 0o644);
    install("nsswitch.conf", "etc/nsswitch.conf", 0o644);
    install("hosts", "etc/hosts", 0o644);
    mkdirSync(join(rootfs, "usr/share/udhcpc"), { recursive: true });
    install("udhcpc.script", "usr/share/udhcpc/default.script", 0o755);
    // Our two programs, static and stripped, so the same sources give the same bytes: the guest agent
    // (one poll loop, ptys, flow control: more than busybox sh can do fast), and the reseed after a
    // restore (busybox cannot issue its ioctls); both in docs/guest-agent.md.
    mkdirSync(join(rootfs, "usr/sbin"), { recursive: true });
    const compile = (source: string, dest: string) =>
      run(
        `${CROSS_COMPILE}gcc`,
        ["-static", "-Os", "-s", "-Wall", "-Werror", "-o", join(rootfs, dest), recipe(source)],
        workDir,
      );
    await compile("tsvm-agent.c", "etc/tsvm/agent");
    await compile("tsvm-reseed.c", "usr/sbin/tsvm-reseed");
    const cpio = new CpioNewcWriter();
    cpio.addTree(rootfs);
    // The kernel opens /dev/console before running /init, and devtmpfs is not mounted yet then.
    cpio.addCharDevice("dev/console", 0o600, 5, 1);
    cpio.addDirectory("newroot");
    cpio.addFile("init", readFileSync(recipe("init")), 0o755);
    // Not compressed: inflating its 1.8 MB was about 27 M of the ~130 M instructions a boot to the prompt
    // takes on the interpreter (0.3–0.4 s); uncompressed the kernel only copies it, and it costs 0.6 MB more.
    writeFileSync(join(buildDir, "initrd.cpio"), cpio.finish());
    endStep(3, "initramfs");

    // 4. The ext4 root disk from the same tree, every file owned by root whoever builds it.
    beginStep(4, `root disk: mke2fs -t ext4 (${DISK_SIZE})`, "disk.log");
    const disk = join(buildDir, "disk.ext4");
    await run(
      "mke2fs",
      ["-q", "-F", "-t", "ext4", "-L", "tsvm-root", "-E", "root_owner=0:0", "-d", rootfs, disk, DISK_SIZE],
      workDir,
    );
    const chown = guestPaths(rootfs)
      .map((path) => `sif "${path}" uid 0\nsif "${path}" gid 0\n`)
      .join("");
    await run("debugfs", ["-w", "-f", "-", disk], workDir, chown);
    await run("e2fsck", ["-f", "-n", disk], workDir);
    chmodSync(disk, 0o444);
    endStep(4, "root disk");

    // 5. Firmware: Debian's OpenSBI, the generic platform's fw_dynamic.
    beginStep(5, `firmware: OpenSBI ${versions.opensbi ?? ""} fw_dynamic.bin`, "firmware.log");
    copyFileSync(OPENSBI_FW_DYNAMIC, join(buildDir, "fw_dynamic.bin"));
    endStep(5, "firmware");

    rmSync(workDir, { recursive: true, force: true });
    const manifest: ImageManifest = {
      name,
      kernel: "Image",
      initrd: "initrd.cpio",
      disk: "disk.ext4",
      firmware: "fw_dynamic.bin",
      builtAt: new Date().toISOString(),
      recipeHash: hash,
      buildSeconds: Math.round((Date.now() - started) / 1000),
      versions,
    };
    writeFileSync(join(buildDir, IMAGE_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  } catch (err) {
    // Keep the logs for the user; drop the gigabytes of sources.
    rmSync(workDir, { recursive: true, force: true });
    if (err instanceof ImageBuildError) throw err;
    fail((err as Error).message);
  }

  try {
    renameSync(buildDir, finalDir);
  } catch (err) {
    // Another build of the same recipe finished first: use it, drop ours.
    const other = readImage(finalDir);
    if (!other) throw err;
    rmSync(buildDir, { recursive: true, force: true });
    return other;
  }
  progress(`image '${name}' ready in ${formatElapsed(Date.now() - started)}: ${finalDir}`);
  // Older builds of this recipe are 70 MB each: keep only the previous one, for VMs booting from it now.
  for (const old of listImages(cacheDir)
    .filter((i) => i.name === name && i.dir !== finalDir)
    .slice(1)) {
    rmSync(old.dir, { recursive: true, force: true });
  }
  return readImage(finalDir)!;
}
