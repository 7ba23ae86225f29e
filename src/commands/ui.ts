import {Flags} from '@oclif/core'

import {DbCommand} from '../cli/base-command.js'
import {duration} from '../cli/flags.js'
import {livenessFlags, livenessOptions} from '../cli/liveness-flags.js'
import {scrubSecrets} from '../lib/connection.js'
import {authFromEnv, hasCredentials} from '../lib/console/auth.js'
import {
  DEFAULT_UI_HOST,
  DEFAULT_UI_PORT,
  isLoopbackBind,
  openConsoleDatabase,
  startConsoleServer,
  checkBind,
} from '../lib/console/server.js'
import {requireMigrated} from '../lib/schema/inspect.js'

export default class Ui extends DbCommand<typeof Ui> {
  static override summary = 'Serve the web console and the JSON admin API (loopback only unless authentication is set).'
  static override description = `Serves the console's pages and its JSON admin API (/api/v1, OpenAPI document at /api/v1/openapi.json) on ${DEFAULT_UI_HOST}:${DEFAULT_UI_PORT}. The API answers with the same documents as the CLI under --json, and acts through the same library calls, with a preview and a confirmation for every change and an audit row naming the signed-in identity and the client's address.
Without credentials only this machine may connect. To listen on another address set BACKFILL_UI_TOKEN (a bearer token of 16+ characters, also accepted by the sign-in form) or BACKFILL_UI_USERS ("alice:secret,bob:other", basic auth); otherwise the command refuses. --read-only removes every state-changing route. Every query runs under the statement timeout (--statement-timeout, 30s by default), and read results are shared between open tabs for a moment (--cache-ttl), so many viewers cost the database what one does. Ctrl-C (SIGINT) or SIGTERM stops it cleanly.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --embedded --port 4001',
    '<%= config.bin %> <%= command.id %> --read-only',
    'BACKFILL_UI_TOKEN=$(openssl rand -hex 24) <%= config.bin %> <%= command.id %> --host 0.0.0.0',
  ]

  static override enableJsonFlag = false

  static override flags = {
    port: Flags.integer({
      summary: `Port to listen on (0 picks a free one).`,
      default: DEFAULT_UI_PORT,
      min: 0,
      max: 65_535,
    }),
    host: Flags.string({
      summary: 'Address to listen on; anything but loopback needs BACKFILL_UI_TOKEN or BACKFILL_UI_USERS.',
      default: DEFAULT_UI_HOST,
    }),
    'read-only': Flags.boolean({summary: 'Serve no state-changing route (pages show no actions).'}),
    'cache-ttl': duration({
      defaultUnit: 's',
      zero: true,
      summary: 'How long read results are shared between requests (default 2s; 0: not shared).',
    }),
    ...livenessFlags,
  }

  async run(): Promise<void> {
    const {flags} = this
    const auth = authFromEnv(process.env)
    checkBind(flags.host, auth)
    const target = this.connectionTarget()
    const db = openConsoleDatabase({
      target,
      schema: this.schema,
      statementTimeoutMs: flags['statement-timeout'],
      onError: (error) => this.out.warn(`database: ${scrubSecrets(error.message, this.secrets)}`),
    })
    this.handlesInterrupt = true
    try {
      await requireMigrated(db)
      const server = await startConsoleServer({
        database: db,
        host: flags.host,
        port: flags.port,
        readOnly: flags['read-only'],
        auth,
        cacheTtlMs: flags['cache-ttl'],
        liveness: livenessOptions(flags),
        secrets: this.secrets,
        log: (line) => this.out.info(line),
      })
      this.out.result(server.url)
      this.out.info(
        `backfill console for schema "${this.schema}" on ${target.display}${flags['read-only'] ? ' (read-only)' : ''}: ${server.url}`,
      )
      this.out.info(
        hasCredentials(auth)
          ? `sign-in required (${[auth.token ? 'BACKFILL_UI_TOKEN' : '', auth.users?.size ? `${auth.users.size} user(s) of BACKFILL_UI_USERS` : ''].filter(Boolean).join(', ')})`
          : isLoopbackBind(flags.host)
            ? 'no credentials configured: only this machine can connect'
            : '',
      )
      this.out.info('press Ctrl-C to stop')
      await new Promise<void>((resolve) => {
        if (this.interrupt.signal.aborted) resolve()
        this.interrupt.signal.addEventListener('abort', () => resolve(), {once: true})
      })
      await server.close()
      this.out.info('console stopped')
    } finally {
      await db.end()
    }
  }
}
