import {BaseCommand} from '../../cli/base-command.js'
import {devServer} from '../../lib/embedded/dev.js'

export default class DevStop extends BaseCommand<typeof DevStop> {
  static override summary = "Stop the project's embedded development PostgreSQL (data is kept)."
  static override description =
    "Stops the project's embedded development PostgreSQL with a fast shutdown (open transactions are rolled back). Its data stays in .backfill/postgres; backfill dev start (or any command with --embedded) starts it again."

  static override examples = ['<%= config.bin %> <%= command.id %>']

  async run(): Promise<{stopped: boolean}> {
    const stopped = await devServer().stop()
    this.out.result(stopped ? 'stopped' : 'was not running')
    return {stopped}
  }
}
