// The error an image build raises: a stable `code`, the step that failed and where its full log is.

export class ImageBuildError extends Error {
  constructor(
    readonly code: "IMAGE_BUILD_FAILED" | "IMAGE_UNKNOWN",
    message: string,
    /** The step that failed, e.g. "linux 6.1.192: building Image". */
    readonly step?: string,
    /** The full log of that step, kept in the cache directory. */
    readonly logPath?: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}
