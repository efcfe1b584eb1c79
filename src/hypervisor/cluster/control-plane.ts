// The connection to the cluster's etcd and the one place its failures are translated: any failure to reach
// etcd becomes ControlPlaneUnavailableError ("control-plane-unavailable"), whose message says what could not
// be done. Key layout (all under one prefix, default /tsvm/): docs/cluster.md.

import { Etcd3 } from "etcd3";
import { HypervisorError } from "../hypervisor-error.ts";

export const DEFAULT_KEY_PREFIX = "/tsvm/";
/** How long one etcd request may take before the control plane counts as unavailable. */
const CALL_DEADLINE_MS = 3000;

export class ControlPlaneUnavailableError extends HypervisorError {
  constructor(url: string, what: string, cause: unknown) {
    const detail = ((cause as Error)?.message ?? String(cause)).split("\n")[0]!.slice(0, 200);
    super(
      "control-plane-unavailable",
      `control plane unavailable: could not ${what} (etcd at ${url}: ${detail}); running VMs keep running, retry when etcd is back`,
    );
  }
}

export class ControlPlane {
  readonly client: Etcd3;

  constructor(
    /** etcd client URLs, comma-separated (http://127.0.0.1:2379). */
    readonly url: string,
    readonly prefix: string = DEFAULT_KEY_PREFIX,
  ) {
    this.client = new Etcd3({
      hosts: url.split(","),
      dialTimeout: CALL_DEADLINE_MS,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
    });
  }

  /** The full key of `path` (e.g. `vms/web`). */
  key(path: string): string {
    return `${this.prefix}${path}`;
  }

  /** Runs `fn`; an error that is not already a HypervisorError means etcd could not be reached. */
  async call<T>(what: string, fn: (client: Etcd3) => Promise<T>): Promise<T> {
    try {
      return await fn(this.client);
    } catch (e) {
      if (e instanceof HypervisorError) throw e;
      throw new ControlPlaneUnavailableError(this.url, what, e);
    }
  }

  close(): void {
    this.client.close();
  }
}
