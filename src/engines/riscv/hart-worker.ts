// The entry of a worker thread that runs one hart of a RiscvEngine's board (hart-threads.ts): it builds the
// hart from the board's setup (smp/away-hart.ts) and runs it from each state the engine sends until the
// engine parks it, then sends its state back.

import { parentPort, workerData } from "node:worker_threads";
import { AwayHart, type AwayHartSetup, type Rv64HartState } from "../../machine/index.ts";
import { sharedMonotonicClock } from "./shared-monotonic-clock.ts";

/** From the engine: run from this state until parked. */
export interface HartRunMessage {
  readonly state: Rv64HartState;
}

/** To the engine: parked with this state, or failed. */
export type HartWorkerReply =
  | { readonly kind: "parked"; readonly state: Rv64HartState }
  | { readonly kind: "error"; readonly message: string };

const port = parentPort;
if (port === null) throw new Error("hart-worker.ts runs only as a worker thread");
const away = new AwayHart(workerData as AwayHartSetup, sharedMonotonicClock());
port.on("message", (m: HartRunMessage) => {
  let reply: HartWorkerReply;
  try {
    away.load(m.state);
    away.runUntilParked();
    reply = { kind: "parked", state: away.save() };
  } catch (e) {
    reply = { kind: "error", message: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(reply);
});
