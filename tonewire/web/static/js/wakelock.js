// Keep the screen on while listening, so captions don't vanish mid-sentence. The browser drops
// the lock whenever the page is hidden; hold() is called again when it is shown. Unsupported
// or refused (battery saver): nothing happens, silently.

export class ScreenWake {
  constructor() {
    this.sentinel = null;
    this.wanted = false;
  }

  async hold() {
    this.wanted = true;
    if (!("wakeLock" in navigator) || document.visibilityState !== "visible") return;
    if (this.sentinel && !this.sentinel.released) return;
    try {
      this.sentinel = await navigator.wakeLock.request("screen");
    } catch {
      this.sentinel = null;
    }
  }

  async release() {
    this.wanted = false;
    const sentinel = this.sentinel;
    this.sentinel = null;
    if (sentinel && !sentinel.released) {
      try {
        await sentinel.release();
      } catch {
        // already gone
      }
    }
  }
}
