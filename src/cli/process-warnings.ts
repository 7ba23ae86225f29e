/**
 * node-postgres' connection-string parser announces, once per process and in nine lines through
 * process.emitWarning, that sslmode=prefer/require/verify-ca are verified like verify-full (a
 * change planned for pg 9). Printed by Node ahead of an operator's one-line error it buries the
 * reason, and Node's warning printer then adds a second notice when NO_COLOR and FORCE_COLOR are
 * both set. The fact that matters to the operator is said in one line instead; any other
 * warning passes through untouched.
 */
const PG_SSLMODE_NOTICE = /^SECURITY WARNING: The SSL modes 'prefer', 'require', and 'verify-ca' are treated as aliases/

const SSLMODE_WARNING =
  "sslmode=prefer, require and verify-ca check the server's certificate and host name here, as verify-full does; write sslmode=verify-full to say so, or sslmode=no-verify to skip the check"

let warn: ((text: string) => void) | undefined
let installed = false

/** Routes the notice to `sink` (the running command's warning output); idempotent. */
export function interceptProcessWarnings(sink: (text: string) => void): void {
  warn = sink
  if (installed) return
  installed = true
  const emitWarning = process.emitWarning.bind(process)
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const text = typeof warning === 'string' ? warning : warning?.message
    if (typeof text === 'string' && PG_SSLMODE_NOTICE.test(text)) {
      warn?.(SSLMODE_WARNING)
      return
    }
    ;(emitWarning as (...args: unknown[]) => void)(warning, ...rest)
  }) as typeof process.emitWarning
}
