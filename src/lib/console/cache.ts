/**
 * A short shared cache for the console's read queries. Time is cut into windows of ttlMs
 * (wall clock); a result serves every request of its window, and concurrent requests share
 * one database round trip (single flight). So the database sees at most one load per window
 * and key, however many tabs are open: twenty tabs cost what two do. Failures are not cached.
 */
export class SharedCache {
  private readonly entries = new Map<string, {window: number; pending: boolean; value: Promise<unknown>}>()
  /** Loads that reached the database (for tests and the bench). */
  loads = 0

  constructor(
    readonly ttlMs: number,
    private readonly maxEntries = 500,
  ) {}

  get<T>(key: string, load: () => Promise<T>, ttlMs = this.ttlMs): Promise<T> {
    // 0: no sharing at all (every request queries; what the benchmark measures).
    if (ttlMs <= 0 || this.ttlMs <= 0) {
      this.loads += 1
      return load()
    }
    const window = Math.floor(Date.now() / Math.max(1, ttlMs))
    const hit = this.entries.get(key)
    if (hit && (hit.pending || hit.window === window)) return hit.value as Promise<T>
    if (this.entries.size >= this.maxEntries) this.sweep()
    this.loads += 1
    const value = load()
    const entry = {window, pending: true, value: value as Promise<unknown>}
    this.entries.set(key, entry)
    value.then(
      () => {
        // Fresh as of now: a load that outlasted its window serves the window it finished in.
        entry.window = Math.floor(Date.now() / Math.max(1, ttlMs))
        entry.pending = false
      },
      () => {
        if (this.entries.get(key) === entry) this.entries.delete(key)
      },
    )
    return value
  }

  /** Drops everything (after an action, so the next page shows its effect). */
  clear(): void {
    this.entries.clear()
  }

  private sweep(): void {
    for (const [key, entry] of this.entries) if (!entry.pending) this.entries.delete(key)
  }
}
