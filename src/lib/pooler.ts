import pg from 'pg'

import type {ConnectionTarget} from './connection.js'
import {ConfigError} from './errors.js'
import {mapPgError} from './pg-errors.js'

/** Where the supported pooler setups are documented (named in errors). */
export const POOLER_DOCS = 'docs/deploy/pgbouncer.md'

/**
 * Whether connections to the target are pooled per transaction (PgBouncer pool_mode =
 * transaction, or any pooler that hands each transaction another server connection). Such a
 * connection keeps no session: LISTEN, session advisory locks and a named presence session
 * silently stop meaning anything.
 *
 * The probe: client A asks for its backend pid; client B opens a transaction and asks for
 * its own. A pooler that reuses A's just-released server connection for B (PgBouncer does:
 * LIFO) must answer A's next statement from another server connection, or make it wait. A
 * session of its own (direct, or session pooling) always answers with the same pid at once.
 */
export async function usesTransactionPooling(
  target: ConnectionTarget,
  options: {timeoutMs?: number} = {},
): Promise<boolean> {
  const timeoutMs = options.timeoutMs ?? 10_000
  const config: pg.ClientConfig = {application_name: 'backfill session probe', connectionTimeoutMillis: 10_000}
  if (target.connectionString !== undefined) config.connectionString = target.connectionString
  const a = new pg.Client(config)
  const b = new pg.Client(config)
  a.on('error', () => undefined)
  b.on('error', () => undefined)
  try {
    await a.connect()
    await b.connect()
    const pid = async (client: pg.Client): Promise<number> =>
      (await client.query<{pid: number}>('select pg_backend_pid() as pid')).rows[0]!.pid
    for (let round = 0; round < 3; round++) {
      const first = await pid(a)
      await b.query('begin')
      await pid(b)
      let timer: NodeJS.Timeout | undefined
      const next = await Promise.race([
        pid(a),
        new Promise<'waiting'>((resolve) => (timer = setTimeout(() => resolve('waiting'), timeoutMs))),
      ]).finally(() => clearTimeout(timer))
      await b.query('rollback')
      if (next === 'waiting' || next !== first) return true
    }
    return false
  } catch (error) {
    throw mapPgError(error, {target})
  } finally {
    await Promise.allSettled([a.end(), b.end()])
  }
}

/** Refuses to go on when the connection is pooled per transaction; `what` needs a session. */
export async function requireSession(target: ConnectionTarget, what: string, why: string): Promise<void> {
  if (!(await usesTransactionPooling(target))) return
  throw new ConfigError(
    `${what} needs a database session (${why}), but ${target.display} is pooled per transaction (PgBouncer pool_mode = transaction?)`,
    {
      code: 'E_SESSION_REQUIRED',
      suggestions: [
        'connect it directly to PostgreSQL, or through a PgBouncer pool in session mode',
        `transaction pooling is for enqueue and the ops commands (with BACKFILL_PREPARED_STATEMENTS=false); see ${POOLER_DOCS}`,
      ],
    },
  )
}

/**
 * Named prepared statements, unless BACKFILL_PREPARED_STATEMENTS says false/0/off/no (for
 * PgBouncer in transaction mode before 1.21, whose server connections mix every client's).
 */
export function preparedStatementsFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env.BACKFILL_PREPARED_STATEMENTS?.trim().toLowerCase()
  return !(value === 'false' || value === '0' || value === 'off' || value === 'no')
}
