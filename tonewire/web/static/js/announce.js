// Screen-reader announcements through a polite aria-live region. Repeating the same words
// would be ignored by some readers, and a flood of updates is noise: only changes are spoken,
// and at most one message per interval (the latest wins).

export class Announcer {
  constructor(region, { minIntervalMs = 1500 } = {}) {
    this.region = region;
    this.minIntervalMs = minIntervalMs;
    this.last = "";
    this.lastAt = 0;
    this.timer = null;
  }

  say(text) {
    if (text === this.last) return;
    const wait = this.lastAt + this.minIntervalMs - performance.now();
    clearTimeout(this.timer);
    if (wait > 0) {
      this.timer = setTimeout(() => this.say(text), wait);
      return;
    }
    this.last = text;
    this.lastAt = performance.now();
    this.region.textContent = text;
  }
}
