import type {LivenessOptions} from '../lib/locks/owners.js'
import {duration} from './flags.js'

/** Flags of the commands that judge lock owners' liveness. */
export const livenessFlags = {
  'heartbeat-timeout': duration({
    defaultUnit: 's',
    helpGroup: 'LIVENESS',
    summary:
      'A backfill worker without a presence session is dead once its heartbeat is older than this (default: 3 × its heartbeat interval, at least 30s).',
  }),
}

export function livenessOptions(flags: {'heartbeat-timeout'?: number | undefined}): LivenessOptions {
  const value = flags['heartbeat-timeout']
  return value === undefined ? {} : {heartbeatTimeoutMs: value}
}
