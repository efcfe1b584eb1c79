// `tsvm image`: builds guest images from the recipes in images/ and lists the ones in the cache.
import { buildImage, recipeNames } from "../images/build.ts";
import { ImageBuildError } from "../images/image-build-error.ts";
import { type ImageInfo, imagesCacheDir, listImages } from "../images/image-store.ts";

const HELP = `Usage: tsvm image <subcommand> [options]

Subcommands:
  build [NAME]                        build an image (default: 'default') unless the cache has it
  list [--format table|json]          list the images in the cache

Run 'tsvm image <subcommand> --help' for details.
`;

const BUILD_HELP = `Usage: tsvm image build [NAME]

Builds the guest image NAME (default: 'default') from the recipe in images/NAME/ and Debian's packages
(Linux 6.1, busybox, OpenSBI), unless the cache already has it for the current recipe. Installs missing
Debian packages first (scripts/setup-host.sh). Progress goes to stderr; the image directory is printed on
stdout.

Cache: \${TSVM_CACHE:-\${XDG_CACHE_HOME:-~/.cache}/tsvm}/images (now ${imagesCacheDir()})
`;

const LIST_HELP = `Usage: tsvm image list [--format table|json]

Lists the built images in the cache, newest first. --format json prints an array of
{ name, dir, kernel, initrd, disk, firmware, builtAt, recipeHash }.
`;

function usageError(message: string): number {
  process.stderr.write(`tsvm image: ${message}; see 'tsvm image --help'\n`);
  return 2;
}

function isHelp(arg: string | undefined): boolean {
  return arg === "--help" || arg === "-h";
}

async function build(args: string[]): Promise<number> {
  if (args.some(isHelp)) {
    process.stdout.write(BUILD_HELP);
    return 0;
  }
  const option = args.find((a) => a.startsWith("-"));
  if (option !== undefined) return usageError(`unknown option '${option}' for 'build'`);
  if (args.length > 1) return usageError(`'build' takes one image name, got ${args.length}`);
  const name = args[0] ?? "default";
  if (!recipeNames().includes(name)) {
    return usageError(`unknown image '${name}' (available: ${recipeNames().join(", ") || "none"})`);
  }
  try {
    const image = await buildImage(name);
    process.stdout.write(`${image.dir}\n`);
    return 0;
  } catch (err) {
    if (err instanceof ImageBuildError) {
      process.stderr.write(`tsvm image: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

function table(images: ImageInfo[]): string {
  if (images.length === 0) return `no images in ${imagesCacheDir()}; build one with 'tsvm image build'\n`;
  const rows = [
    ["NAME", "HASH", "BUILT", "DIR"],
    ...images.map((i) => [i.name, i.recipeHash.slice(0, 16), i.builtAt.replace(/\.\d+Z$/, "Z"), i.dir]),
  ];
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((r) => r[col]!.length)));
  return rows
    .map(
      (r) =>
        `${r
          .map((cell, col) => cell.padEnd(widths[col]!))
          .join("  ")
          .trimEnd()}\n`,
    )
    .join("");
}

function list(args: string[]): number {
  if (args.some(isHelp)) {
    process.stdout.write(LIST_HELP);
    return 0;
  }
  let format = "table";
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--format") {
      const value = args[++i];
      if (value === undefined) return usageError("'--format' needs a value: table or json");
      format = value;
    } else if (arg.startsWith("--format=")) {
      format = arg.slice("--format=".length);
    } else {
      return usageError(`unexpected argument '${arg}' for 'list'`);
    }
  }
  if (format !== "table" && format !== "json") {
    return usageError(`unknown format '${format}' (use table or json)`);
  }
  const images = listImages();
  process.stdout.write(format === "json" ? `${JSON.stringify(images, null, 2)}\n` : table(images));
  return 0;
}

/** Runs `tsvm image …` with the arguments after "image"; resolves to the process exit code. */
export async function imageCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined) return usageError("missing subcommand (build or list)");
  if (isHelp(sub) || sub === "help") {
    process.stdout.write(HELP);
    return 0;
  }
  if (sub === "build") return build(rest);
  if (sub === "list") return list(rest);
  return usageError(`unknown subcommand '${sub}' (build or list)`);
}
