import {Args} from '@oclif/core'

import {age, attemptsLabel, DlqCommand, entryJson, queueLabel, shortTime} from '../../cli/dlq.js'
import {prettyPayload} from '../../cli/json.js'
import type {Column} from '../../cli/output.js'
import {safeField, terminalSafe} from '../../cli/terminal-safe.js'
import {showDlqEntry, type DlqEvent, type ShowResult} from '../../lib/dlq/entries.js'
import {parseEntryId} from '../../lib/dlq/selector.js'

export default class DlqShow extends DlqCommand<typeof DlqShow> {
  static override summary = 'Show everything about one DLQ entry: payload, full error, retry history.'
  static override description = `Prints the entry's fields, its payload as pretty JSON, its full last error, and the history of the job: each earlier retry from the DLQ (when, by whom, as which job) and each time it failed again and came back. Exit 4 when the entry does not exist (it may have been retried or purged: see dlq history).`

  static override examples = ['<%= config.bin %> <%= command.id %> 42', '<%= config.bin %> <%= command.id %> 42 --json']

  static override args = {
    id: Args.string({description: 'DLQ entry id (first column of dlq list).', required: true}),
  }

  async run(): Promise<ShowResult> {
    const id = parseEntryId(this.args.id, 'ids are the first column of: backfill dlq list')
    await this.requireDlq()
    const result = await showDlqEntry(this.db(), id)
    this.render(result)
    return {...result, entry: entryJson(result.entry)} as unknown as ShowResult
  }

  private render({entry: e, caseId, history}: ShowResult): void {
    const {out} = this
    const c = out.color
    const line = (label: string, value: string | number | null | undefined): void => {
      out.result(`${c.bold(`${label}:`.padEnd(18))}${safeField(value) || '–'}`)
    }
    line('Entry', e.id)
    line('Task', e.taskIdentifier)
    line('Queue', queueLabel(e.queueName))
    line('Priority', e.priority)
    line('Job key', e.jobKey)
    line(
      'Attempts',
      attemptsLabel(e) === 'permanent'
        ? `failed permanently (no retries; max ${e.maxAttempts ?? '–'})`
        : attemptsLabel(e),
    )
    line('Failure reason', e.failureReason)
    line('Failed at', `${shortTime(e.failedAt)} (${age(e.failedAt)} ago)`)
    line('Landed', `${e.failureCount} time(s)`)
    line(
      'Retried before',
      `${e.requeuedCount} time(s)${e.lastRequeuedAt ? `, last ${shortTime(e.lastRequeuedAt)}` : ''}`,
    )
    line('Original job', e.originalJobId)
    line('Created', shortTime(e.originalCreatedAt))
    line('Run at', shortTime(e.originalRunAt))
    if (e.notes) line('Notes', e.notes)
    if (caseId !== e.id) line('First entry', caseId)
    out.result('')
    out.result(c.bold('Payload:'))
    out.result(terminalSafe(prettyPayload(e.payloadText), {multiline: true}))
    out.result('')
    out.result(c.bold('Error:'))
    out.result(
      typeof e.lastError === 'object' && e.lastError !== null
        ? JSON.stringify(e.lastError, null, 2)
        : terminalSafe(e.errorText, {multiline: true}),
    )
    out.result('')
    if (history.length === 0) {
      out.result(c.bold('History: ') + 'none (never retried from the DLQ)')
      return
    }
    out.result(c.bold('History:'))
    const columns: Column<DlqEvent>[] = [
      {header: 'AT', get: (h) => shortTime(h.at)},
      {header: 'EVENT', get: (h) => h.event},
      {header: 'ENTRY', get: (h) => h.dlqId ?? '', align: 'right'},
      {header: 'JOB', get: (h) => h.jobId ?? '', align: 'right'},
      {
        header: 'BY',
        get: (h) => (h.event === 'retried' ? [h.osUser, h.hostname].filter(Boolean).join('@') || (h.dbUser ?? '') : ''),
      },
      {header: 'REASON', get: (h) => h.reason ?? '', max: 50},
    ]
    out.table(history, columns)
  }
}
