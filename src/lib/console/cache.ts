/**
 * A short shared cache for the console's read queries: concurrent requests for the same key
 * share one database round trip (single flight), and its result serves everyone for ttlMs.
 * So twenty open overview tabs cost the database what one does. Failures are not cached.
 */
export class SharedCache {
  private readonly entries = new Map<string, {expires: number; value: Promise<unknown>}>()
  /** Loads that reached the database (for tests and the bench). */
  loads = 0

  constructor(
    readonly ttlMs: number,
    private readonly maxEntries = 500,
  ) {}

  get<T>(key: string, load: () => Promise<T>, ttlMs = this.ttlMs): Promise<T> {
    const now = Date.now()
    const hit = this.entries.get(key)
    if (hit && hit.expires > now) return hit.value as Promise<T>
    if (this.entries.size >= this.maxEntries) this.sweep(now)
    this.loads += 1
    const value = load()
    // Held while in flight (single flight), then for ttl after it settles.
    const entry = {expires: Number.POSITIVE_INFINITY, value: value as Promise<unknown>}
    this.entries.set(key, entry)
    value.then(
      () => {
        entry.expires = Date.now() + ttlMs
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

  private sweep(now: number): void {
    for (const [key, entry] of this.entries) if (entry.expires <= now) this.entries.delete(key)
    while (this.entries.size >= this.maxEntries) {
      const first = this.entries.keys().next().value
      if (first === undefined) break
      this.entries.delete(first)
    }
  }
}
