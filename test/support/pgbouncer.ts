import {execFileSync} from 'node:child_process'
import {chmodSync, chownSync, existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

import {parse} from 'pg-connection-string'

import {testDatabaseName, testUrl} from './db.js'
import {freePort, ServerProcess} from './fleet.js'

export const PGBOUNCER = '/usr/sbin/pgbouncer'

export type PoolMode = 'session' | 'transaction'

/** The startup parameters backfill's connections send that PgBouncer 1.18 does not know. */
export const IGNORE_STARTUP_PARAMETERS =
  'extra_float_digits,options,statement_timeout,lock_timeout,idle_in_transaction_session_timeout'

/**
 * Debian's PgBouncer on loopback in front of the test PostgreSQL (a unix socket URL from the
 * embedded harness, or TEST_DATABASE_URL's host and port): a temp config, auth_type any (the
 * server login is in the [databases] line), stopped by its PID.
 */
export class PgBouncer {
  readonly url: string
  private constructor(
    readonly mode: PoolMode,
    readonly port: number,
    private readonly dir: string,
    private readonly process: ServerProcess,
  ) {
    this.url = `postgres://backfill@127.0.0.1:${port}/${encodeURIComponent(testDatabaseName())}`
  }

  static available(): boolean {
    return existsSync(PGBOUNCER)
  }

  /**
   * ignoreStartupParameters: what the bouncer lets clients send and ignores; by default the
   * session limits backfill sends (statement_timeout, lock_timeout,
   * idle_in_transaction_session_timeout), as docs/deploy/pgbouncer.md configures it.
   */
  static async start(
    mode: PoolMode,
    options: {poolSize?: number; ignoreStartupParameters?: string} = {},
  ): Promise<PgBouncer> {
    const server = parse(testUrl())
    const host = server.host || '127.0.0.1'
    const serverPort = server.port || '5432'
    const user = server.user || 'postgres'
    const password = server.password ?? ''
    const dir = mkdtempSync(path.join(os.tmpdir(), 'backfill-pgb-'))
    // PgBouncer refuses to run as root: it switches to this user (as the embedded PostgreSQL does).
    const unprivileged = process.getuid?.() === 0 ? unprivilegedUser() : undefined
    const port = await freePort()
    const login = `host=${host} port=${serverPort} user=${user}${password ? ` password=${password}` : ''}`
    writeFileSync(
      path.join(dir, 'pgbouncer.ini'),
      `[databases]
${testDatabaseName()} = ${login} dbname=${testDatabaseName()}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = any
pool_mode = ${mode}
max_client_conn = 500
default_pool_size = ${options.poolSize ?? 40}
ignore_startup_parameters = ${options.ignoreStartupParameters ?? IGNORE_STARTUP_PARAMETERS}
logfile = ${path.join(dir, 'pgbouncer.log')}
pidfile = ${path.join(dir, 'pgbouncer.pid')}
admin_users = backfill
${unprivileged ? `user = ${unprivileged.name}\n` : ''}`,
    )
    if (unprivileged) {
      chmodSync(dir, 0o755)
      chownSync(dir, unprivileged.uid, unprivileged.gid)
    }
    const child = new ServerProcess(
      PGBOUNCER,
      [path.join(dir, 'pgbouncer.ini')],
      {PATH: process.env.PATH ?? '/usr/bin'},
      dir,
    )
    const bouncer = new PgBouncer(mode, port, dir, child)
    // Ready when it accepts connections.
    const deadline = Date.now() + 10_000
    for (;;) {
      if (await canConnect(port)) break
      if (child.child.exitCode !== null || Date.now() > deadline) {
        await bouncer.stop()
        throw new Error(`pgbouncer did not start:\n${child.output}`)
      }
      await new Promise((r) => setTimeout(r, 50))
    }
    return bouncer
  }

  async stop(): Promise<void> {
    await this.process.stop(5000)
    rmSync(this.dir, {recursive: true, force: true})
  }
}

function unprivilegedUser(): {name: string; uid: number; gid: number} | undefined {
  for (const name of ['postgres', 'nobody']) {
    try {
      const uid = Number(
        execFileSync('id', ['-u', name], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim(),
      )
      const gid = Number(
        execFileSync('id', ['-g', name], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim(),
      )
      if (uid !== 0) return {name, uid, gid}
    } catch {
      // no such user
    }
  }
  return undefined
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}
