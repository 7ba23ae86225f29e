import {BackfillError, EXIT_CODES, InternalError, isBackfillError, type ExitCode} from '../errors.js'

/**
 * HTTP-level refusals of the console, in the same typed-error family as the library's (and
 * so in the same error envelope). Exit codes follow the CLI's meanings: a request the
 * caller got wrong is usage (2), missing or refused credentials are configuration (3).
 */
export class HttpError extends BackfillError {
  readonly code: string
  readonly exitCode: ExitCode
  readonly status: number
  constructor(
    status: number,
    code: string,
    message: string,
    options: {suggestions?: readonly string[]; exitCode?: ExitCode} = {},
  ) {
    super(message, {suggestions: options.suggestions})
    this.status = status
    this.code = code
    this.exitCode = options.exitCode ?? (status === 401 || status === 403 ? EXIT_CODES.config : EXIT_CODES.usage)
  }
}

/** The HTTP status for any error the API answers with. */
export function statusFor(error: BackfillError): number {
  if (error instanceof HttpError) return error.status
  if (/NOT_FOUND$/.test(error.code)) return 404
  if (error.code === 'E_PERMISSION') return 403
  switch (error.exitCode) {
    case EXIT_CODES.usage:
      return 400
    case EXIT_CODES.precondition:
    case EXIT_CODES.aborted:
      return 409
    case EXIT_CODES.config:
      return 503
    case EXIT_CODES.interrupted:
      return 503
    case EXIT_CODES.timeout:
      return 504
    default:
      return 500
  }
}

/** Anything thrown while answering, as a typed error (bugs become E_INTERNAL without their stack). */
export function asBackfillError(error: unknown): BackfillError {
  if (isBackfillError(error)) return error
  return new InternalError(`unexpected error: ${error instanceof Error ? error.message : String(error)}`, {
    cause: error,
  })
}
