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
  'rust-heartbeat-timeout': duration({
    defaultUnit: 's',
    helpGroup: 'LIVENESS',
    summary:
      "A Rust graphile_worker is dead once its _private_workers heartbeat is older than this (default 5m, the Rust recovery's own threshold; tripled while it holds an infrastructure_resilient job). Raise it to match Rust services configured with a longer heartbeat.",
  }),
}

export function livenessOptions(flags: {
  'heartbeat-timeout'?: number | undefined
  'rust-heartbeat-timeout'?: number | undefined
}): LivenessOptions {
  const node = flags['heartbeat-timeout']
  const rust = flags['rust-heartbeat-timeout']
  return {
    ...(node === undefined ? {} : {heartbeatTimeoutMs: node}),
    ...(rust === undefined ? {} : {rustHeartbeatTimeoutMs: rust}),
  }
}
