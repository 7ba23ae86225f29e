import {AbortedError, InterruptedError, UsageError} from '../lib/errors.js'

export interface ConfirmOptions {
  /** --yes was given. */
  yes: boolean
  /** --json was given (a prompt would corrupt the document). */
  json: boolean
  /** The question, e.g. "Retry 412 DLQ entries?" */
  message: string
  /** What is refused without a TTY, e.g. "retry DLQ entries". */
  action: string
  /** Colour on stderr (off with --no-color or NO_COLOR): the prompt follows it. */
  color: boolean
}

const plain = (text: string): string => text
/** The prompt's default theme without its colours (inquirer only knows NO_COLOR, not --no-color). */
const PLAIN_THEME = {
  prefix: {idle: '?', done: '✔'},
  style: {
    answer: plain,
    message: plain,
    error: (text: string) => `> ${text}`,
    defaultAnswer: (text: string) => `(${text})`,
    help: plain,
    highlight: plain,
    key: (text: string) => `<${text}>`,
  },
}

/**
 * Gate for destructive commands: --yes proceeds; otherwise ask on a terminal, and refuse
 * (exit 2) when there is none, since a pipe or CI cannot answer truthfully.
 */
export async function confirmDestructive(options: ConfirmOptions): Promise<void> {
  if (options.yes) return
  if (options.json || !process.stdin.isTTY || !process.stderr.isTTY) {
    throw new UsageError(
      `refusing to ${options.action} without --yes ${options.json ? 'under --json (a prompt would corrupt the document)' : 'in a non-interactive session'}`,
      {
        code: 'E_CONFIRMATION_REQUIRED',
        suggestions: ['add --yes to confirm, or --dry-run to see what would change'],
      },
    )
  }
  const {confirm} = await import('@inquirer/prompts')
  let answer: boolean
  try {
    answer = await confirm(
      {message: options.message, default: false, ...(options.color ? {} : {theme: PLAIN_THEME})},
      {output: process.stderr},
    )
  } catch (error) {
    if ((error as Error)?.name === 'ExitPromptError')
      throw new InterruptedError('interrupted at the confirmation prompt')
    throw error
  }
  if (!answer) throw new AbortedError(`aborted: nothing was changed`)
}
