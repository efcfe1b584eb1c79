// Errors the machine layer raises to its host: each carries a stable code and a message written for a user.

export class MachineError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "MachineError";
  }
}
