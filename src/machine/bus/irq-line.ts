// A level-triggered interrupt wire: the only way a device reaches an interrupt controller or a hart.

export interface IrqLine {
  /** Drive the line high (true) or low (false). Idempotent: repeating a level is harmless. */
  set(level: boolean): void;
}

/** An IrqLine that calls back on each level change (used by boards to wire devices to controllers). */
export class CallbackIrqLine implements IrqLine {
  /** The level last passed on; null when the receiver's level is not known to match it (see forget). */
  private level: boolean | null = false;
  constructor(private readonly onChange: (level: boolean) => void) {}
  set(level: boolean): void {
    if (level === this.level) return;
    this.level = level;
    this.onChange(level);
  }
  get high(): boolean {
    return this.level === true;
  }

  /**
   * The receiver's level was set behind this line's back (loaded from a saved state): the next `set` is
   * passed on whatever its level. Without it a line that was high before the load would swallow the
   * sender's next "high", and the receiver would keep the saved level (e.g. a hart never seeing a timer
   * interrupt that came due while the machine was saved).
   */
  forget(): void {
    this.level = null;
  }
}
