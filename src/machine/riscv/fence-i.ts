// FENCE.I on a hart whose RAM other threads write: their stores do not pass through this thread's block
// cache, so a page it compiled may have changed unseen. The guest's FENCE.I (which Linux runs on every hart,
// through an IPI, after it writes code for any of them) is where such writes must become visible to this
// hart's instruction fetch (unprivileged spec §3.1 "Zifencei"): every code page's blocks are dropped then.

import type { BlockCache } from "./block-cache.ts";

export function dropCodeOfOtherThreads(cache: BlockCache): void {
  const pages = cache.codePage;
  for (let p = 0; p < pages.length; p++) if (pages[p] !== 0) cache.invalidatePage(p);
}
