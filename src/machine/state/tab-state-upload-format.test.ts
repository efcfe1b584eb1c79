// The header of a tab's state upload: its shape and its disk runs are checked against the disk.

import assert from "node:assert/strict";
import { test } from "node:test";
import { StateFormatError } from "./state-file-format.ts";
import { checkTabUploadHeader } from "./tab-state-upload-format.ts";

const DISK = 1 << 20;
const header = (disk: unknown, base: unknown = { kind: "image" }) => ({
  image: "ab",
  base,
  manifest: {},
  disk,
});

test("a header with aligned, increasing runs inside the disk is taken", () => {
  const h = checkTabUploadHeader(
    header([
      { offset: 0, length: 4096 },
      { offset: 8192, length: 512 },
    ]),
    DISK,
  );
  assert.equal(h.disk.length, 2);
  assert.doesNotThrow(() =>
    checkTabUploadHeader(header([], { kind: "vm", vmId: "x", treeSha256: "y" }), DISK),
  );
});

test("runs outside the disk, unaligned, overlapping or empty are refused with the run named", () => {
  for (const runs of [
    [{ offset: DISK - 512, length: 1024 }],
    [{ offset: 100, length: 512 }],
    [
      { offset: 4096, length: 4096 },
      { offset: 6144, length: 512 },
    ],
    [{ offset: 0, length: 0 }],
    [{ offset: -512, length: 512 }],
  ])
    assert.throws(
      () => checkTabUploadHeader(header(runs), DISK),
      (e: unknown) => e instanceof StateFormatError && /the upload's disk run \{"offset"/.test(e.message),
    );
});

test("a header without its image, manifest or disk base is refused", () => {
  assert.throws(() => checkTabUploadHeader({ base: { kind: "image" }, disk: [] }, DISK), /lacks the image/);
  assert.throws(() => checkTabUploadHeader(header([], { kind: "vm" }), DISK), /what its disk started from/);
  assert.throws(() => checkTabUploadHeader(header("all"), DISK), /valid list of disk runs/);
});
