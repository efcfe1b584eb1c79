// End to end: the default image's Linux on a raw disk through `tsvm run`, as a user would run it, sees
// discard and write-zeroes on its virtio disk, and what fstrim frees in the guest is freed on the host.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fallocate } from "../../src/engines/backends/fallocate.ts";
import { copyDiskFor } from "../../src/images/image-store.ts";
import { img, skip, tsvmRun } from "./tsvm-run-fixture.ts";

/** 512-byte blocks a file holds on the host's filesystem. */
const blocks = (p: string) => statSync(p).blocks;

test("the guest's fstrim gives the raw disk's freed blocks back to the host", { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-disk-linux-"));
  try {
    const disk = copyDiskFor(img!, join(dir, "disk.img"));
    // Every block allocated first, whatever the copy kept sparse, so that only a punch can free one.
    const fd = openSync(disk, "r+");
    assert.equal(fallocate(fd, 0, 0, fstatSync(fd).size), "ok");
    closeSync(fd);
    const size = statSync(disk).size;
    assert.ok(blocks(disk) * 512 >= size, "fully allocated");
    // 16 MiB of data the host must store, then deleted and trimmed; a clean poweroff so e2fsck can judge.
    const cmd =
      "cat /sys/block/vda/queue/discard_max_bytes /sys/block/vda/queue/write_zeroes_max_bytes; " +
      "dd if=/dev/urandom of=/junk bs=64k count=256 2>/dev/null; sync; rm /junk; sync; fstrim -v /; " +
      "poweroff; sleep 600";
    const r = await tsvmRun(["--disk", disk, "--exec", cmd]);
    assert.equal(r.status, 0, r.stderr);
    const [discardMax, zeroesMax, trimmed] = r.stdout.split("\n");
    assert.ok(Number(discardMax) > 0, `discard_max_bytes: ${r.stdout}`);
    assert.ok(Number(zeroesMax) > 0, `write_zeroes_max_bytes: ${r.stdout}`);
    const m = /^\/: (\d+) bytes trimmed$/.exec(trimmed ?? "");
    assert.ok(m && Number(m[1]) >= 16 << 20, `fstrim -v: ${r.stdout}`);
    // The host must have freed what the guest trimmed, less the little the guest wrote again before its
    // poweroff (journal and metadata).
    const trimmedBytes = Number(m[1]);
    const after = blocks(disk);
    assert.ok(
      after * 512 <= size - trimmedBytes + (4 << 20),
      `${size / 512} host blocks → ${after}, though the guest trimmed ${trimmedBytes} bytes`,
    );
    const fsck = spawnSync("/sbin/e2fsck", ["-n", "-f", disk], { encoding: "utf8", timeout: 60_000 });
    assert.equal(fsck.status, 0, `e2fsck: ${fsck.stdout}${fsck.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
