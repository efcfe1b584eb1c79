// Kconfig fragments (the `CONFIG_X=v` / `# CONFIG_X is not set` lines of a .config): parsing, applying
// one over a full .config, and checking which of its options a later `olddefconfig` dropped.

/** One option a fragment sets; `value` is the text after `=`, or "n" for `# CONFIG_X is not set`. */
export interface KconfigOption {
  readonly name: string;
  readonly value: string;
}

const SET_LINE = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/;
const UNSET_LINE = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/;

/** The options of a fragment or .config, in order; comments and blank lines are skipped. */
export function parseKconfig(text: string): KconfigOption[] {
  const options: KconfigOption[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const set = SET_LINE.exec(line);
    if (set) {
      options.push({ name: set[1]!, value: set[2]! });
      continue;
    }
    const unset = UNSET_LINE.exec(line);
    if (unset) options.push({ name: unset[1]!, value: "n" });
  }
  return options;
}

function kconfigLine(option: KconfigOption): string {
  return option.value === "n" ? `# ${option.name} is not set` : `${option.name}=${option.value}`;
}

/**
 * The .config text with every option of the fragment replacing the line of the same name (or appended
 * when the .config has none); for tools without merge_config.sh, such as busybox.
 */
export function applyKconfigFragment(configText: string, fragmentText: string): string {
  const wanted = new Map(parseKconfig(fragmentText).map((o) => [o.name, o]));
  const seen = new Set<string>();
  const lines = configText.split("\n").map((line) => {
    const [option] = parseKconfig(line);
    if (option === undefined) return line;
    const replacement = wanted.get(option.name);
    if (replacement === undefined) return line;
    seen.add(option.name);
    return kconfigLine(replacement);
  });
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  for (const option of wanted.values()) if (!seen.has(option.name)) lines.push(kconfigLine(option));
  return `${lines.join("\n")}\n`;
}

/**
 * The fragment's options that the final .config does not have as asked, each as
 * "CONFIG_X=wanted (got: actual)". An option absent from the .config counts as "n": Kconfig omits
 * options whose dependencies are off.
 */
export function droppedKconfigOptions(fragmentText: string, configText: string): string[] {
  const actual = new Map(parseKconfig(configText).map((o) => [o.name, o.value]));
  const dropped: string[] = [];
  for (const option of parseKconfig(fragmentText)) {
    const got = actual.get(option.name) ?? "n";
    if (got !== option.value) dropped.push(`${option.name}=${option.value} (got: ${got})`);
  }
  return dropped;
}
