import {createHash} from 'node:crypto'
import {existsSync, mkdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import pg from 'pg'

import {InternalError} from '../errors.js'
import {EmbeddedPostgres, type EmbeddedStatus} from './postgres.js'

/** The database the development server's commands use (created on first start). */
export const DEV_DATABASE = 'backfill'

export interface DevServerLocation {
  /** Project folder the server belongs to. */
  projectDir: string
  /** Where data/, the log and the socket live. */
  dir: string
  socketDir: string
  /** Why dir is not under the project (root and an unreachable project path), if so. */
  relocated: string | null
}

/**
 * Where a project's development PostgreSQL lives: `<project>/.backfill/postgres` (override
 * with BACKFILL_DEV_DIR). When we are root and the server user cannot reach the project
 * (e.g. it sits under /root, mode 0700), or the socket path would be too long, the data or
 * socket move to a per-project folder under the temp directory, recorded in .backfill/.
 */
export function devServerLocation(projectDir = process.cwd(), env: NodeJS.ProcessEnv = process.env): DevServerLocation {
  const project = path.resolve(projectDir)
  const hash = createHash('sha1').update(project).digest('hex').slice(0, 10)
  let dir = path.resolve(env.BACKFILL_DEV_DIR ?? path.join(project, '.backfill', 'postgres'))
  let relocated: string | null = null
  if (isRoot() && !othersCanTraverse(path.dirname(dir))) {
    relocated = `${path.dirname(dir)} is not reachable by the unprivileged user PostgreSQL runs as`
    dir = path.join(os.tmpdir(), `backfill-dev-${hash}`)
  }
  const socketDir =
    Buffer.byteLength(path.join(dir, '.s.PGSQL.5432')) > 100 ? path.join(os.tmpdir(), `bfdev-${hash}`) : dir
  return {projectDir: project, dir, socketDir, relocated}
}

export function devServer(location = devServerLocation()): EmbeddedPostgres {
  return new EmbeddedPostgres({dir: location.dir, socketDir: location.socketDir})
}

export interface DevStart {
  started: boolean
  url: string
  status: EmbeddedStatus
  location: DevServerLocation
}

/** Starts (or reuses) the project's server and makes sure the `backfill` database exists. */
export async function startDevServer(location = devServerLocation()): Promise<DevStart> {
  const server = devServer(location)
  const {started} = await server.start()
  await ensureDatabase(server)
  recordLocation(location)
  return {started, url: server.urlForDatabase(DEV_DATABASE), status: await server.status(), location}
}

/** The connection string for `--embedded`: starts the server when needed. */
export async function embeddedUrl(projectDir?: string): Promise<string> {
  return (await startDevServer(devServerLocation(projectDir))).url
}

async function ensureDatabase(server: EmbeddedPostgres): Promise<void> {
  const client = new pg.Client({connectionString: server.url})
  await client.connect()
  try {
    const {rows} = await client.query('select 1 from pg_database where datname = $1', [DEV_DATABASE])
    if (rows.length === 0) {
      await client.query(`create database ${DEV_DATABASE}`).catch((error: {code?: string}) => {
        // 42P04, or 23505 when another process creates it at the same moment.
        if (error.code !== '42P04' && error.code !== '23505')
          throw new InternalError(`cannot create the development database: ${String(error)}`, {cause: error})
      })
    }
  } finally {
    await client.end()
  }
}

/** Leaves a note in the project when the data lives elsewhere, so people can find it. */
function recordLocation(location: DevServerLocation): void {
  const folder = path.join(location.projectDir, '.backfill')
  try {
    mkdirSync(folder, {recursive: true})
    writeFileSync(
      path.join(folder, 'postgres.json'),
      `${JSON.stringify({dataDir: path.join(location.dir, 'data'), socketDir: location.socketDir, relocated: location.relocated}, null, 2)}\n`,
    )
  } catch {
    // read-only project folder: the location is still derivable from the project path
  }
}

export function readRecordedLocation(projectDir: string): {dataDir: string; socketDir: string} | undefined {
  const file = path.join(projectDir, '.backfill', 'postgres.json')
  if (!existsSync(file)) return undefined
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as {dataDir: string; socketDir: string}
  } catch {
    return undefined
  }
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0
}

function othersCanTraverse(dir: string): boolean {
  let current = path.resolve(dir)
  for (;;) {
    if (existsSync(current) && (statSync(current).mode & 0o001) === 0) return false
    const parent = path.dirname(current)
    if (parent === current) return true
    current = parent
  }
}
