// A live chart of one VM's CPU % and MIPS in plain SVG: two lines over the last samples, each scaled to
// its own peak, with the current figures as text (also the chart's accessible name).

import type { Sample } from "./stats-sampler.ts";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 160;

export class StatsChart {
  readonly element: SVGSVGElement;
  private readonly cpuLine: SVGPolylineElement;
  private readonly mipsLine: SVGPolylineElement;
  private readonly label: SVGTextElement;

  constructor() {
    this.element = document.createElementNS(SVG, "svg");
    this.element.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
    this.element.setAttribute("class", "chart");
    this.element.setAttribute("role", "img");
    this.cpuLine = this.line("cpu-line");
    this.mipsLine = this.line("mips-line");
    this.label = document.createElementNS(SVG, "text");
    this.label.setAttribute("x", "8");
    this.label.setAttribute("y", "18");
    this.label.setAttribute("class", "chart-label");
    this.element.append(this.label);
    this.update([]);
  }

  private line(cls: string): SVGPolylineElement {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("class", cls);
    line.setAttribute("fill", "none");
    this.element.append(line);
    return line;
  }

  update(samples: readonly Sample[]): void {
    const cpu = samples.map((s) => s.cpuPercent ?? 0);
    const mips = samples.map((s) => s.mips ?? 0);
    this.cpuLine.setAttribute("points", points(cpu, Math.max(100, ...cpu)));
    this.mipsLine.setAttribute("points", points(mips, Math.max(1, ...mips)));
    const last = samples.at(-1);
    const text =
      last === undefined
        ? "CPU and MIPS: no samples yet"
        : `CPU ${last.cpuPercent === undefined ? "-" : `${last.cpuPercent.toFixed(1)} %`}, ` +
          `${last.mips === undefined ? "-" : last.mips.toFixed(1)} MIPS`;
    this.label.textContent = text;
    this.element.setAttribute("aria-label", text);
  }
}

/** Polyline points of `values` right-aligned over the chart's width (60 slots), scaled to `peak`. */
function points(values: readonly number[], peak: number): string {
  const step = WIDTH / 59;
  const x0 = WIDTH - (values.length - 1) * step;
  return values
    .map((v, i) => `${(x0 + i * step).toFixed(1)},${(HEIGHT - 4 - (v / peak) * (HEIGHT - 30)).toFixed(1)}`)
    .join(" ");
}
