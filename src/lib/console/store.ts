import {randomBytes} from 'node:crypto'

/** What an idempotent request answered: replayed as is to a repeat of the same request. */
export interface StoredResponse {
  status: number
  body: unknown
  /** True when this answer is a replay of an earlier identical request's. */
  replay?: boolean
}

interface Slot<P> {
  owner: string
  /**
   * A preview's action (a token confirms only the action it previewed: a retry preview is no
   * purge), or an idempotency key's request (the same key for another request is refused).
   */
  scope: string
  kind: 'preview' | 'key'
  expires: number
  plan: P
  /** Set by the first confirmation; every later one gets the same answer (a double click acts once). */
  result?: Promise<StoredResponse>
}

/**
 * Previews waiting for confirmation, and the answers of confirmed ones. A preview's token is
 * the idempotency key of its confirmation: the first confirmation acts, repeats (a double
 * submit, a retried request) wait for and replay that answer. Entries expire after ttlMs.
 */
export class PendingStore<P> {
  private readonly slots = new Map<string, Slot<P>>()

  constructor(
    readonly ttlMs: number,
    private readonly maxEntries = 1000,
  ) {}

  /** Keeps a plan of an action (scope) for its owner; the token to confirm it with. */
  put(owner: string, scope: string, plan: P): {token: string; expiresAt: Date} {
    this.sweep()
    const token = randomBytes(18).toString('base64url')
    const expires = Date.now() + this.ttlMs
    this.slots.set(token, {owner, scope, kind: 'preview', expires, plan})
    return {token, expiresAt: new Date(expires)}
  }

  /**
   * Runs act(plan) once for a token (owner and action checked); a repeat replays the first answer.
   * undefined when the token is unknown, expired, another identity's or another action's.
   */
  confirm(
    owner: string,
    scope: string,
    token: string,
    act: (plan: P) => Promise<StoredResponse>,
  ): {replay: boolean; result: Promise<StoredResponse>} | undefined {
    const slot = this.slots.get(token)
    if (
      !slot ||
      slot.kind !== 'preview' ||
      slot.owner !== owner ||
      slot.scope !== scope ||
      (slot.expires < Date.now() && !slot.result)
    )
      return undefined
    if (slot.result) return {replay: true, result: slot.result}
    slot.result = act(slot.plan)
    // The answer stays for replays for another ttl.
    slot.expires = Date.now() + this.ttlMs
    return {replay: false, result: slot.result}
  }

  /**
   * Idempotency for requests without a preview (Idempotency-Key header): same key and same
   * request (fingerprint), same answer. undefined when the key was used for another request.
   */
  once(
    owner: string,
    key: string,
    fingerprint: string,
    act: () => Promise<StoredResponse>,
  ): {replay: boolean; result: Promise<StoredResponse>} | undefined {
    const id = `key:${owner}:${key}`
    const slot = this.slots.get(id)
    if (slot?.result && slot.expires >= Date.now())
      return slot.scope === fingerprint ? {replay: true, result: slot.result} : undefined
    this.sweep()
    const result = act()
    this.slots.set(id, {
      owner,
      scope: fingerprint,
      kind: 'key',
      expires: Date.now() + this.ttlMs,
      plan: undefined as P,
      result,
    })
    return {replay: false, result}
  }

  get size(): number {
    return this.slots.size
  }

  private sweep(): void {
    const now = Date.now()
    for (const [key, slot] of this.slots) if (slot.expires < now) this.slots.delete(key)
    while (this.slots.size >= this.maxEntries) {
      const first = this.slots.keys().next().value
      if (first === undefined) break
      this.slots.delete(first)
    }
  }
}
