import pg from 'pg'

import type {ConnectionTarget} from '../connection.js'

/** application_name of a leader's lock session (`backfill-leader:<key>`, cut to PostgreSQL's 63 bytes). */
export const LEADER_APPLICATION_PREFIX = 'backfill-leader:'

export interface LeaderOptions {
  target: ConnectionTarget
  /** What is led, e.g. `queue-metrics:graphile_worker`; the advisory lock key is its hash. */
  key: string
  /** A check of the lock session that takes longer than this loses the lead (default 5 s). */
  queryTimeoutMs?: number
  onError?: (error: Error) => void
}

/**
 * One leader among many processes: a session-level advisory lock held on a dedicated
 * connection. The lock lasts exactly as long as that session, so a killed or partitioned
 * leader loses it as soon as PostgreSQL ends the session (TCP keepalives bound that to about
 * 30 s), and another process's next attempt takes it. Needs a real session: through PgBouncer
 * in transaction pooling the lock would stay on a server connection other clients share, so
 * callers refuse that setup (see docs/deploy/pgbouncer.md).
 */
export class AdvisoryLeader {
  private readonly options: LeaderOptions
  private client: pg.Client | undefined
  private leading = false
  private closed = false

  constructor(options: LeaderOptions) {
    this.options = options
  }

  get isLeader(): boolean {
    return this.leading
  }

  /**
   * Keeps or takes the lead: a leader checks its lock session still answers; anyone else
   * tries the lock once (never waits). Returns whether this process leads now.
   */
  async tryLead(): Promise<boolean> {
    if (this.closed) return false
    try {
      const client = this.client ?? (await this.connect())
      if (this.leading) {
        // The lock is ours as long as the session is: prove the session still answers.
        await client.query('select 1')
        return this.leading
      }
      const result = await client.query<{ok: boolean}>('select pg_try_advisory_lock(hashtextextended($1, 0)) as ok', [
        this.options.key,
      ])
      this.leading = result.rows[0]?.ok === true && this.client === client
      return this.leading
    } catch (error) {
      this.options.onError?.(error as Error)
      await this.drop()
      return false
    }
  }

  /** Gives the lead up (closing the session releases the lock). */
  async close(): Promise<void> {
    this.closed = true
    await this.drop()
  }

  private async connect(): Promise<pg.Client> {
    const config: pg.ClientConfig = {
      application_name: `${LEADER_APPLICATION_PREFIX}${this.options.key}`.slice(0, 63),
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      connectionTimeoutMillis: 10_000,
      query_timeout: this.options.queryTimeoutMs ?? 5000,
    }
    if (this.options.target.connectionString !== undefined)
      config.connectionString = this.options.target.connectionString
    const client = new pg.Client(config)
    const lost = (error?: Error): void => {
      if (this.client !== client) return
      this.client = undefined
      this.leading = false
      if (error) this.options.onError?.(error)
    }
    client.on('error', lost)
    client.on('end', () => lost())
    await client.connect()
    // Server-side keepalives: the server ends a vanished leader's session (and frees the lock).
    await client
      .query('set tcp_keepalives_idle = 10; set tcp_keepalives_interval = 5; set tcp_keepalives_count = 3')
      .catch(() => undefined)
    this.client = client
    return client
  }

  private async drop(): Promise<void> {
    const client = this.client
    this.client = undefined
    this.leading = false
    await client?.end().catch(() => undefined)
  }
}
