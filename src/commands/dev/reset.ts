import {Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {devServer, devServerLocation} from '../../lib/embedded/dev.js'

export default class DevReset extends BaseCommand<typeof DevReset> {
  static override summary =
    'Stop the development PostgreSQL and delete its data (every job, schema and DLQ entry in it).'
  static override description =
    "Stops the project's development PostgreSQL and deletes its data directory: every schema, job and DLQ entry in it. Asks for confirmation on a terminal; needs --yes otherwise."

  static override examples = [
    '<%= config.bin %> <%= command.id %> --yes',
    '<%= config.bin %> <%= command.id %> --dry-run',
  ]
  static override flags = {
    yes: Flags.boolean({char: 'y', summary: 'Do not ask for confirmation.'}),
    'dry-run': Flags.boolean({summary: 'Show what would be deleted; change nothing.'}),
  }

  async run(): Promise<{deleted: string | null; dryRun: boolean}> {
    const location = devServerLocation()
    if (this.flags['dry-run']) {
      this.out.result(`would stop the server and delete ${location.dir}`)
      return {deleted: location.dir, dryRun: true}
    }
    await this.confirm({
      yes: this.flags.yes,
      message: `Delete the development database in ${location.dir}?`,
      action: 'delete the development database',
    })
    await devServer(location).destroy()
    this.out.result(`deleted ${location.dir}`)
    return {deleted: location.dir, dryRun: false}
  }
}
