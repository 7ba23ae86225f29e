import os from 'node:os'

import pg from 'pg'

import type {Database} from '../db.js'
import {
  heartbeatWorker,
  heartbeatWorkerWithFacts,
  registerWorker,
  rustHeartbeatAvailable,
  rustWorkerDeregister,
  rustWorkerHeartbeat,
  stopWorker,
} from '../sql/worker.js'

/** application_name prefix of a worker pool's presence session (`backfill-worker:<pool id>`). */
export const PRESENCE_APPLICATION_PREFIX = 'backfill-worker:'

export interface PresenceOptions {
  poolId: string
  heartbeatIntervalMs: number
  version: string
  metadata: Record<string, unknown>
  /** Facts merged into the registry row's metadata at every heartbeat (status shows them). */
  liveFacts?: () => Record<string, unknown>
  onError: (error: Error) => void
}

/**
 * Makes one graphile pool id provably alive: a registry row in backfill_workers refreshed by
 * heartbeats, and a dedicated session named after the pool id that lasts exactly as long
 * as the process (its disappearance from pg_stat_activity proves the worker is gone).
 * TCP keepalives on that session make a dead host's session vanish within ~30 s.
 */
export class WorkerPresence {
  private readonly db: Database
  private readonly options: PresenceOptions
  private client: pg.Client | undefined
  private timer: NodeJS.Timeout | undefined
  private reconnectTimer: NodeJS.Timeout | undefined
  private beating: Promise<void> | undefined
  private stopped = false
  /** When the registry last accepted a heartbeat from this pool (ms since epoch). */
  private lastHeartbeatOk = Date.now()
  /** The schema also has the Rust port's worker registry (its migration 20). */
  private rustRegistry = false

  constructor(db: Database, options: PresenceOptions) {
    this.db = db
    this.options = options
  }

  async start(): Promise<void> {
    await this.connect()
    this.rustRegistry = await this.rustRegistryExists()
    await this.register()
    this.timer = setInterval(() => {
      this.beating ??= this.beat()
        .then(
          () => undefined,
          (error: Error) => this.options.onError(error),
        )
        .finally(() => (this.beating = undefined))
    }, this.options.heartbeatIntervalMs)
    this.timer.unref()
  }

  private async beat(): Promise<void> {
    const facts = this.options.liveFacts?.()
    const signature = this.rustSignature()
    const {rust_registry: rustRegistry} = facts
      ? await this.db.one(heartbeatWorkerWithFacts, [this.options.poolId, JSON.stringify(facts), signature])
      : await this.db.one(heartbeatWorker, [this.options.poolId, signature])
    if (this.rustRegistry) await this.db.exec(rustWorkerHeartbeat, [this.options.poolId, null])
    else if (rustRegistry) {
      // A Rust service migrated the schema to its 20 after this worker started: from now on
      // its sweeper takes lock holders without a row for orphans, so register at once.
      await this.rustRegister()
      this.rustRegistry = true
    }
    this.lastHeartbeatOk = Date.now()
  }

  /** The Rust port's worker registry (its migration 20) is in the schema. */
  private async rustRegistryExists(): Promise<boolean> {
    return (await this.db.one(rustHeartbeatAvailable, [this.rustSignature()])).available
  }

  private rustSignature(): string {
    return `${this.db.quotedSchema}.worker_heartbeat(text,json)`
  }

  private async rustRegister(): Promise<void> {
    await this.db.exec(rustWorkerHeartbeat, [
      this.options.poolId,
      JSON.stringify({pid: process.pid, hostname: os.hostname(), runtime: 'backfill'}),
    ])
  }

  /** The presence session is open (it is reopened after the server drops it). */
  get connected(): boolean {
    return this.client !== undefined
  }

  /** How long the registry has not heard from this pool (others judge liveness by it). */
  silentForMs(now = Date.now()): number {
    return now - this.lastHeartbeatOk
  }

  private async register(): Promise<void> {
    await this.db.exec(registerWorker, [
      this.options.poolId,
      os.hostname(),
      process.pid,
      this.options.version,
      JSON.stringify({...this.options.metadata, heartbeatIntervalMs: this.options.heartbeatIntervalMs}),
    ])
    if (this.rustRegistry) await this.rustRegister()
    this.lastHeartbeatOk = Date.now()
  }

  /** Opens the named session; if the server drops it (restart, failover), opens it again. */
  private async connect(): Promise<void> {
    const config: pg.ClientConfig = {
      application_name: `${PRESENCE_APPLICATION_PREFIX}${this.options.poolId}`.slice(0, 63),
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      connectionTimeoutMillis: 10_000,
    }
    if (this.db.target.connectionString !== undefined) config.connectionString = this.db.target.connectionString
    const client = new pg.Client(config)
    const lost = (error?: Error): void => {
      if (this.client !== client) return
      this.client = undefined
      if (error) this.options.onError(error)
      if (!this.stopped) this.scheduleReconnect()
    }
    client.on('error', lost)
    client.on('end', () => lost())
    await client.connect()
    this.client = client
    // Server-side keepalives: the backend notices a vanished host and ends the session.
    await client
      .query('set tcp_keepalives_idle = 10; set tcp_keepalives_interval = 5; set tcp_keepalives_count = 3')
      .catch(() => undefined)
  }

  private scheduleReconnect(delayMs = 1000): void {
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined
      if (this.stopped) return
      this.connect()
        .then(() => this.register())
        .catch((error: Error) => {
          this.options.onError(error)
          this.scheduleReconnect(Math.min(delayMs * 2, 30_000))
        })
    }, delayMs)
    this.reconnectTimer.unref()
  }

  /**
   * Marks the worker stopped (clean shutdown) and closes the presence session. Bounded: when
   * the database does not answer (a partition, a hung heartbeat) it gives up after 5 s and
   * just closes the session; the registry then shows the worker dead by its heartbeat.
   */
  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer)
    const deregister = (async () => {
      await this.beating
      await this.db.exec(stopWorker, [this.options.poolId])
      if (this.rustRegistry) await this.db.exec(rustWorkerDeregister, [this.options.poolId])
    })().catch((error: Error) => this.options.onError(error))
    let timer: NodeJS.Timeout | undefined
    await Promise.race([deregister, new Promise((resolve) => (timer = setTimeout(resolve, 5000)))])
    clearTimeout(timer)
    const client = this.client
    this.client = undefined
    await client?.end().catch(() => undefined)
  }
}
