// The daemon's end of an agent session (vmm-protocol.ts, method "session"): one connection to the VM's VMM
// per session; stdin is sent within the VMM's window, output is acknowledged once the caller has taken it
// (so a slow caller holds the guest back instead of losing bytes), and closing the connection kills it.

import { connect as connectUnix, type Socket } from "node:net";
import { HypervisorError } from "./hypervisor-error.ts";
import type { VmmSession, VmmSessionOptions } from "./vmm.ts";
import {
  encodeMessage,
  LineDecoder,
  SESSION_CHUNK_BYTES,
  SESSION_INPUT_WINDOW_BYTES,
  type VmmResponse,
  type VmmSessionInput,
} from "./vmm-protocol.ts";

const ID = 1;

/** Opens a session on the VMM listening at `socketPath`; resolves once the guest runs it. */
export async function openVmmSession(
  socketPath: string,
  vmName: string,
  options: VmmSessionOptions,
): Promise<VmmSession> {
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = connectUnix(socketPath);
    s.once("connect", () => resolve(s));
    s.once("error", () =>
      reject(new HypervisorError("not-running", `the VM '${vmName}' has no running VMM`)),
    );
  });
  socket.on("error", () => {});
  socket.setEncoding("utf8");
  return new Promise<VmmSession>((resolveOpen, rejectOpen) => {
    let opened = false;
    let resolveExit!: (code: number) => void;
    let rejectExit!: (e: Error) => void;
    const exit = new Promise<number>((resolve, reject) => {
      resolveExit = resolve;
      rejectExit = reject;
    });
    // A caller that never looks at `exit` (it killed the session) must not see an unhandled rejection.
    exit.catch(() => {});
    let ended = false;
    const finish = (fn: () => void) => {
      if (ended) return;
      ended = true;
      fn();
      socket.destroy();
      for (const w of inputWaiters.splice(0)) w();
    };
    const fail = (e: HypervisorError) => finish(() => (opened ? rejectExit(e) : rejectOpen(e)));
    const send = (msg: Omit<VmmSessionInput, "id">) => {
      if (!ended && !socket.destroyed) socket.write(encodeMessage({ id: ID, ...msg }));
    };

    let unackedInput = 0;
    const inputWaiters: (() => void)[] = [];
    /** Output promises not settled yet: the socket is not read on while any is (bounded memory here). */
    let outputWaits = 0;

    const decoder = new LineDecoder(
      (raw) => {
        const msg = raw as VmmResponse;
        if (msg.output) {
          const bytes = new Uint8Array(Buffer.from(String(msg.output.data), "base64"));
          const stream = msg.output.stream === "stderr" ? "stderr" : "stdout";
          let wait: void | Promise<void>;
          try {
            wait = options.onOutput(bytes, stream);
          } catch {
            // The caller's own failure (its client went away): nothing more can be delivered.
            return finish(() =>
              rejectExit(new HypervisorError("exec-cancelled", "the session was cancelled")),
            );
          }
          if (!wait) return send({ ack: bytes.length });
          if (outputWaits++ === 0) socket.pause();
          void wait.then(
            () => {
              send({ ack: bytes.length });
              if (--outputWaits === 0) socket.resume();
            },
            () =>
              finish(() => rejectExit(new HypervisorError("exec-cancelled", "the session was cancelled"))),
          );
        } else if (typeof msg.inputAck === "number") {
          unackedInput = Math.max(0, unackedInput - msg.inputAck);
          while (unackedInput < SESSION_INPUT_WINDOW_BYTES && inputWaiters.length > 0)
            inputWaiters.shift()!();
        } else if (msg.opened) {
          opened = true;
          resolveOpen(session);
        } else if (msg.error) {
          fail(new HypervisorError(msg.error.code, msg.error.message));
        } else {
          const exitCode = (msg.result as { exitCode?: unknown } | undefined)?.exitCode;
          if (typeof exitCode === "number") finish(() => resolveExit(exitCode));
          else fail(new HypervisorError("vmm-error", "the VMM answered a session without an exit status"));
        }
      },
      (problem) => fail(new HypervisorError("vmm-error", problem)),
    );
    socket.on("data", (chunk: string) => decoder.push(chunk));
    socket.once("close", () =>
      fail(new HypervisorError("not-running", `the VM '${vmName}' stopped while the session ran`)),
    );

    const session: VmmSession = {
      async write(bytes) {
        for (let at = 0; at < bytes.length; at += SESSION_CHUNK_BYTES) {
          if (ended) throw new HypervisorError("exec-cancelled", "the session has ended");
          const chunk = bytes.subarray(at, at + SESSION_CHUNK_BYTES);
          unackedInput += chunk.length;
          send({ input: Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length).toString("base64") });
          if (unackedInput >= SESSION_INPUT_WINDOW_BYTES)
            await new Promise<void>((resolve) => inputWaiters.push(resolve));
        }
      },
      end: () => send({ eof: true }),
      resize: (cols, rows) => send({ resize: { cols, rows } }),
      signal: (n) => send({ signal: n }),
      kill: () => finish(() => rejectExit(new HypervisorError("exec-cancelled", "the session was killed"))),
      exit,
    };
    socket.write(
      encodeMessage({
        id: ID,
        method: "session",
        params: {
          ...(options.command === null ? {} : { command: options.command }),
          ...(options.tty ? { tty: options.tty } : {}),
          agentWaitMs: options.agentWaitMs,
        },
      }),
    );
  });
}
