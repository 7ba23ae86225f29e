import {Command, Flags, ux, type Interfaces} from '@oclif/core'

import {resolveConnection, scrubSecrets, type ConnectionTarget} from '../lib/connection.js'
import {
  Database,
  DEFAULT_STATEMENT_TIMEOUT_MS,
  opsSessionLimits,
  WORKER_SESSION_LIMITS,
  type SessionLimits,
} from '../lib/db.js'
import {EXIT_CODES, InterruptedError, UsageError, type BackfillError} from '../lib/errors.js'
import {parseSchemaName, DEFAULT_SCHEMA, type SchemaName} from '../lib/identifiers.js'
import {preparedStatementsFromEnv} from '../lib/pooler.js'
import {confirmDestructive, type ConfirmOptions} from './confirm.js'
import {errorEnvelope, toBackfillError} from './errors.js'
import {duration, durationDefault} from './flags.js'
import {jsonDocument, MAX_COLOURED_JSON} from './json.js'
import {loadStyles, Output} from './output.js'
import {interceptProcessWarnings} from './process-warnings.js'
import {terminalSafe} from './terminal-safe.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<
  (typeof BaseCommand)['baseFlags'] & T['flags']
>
export type DbFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof DbCommand)['baseFlags'] & T['flags']>
export type Args<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/**
 * Every command: --json, --quiet, --no-color; errors rendered once (human text on stderr,
 * or the JSON error envelope on stdout) with the exit code of the error's class.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true
  static override baseFlags = {
    quiet: Flags.boolean({
      char: 'q',
      helpGroup: 'GLOBAL',
      summary: 'Hide progress and informational messages (stderr).',
    }),
    'no-color': Flags.boolean({
      helpGroup: 'GLOBAL',
      summary: 'Disable colour (also off when NO_COLOR is set or output is not a terminal).',
    }),
  }

  protected flags!: BaseFlags<T>
  protected args!: Args<T>
  protected out!: Output
  /** Fired by the first SIGINT/SIGTERM for commands that stop gracefully. */
  protected readonly interrupt = new AbortController()
  /** Commands that finish their current step on SIGINT set this; others exit 130 at once. */
  protected handlesInterrupt = false
  /** Secrets to scrub from anything printed (filled by DbCommand). */
  protected secrets: readonly string[] = []
  private signalHandler: ((signal: NodeJS.Signals) => void) | undefined

  override async init(): Promise<void> {
    await super.init()
    // Output exists before parsing so that parse errors render through it too.
    const styles = await loadStyles(this.argv.includes('--no-color'))
    this.out = new Output({json: this.jsonEnabled(), quiet: false}, styles)
    const jsonValue = jsonWithValue(this.argv)
    if (jsonValue !== undefined)
      throw new UsageError(`--json takes no value (got ${JSON.stringify(jsonValue)}): pass --json alone`, {
        code: 'E_USAGE',
        suggestions: [`backfill ${(this.id ?? '').replaceAll(':', ' ')} --json`],
      })
    interceptProcessWarnings((text) => this.out.warn(text))
    const {args, flags} = await this.parse({
      args: this.ctor.args,
      baseFlags: (this.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      flags: this.ctor.flags,
      strict: this.ctor.strict,
    })
    this.flags = flags as BaseFlags<T>
    this.args = args as Args<T>
    this.out = new Output({json: this.jsonEnabled(), quiet: Boolean(flags.quiet)}, styles)
    this.installSignalHandlers()
  }

  /** --json, and a mistaken --json=VALUE too: its usage error is then the JSON envelope the caller asked for. */
  /** confirmDestructive with this command's --json and colour (the prompt must follow both). */
  protected confirm(options: Omit<ConfirmOptions, 'json' | 'color'>): Promise<void> {
    return confirmDestructive({...options, json: this.jsonEnabled(), color: this.out.errColor.level > 0})
  }

  override jsonEnabled(): boolean {
    return super.jsonEnabled() || jsonWithValue(this.argv) !== undefined
  }

  private installSignalHandlers(): void {
    let count = 0
    this.signalHandler = (signal) => {
      count += 1
      if (this.handlesInterrupt && count === 1) {
        this.out.info(`received ${signal}: finishing the current step (press Ctrl-C again to stop now)`)
        this.interrupt.abort(new Error(signal))
        return
      }
      this.onRepeatedInterrupt(signal)
    }
    process.on('SIGINT', this.signalHandler)
    process.on('SIGTERM', this.signalHandler)
  }

  /** A second signal (or the first, for commands that do not handle it): exit 130 now. */
  protected onRepeatedInterrupt(signal: NodeJS.Signals): void {
    // An open transaction is rolled back by the server when the connection goes away.
    const error = new InterruptedError(`interrupted by ${signal}`)
    if (this.jsonEnabled()) process.stdout.write(`${JSON.stringify(errorEnvelope(error, this.secrets), null, 2)}\n`)
    else process.stderr.write(`\nError: ${error.message}\n`)
    process.exit(EXIT_CODES.interrupted)
  }

  /**
   * The --json document. oclif's colouriser recurses per string and re-scans the text per token
   * (a 10 MB payload overflows the stack after the command committed), so large or piped
   * documents print plain; RawJson payloads are written exactly as stored.
   */
  override logJson(json: unknown): void {
    const text = jsonDocument(json)
    const coloured = this.out.color.level > 0 && text.length <= MAX_COLOURED_JSON
    process.stdout.write(
      `${coloured ? ux.colorizeJson(text, {pretty: false, theme: this.config.theme?.json}) : text}\n`,
    )
  }

  protected override async catch(raw: Error & {exitCode?: number}): Promise<void> {
    const error = toBackfillError(raw)
    process.exitCode = error.exitCode
    if (this.jsonEnabled()) {
      process.stdout.write(`${JSON.stringify(errorEnvelope(error, this.secrets), null, 2)}\n`)
    } else {
      this.renderError(error)
    }
    if (process.env.DEBUG?.includes('backfill'))
      process.stderr.write(`${scrubSecrets(String(raw?.stack ?? raw), this.secrets)}\n`)
  }

  private renderError(error: BackfillError): void {
    const color = this.out?.errColor
    const label = color ? color.red.bold('Error:') : 'Error:'
    // Messages quote database errors and input, which may carry control characters.
    process.stderr.write(`${label} ${terminalSafe(scrubSecrets(error.message, this.secrets))}\n`)
    for (const suggestion of error.suggestions) {
      process.stderr.write(
        `  ${color ? color.dim('→') : '→'} ${terminalSafe(scrubSecrets(suggestion, this.secrets))}\n`,
      )
    }
  }

  protected override async finally(error: Error | undefined): Promise<unknown> {
    if (this.signalHandler) {
      process.off('SIGINT', this.signalHandler)
      process.off('SIGTERM', this.signalHandler)
    }
    return super.finally(error)
  }
}

/**
 * Commands that talk to a database: --database-url (DATABASE_URL, else PG* variables),
 * --schema (GRAPHILE_WORKER_SCHEMA), a validated schema name and one pool per run.
 */
export abstract class DbCommand<T extends typeof Command> extends BaseCommand<T> {
  static override baseFlags = {
    ...BaseCommand.baseFlags,
    'database-url': Flags.string({
      env: 'DATABASE_URL',
      helpGroup: 'DATABASE',
      summary: 'PostgreSQL connection URL (default: DATABASE_URL, else the libpq PG* variables).',
    }),
    embedded: Flags.boolean({
      env: 'BACKFILL_EMBEDDED',
      helpGroup: 'DATABASE',
      summary: "Use the project's embedded development PostgreSQL, starting it if needed (see `backfill dev`).",
    }),
    schema: Flags.string({
      env: 'GRAPHILE_WORKER_SCHEMA',
      default: DEFAULT_SCHEMA,
      helpGroup: 'DATABASE',
      summary: 'graphile-worker schema name.',
    }),
    'statement-timeout': duration({
      env: 'BACKFILL_STATEMENT_TIMEOUT',
      defaultUnit: 's',
      minMs: 100,
      zero: true,
      ...durationDefault(DEFAULT_STATEMENT_TIMEOUT_MS),
      helpGroup: 'DATABASE',
      summary:
        'Cancel a statement running longer (exit 7). Lock waits are limited to 5s (at most this) and idle transactions to 60s; 0 turns the limits off.',
    }),
  }

  /**
   * The session limits of this command's connections: operations are bounded (see
   * --statement-timeout); the worker only limits idle transactions (its jobs may run long);
   * schema changes (migrate, init-dlq) and bench have none. Commands without limits leave the
   * flag out of their baseFlags (withoutSessionLimitFlag).
   */
  static sessionLimits: 'ops' | 'worker' | 'none' = 'ops'

  declare protected flags: DbFlags<T>
  protected schema!: SchemaName
  private target: ConnectionTarget | undefined
  private database: Database | undefined

  private embeddedUrl: string | undefined

  override async init(): Promise<void> {
    await super.init()
    this.schema = parseSchemaName(this.flags.schema)
    const explicitUrl = this.argv.some((a) => a === '--database-url' || a.startsWith('--database-url='))
    const explicitEmbedded = this.argv.includes('--embedded')
    if (explicitUrl && explicitEmbedded)
      throw new UsageError('--embedded and --database-url are alternatives; pass one of them', {code: 'E_USAGE'})
    // Flags beat the environment: an explicit --database-url wins over BACKFILL_EMBEDDED=1.
    if (this.flags.embedded && !explicitUrl) {
      const {embeddedUrl} = await import('../lib/embedded/dev.js')
      this.embeddedUrl = await embeddedUrl()
    }
  }

  /** Where this command connects; resolves (and validates) the configuration once. */
  protected connectionTarget(): ConnectionTarget {
    if (!this.target) {
      // An explicit --embedded beats a DATABASE_URL inherited from the environment.
      this.target = this.embeddedUrl
        ? resolveConnection({embeddedUrl: this.embeddedUrl, env: process.env})
        : resolveConnection({databaseUrl: this.flags['database-url'], env: process.env})
      this.secrets = this.target.secrets
    }
    return this.target
  }

  /** The command's database handle (pool created on first use, closed in finally). */
  protected db(options: {max?: number; preparedStatements?: boolean} = {}): Database {
    if (!this.database) {
      this.database = Database.connect({
        target: this.connectionTarget(),
        schema: this.schema,
        applicationName: `backfill ${this.id ?? ''}`.trim(),
        max: options.max ?? 4,
        limits: this.sessionLimits(),
        labels: {
          connection: '--database-url / DATABASE_URL',
          statementTimeout: '--statement-timeout',
          schema: '--schema / GRAPHILE_WORKER_SCHEMA',
        },
        // Off through PgBouncer in transaction mode (BACKFILL_PREPARED_STATEMENTS=false).
        preparedStatements: (options.preparedStatements ?? true) && preparedStatementsFromEnv(),
      })
    }
    return this.database
  }

  private sessionLimits(): SessionLimits {
    const kind = (this.ctor as unknown as typeof DbCommand).sessionLimits
    if (kind === 'worker') return WORKER_SESSION_LIMITS
    if (kind === 'none') return {}
    return opsSessionLimits(this.flags['statement-timeout'])
  }

  protected override async finally(error: Error | undefined): Promise<unknown> {
    await this.database?.end().catch(() => undefined)
    return super.finally(error)
  }
}

/**
 * DbCommand's base flags without --statement-timeout, for commands whose sessions it does not
 * limit (typed as the full set: oclif's static side must match; such commands never read it).
 */
export function withoutSessionLimitFlag(): (typeof DbCommand)['baseFlags'] {
  const {'statement-timeout': _omitted, ...rest} = DbCommand.baseFlags
  return rest as (typeof DbCommand)['baseFlags']
}

/** The token `--json=VALUE` (before any `--`), which oclif would reject as text; undefined when absent. */
export function jsonWithValue(argv: readonly string[]): string | undefined {
  const end = argv.indexOf('--')
  return (end === -1 ? argv : argv.slice(0, end)).find((a) => a.startsWith('--json='))
}
