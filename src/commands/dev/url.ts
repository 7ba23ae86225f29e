import {BaseCommand} from '../../cli/base-command.js'
import {startDevServer} from '../../lib/embedded/dev.js'

export default class DevUrl extends BaseCommand<typeof DevUrl> {
  static override summary = "Print the connection URL of the project's development database (starting it if needed)."
  static override description =
    'Prints the connection string of the project\'s development database (a unix-socket URL, trust authentication, database "backfill"), starting the server first if it is not running.'

  static override examples = [
    'export DATABASE_URL=$(<%= config.bin %> <%= command.id %>)',
    'psql "$(<%= config.bin %> <%= command.id %>)"',
  ]

  async run(): Promise<{url: string; started: boolean}> {
    const {url, started} = await startDevServer()
    if (started) this.out.info('started the development database')
    this.out.result(url)
    return {url, started}
  }
}
