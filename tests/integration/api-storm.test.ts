// The storm (api-storm.ts): 20 clients, 1,000 random lifecycle calls and reads on 10 VMs through the real
// daemon's API; afterwards no VM is in two states, no operation is lost or unfinished, host usage adds up,
// the event stream is complete, ordered and replays legally, and no VMM process is left. The seed is printed
// (TSVM_STORM_SEED=N replays a storm's calls).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Instance, Operation, VmEvent } from "../../src/api/types.ts";
import {
  checkEvents,
  checkInvariants,
  checkOperationEffects,
  createStormVms,
  deleteAll,
  EventRecorder,
  runStorm,
  StormDaemon,
  summarize,
  waitQuiescent,
} from "./api-storm.ts";

let daemon: StormDaemon;

before(async () => {
  daemon = await StormDaemon.start();
});

after(async () => {
  await daemon?.stop();
});

test("a storm of 1,000 random calls from 20 clients on 10 VMs keeps every invariant", {
  timeout: 300_000,
}, async () => {
  const seed = Number(process.env.TSVM_STORM_SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`storm seed ${seed} (replay with TSVM_STORM_SEED=${seed})`);
  const { client } = daemon;
  const recorder = new EventRecorder(client);
  await createStormVms(client, 10);
  const result = await runStorm(daemon, { seed, clients: 20, calls: 1000, vms: 10 });
  for (const id of result.operationIds) await client.waitUntilDone(id);
  await waitQuiescent(client, 120_000);
  const violations = await checkInvariants(daemon, result, recorder);
  console.log(await summarize(client, result, recorder));
  assert.deepEqual(
    violations,
    [],
    `seed ${seed}:\n${violations.join("\n")}\ndaemon log:\n${daemon.log.slice(-4000)}`,
  );

  assert.deepEqual(await deleteAll(client), []);
  await waitQuiescent(client, 60_000);
  const deadline = Date.now() + 10_000;
  while (daemon.vmmProcesses().length > 0 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(daemon.vmmProcesses(), [], "every VMM is gone once its VM is deleted");
  await recorder.stop();
});

test("the storm's checks see a gap, an illegal path, a wrong final status and an operation without its effect", () => {
  const at = (s: number) => `2026-01-01T00:00:0${s}.000Z`;
  const event = (seq: number, type: VmEvent["type"], from: VmEvent["from"], to: VmEvent["to"]): VmEvent => ({
    seq,
    time: at(seq),
    type,
    vmName: "a",
    vmId: "id-a",
    from,
    to,
    message: "",
  });
  const events = [
    event(1, "transition", null, "PROVISIONING"),
    event(2, "transition", "PROVISIONING", "STAGING"),
    event(4, "transition", "STAGING", "SUSPENDED"),
    event(5, "transition", "SUSPENDED", "RUNNING"),
  ];
  const vm = { id: "id-a", name: "a", status: "TERMINATED" } as Instance;
  const found = checkEvents(events, 5, new Map([["id-a", vm]]));
  assert.ok(
    found.some((v) => /#3 has seq 4/.test(v)),
    found.join("\n"),
  );
  assert.ok(
    found.some((v) => /SUSPENDED→RUNNING: not a legal transition/.test(v)),
    found.join("\n"),
  );
  assert.ok(
    found.some((v) => /end at RUNNING, but it is TERMINATED/.test(v)),
    found.join("\n"),
  );
  const op = {
    id: "operation-1",
    operationType: "stop",
    targetName: "a",
    status: "DONE",
    startTime: at(1),
    endTime: at(5),
    error: null,
  } as Operation;
  assert.match(checkOperationEffects([op], events).join(""), /succeeded, but its events say/);
  assert.deepEqual(checkOperationEffects([{ ...op, operationType: "resume" }], events), []);
});
