// The API's bearer token: 256 random bits generated at the daemon's first start, kept in a 0600 file.

import { randomBytes } from "node:crypto";
import { chmod, readFile, stat } from "node:fs/promises";
import { writeFileAtomic } from "../../hypervisor/store.ts";
import { apiTokenPath } from "../data-dir.ts";

/** Reads the token of the data directory at `home`, creating it on first use. */
export async function ensureApiToken(home: string): Promise<string> {
  const path = apiTokenPath(home);
  try {
    const token = (await readFile(path, "utf8")).trim();
    if (/^[0-9a-f]{64}$/.test(token)) {
      // Someone may have loosened the mode; a token readable by others is no secret.
      if (((await stat(path)).mode & 0o077) !== 0) await chmod(path, 0o600);
      return token;
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  const token = randomBytes(32).toString("hex");
  await writeFileAtomic(path, `${token}\n`, 0o600);
  return token;
}
