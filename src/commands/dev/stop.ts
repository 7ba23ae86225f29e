import {BaseCommand} from '../../cli/base-command.js'
import {devServer} from '../../lib/embedded/dev.js'

export default class DevStop extends BaseCommand<typeof DevStop> {
  static override summary = "Stop the project's embedded development PostgreSQL (data is kept)."
  static override examples = ['<%= config.bin %> <%= command.id %>']

  async run(): Promise<{stopped: boolean}> {
    const stopped = await devServer().stop()
    this.out.result(stopped ? 'stopped' : 'was not running')
    return {stopped}
  }
}
