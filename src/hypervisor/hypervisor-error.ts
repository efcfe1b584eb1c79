// The error the hypervisor raises to its callers: a stable `code` for programs and a message for people.

export class HypervisorError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}
