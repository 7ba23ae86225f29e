import {Flags} from '@oclif/core'

import {DlqCommand, ENTRY_COLUMNS, entryJson, idsArg, schemaFlag, selectorFlags} from '../../cli/dlq.js'
import {DEFAULT_PAGE_SIZE, listDlq, type ListResult} from '../../lib/dlq/entries.js'

export default class DlqList extends DlqCommand<typeof DlqList> {
  static override summary = 'List dead-lettered jobs, newest first.'
  static override description = `Shows one page of the DLQ (newest first) as a table, or full rows with --json. Pages are keyset pages: pass the printed --cursor to get the next one; every page is as fast as the first, however large the DLQ. Selectors narrow the list. When exhausted jobs are still sitting in the jobs table (workers without a DLQ), a warning points to dlq capture.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --task send_email --since 2h',
    '<%= config.bin %> <%= command.id %> --group 3f9a1c0b7d2e --limit 20 --json',
    '<%= config.bin %> <%= command.id %> --cursor MjAyNC0wNS0wMVQxMDowMDowMC4wMDAwMDBafDQy',
  ]

  static override strict = false
  static override args = idsArg
  static override flags = {
    ...selectorFlags,
    limit: Flags.integer({summary: `Entries per page (default ${DEFAULT_PAGE_SIZE}, at most 10000).`, min: 1}),
    cursor: Flags.string({summary: 'Continue after the previous page (its nextCursor).'}),
  }

  async run(): Promise<ListResult> {
    await this.requireDlq()
    const selector = await this.selector(this.flags)
    const result = await listDlq(this.db(), {selector, cursor: this.flags.cursor})
    this.out.table(
      result.entries,
      ENTRY_COLUMNS,
      this.flags.cursor ? 'no more entries' : 'the DLQ has no entries matching the selection',
    )
    if (result.nextCursor)
      this.out.info(
        `more: backfill dlq list${schemaFlag(this.schema)} --cursor ${result.nextCursor} (with the same selectors)`,
      )
    if (result.uncaptured && result.uncaptured.total > 0) {
      const tasks = result.uncaptured.groups
        .slice(0, 3)
        .map((g) => `${g.taskIdentifier} ${g.count}`)
        .join(', ')
      this.out.warn(
        `${result.uncaptured.total} exhausted job(s) are still in the jobs table, not in the DLQ (${tasks}${result.uncaptured.groups.length > 3 ? ', …' : ''}): move them with backfill dlq capture${schemaFlag(this.schema)}`,
      )
    }
    return {...result, entries: result.entries.map(entryJson)} as unknown as ListResult
  }
}
