// A level-triggered interrupt wire: the only way a device reaches an interrupt controller or a hart.

export interface IrqLine {
  /** Drive the line high (true) or low (false). Idempotent: repeating a level is harmless. */
  set(level: boolean): void;
}

/** An IrqLine that calls back on each level change (used by boards to wire devices to controllers). */
export class CallbackIrqLine implements IrqLine {
  private level = false;
  constructor(private readonly onChange: (level: boolean) => void) {}
  set(level: boolean): void {
    if (level === this.level) return;
    this.level = level;
    this.onChange(level);
  }
  get high(): boolean {
    return this.level;
  }
}
