// Samples the API's per-VM stats and turns the VMM's CPU time into a CPU % between two samples, as
// `tsvm top` does; keeps the last minutes of figures for the charts.

import { api } from "./console-api.ts";

export interface Sample {
  readonly at: number;
  /** Host CPU used by the VM's VMM, in percent of one core (undefined for the first sample). */
  readonly cpuPercent: number | undefined;
  /** Guest instructions per second, in millions. */
  readonly mips: number | undefined;
}

/** Samples kept per VM: two minutes at one every two seconds. */
const KEPT = 60;

export class StatsSampler {
  private readonly samples = new Map<string, Sample[]>();
  private readonly cpuMs = new Map<string, { cpuMs: number; at: number }>();

  /** Takes one sample of each VM in `names` (ones that fail, e.g. just stopped, are skipped). */
  async sample(names: readonly string[]): Promise<void> {
    await Promise.all(
      names.map(async (name) => {
        let stats: Record<string, number>;
        try {
          stats = (await api.stats(name)).stats;
        } catch {
          return;
        }
        const at = performance.now();
        const before = this.cpuMs.get(name);
        const cpuMs = stats.vmmCpuMs;
        let cpuPercent: number | undefined;
        if (cpuMs !== undefined) {
          if (before && at > before.at)
            cpuPercent = Math.max(0, (100 * (cpuMs - before.cpuMs)) / (at - before.at));
          this.cpuMs.set(name, { cpuMs, at });
        }
        const ips = stats.instructionsPerSecond;
        const list = this.samples.get(name) ?? [];
        list.push({ at, cpuPercent, mips: ips === undefined ? undefined : ips / 1e6 });
        if (list.length > KEPT) list.shift();
        this.samples.set(name, list);
      }),
    );
  }

  latest(name: string): Sample | undefined {
    return this.samples.get(name)?.at(-1);
  }

  history(name: string): readonly Sample[] {
    return this.samples.get(name) ?? [];
  }
}
