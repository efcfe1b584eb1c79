// The page's one line of news: what an action did, or what went wrong in the API's own words. It is a
// live region, so a screen reader hears it, and it stays until the next one.

export function notice(message: string, kind: "ok" | "error" = "ok"): void {
  const line = document.getElementById("notice");
  if (!line) return;
  line.textContent = message;
  line.className = kind;
  line.hidden = false;
}

/** Runs `action`, telling the outcome: `done` when it worked, the error's message when not. */
export async function attempt(action: () => Promise<unknown>, done: string): Promise<boolean> {
  try {
    await action();
    notice(done);
    return true;
  } catch (e) {
    notice(e instanceof Error ? e.message : String(e), "error");
    return false;
  }
}
