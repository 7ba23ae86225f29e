import {randomBytes} from 'node:crypto'

import {isLosslessNumber, parse as parseLossless, stringify as stringifyLossless} from 'lossless-json'

import type {DlqEntry} from './dlq/entries.js'
import type {JobEntry} from './jobs/entries.js'

/**
 * JSON text to embed as is in a --json document: a payload exactly as stored (JSON.parse
 * would round 9007199254740993 and turn 1e999 into Infinity, then null).
 */
export class RawJson {
  constructor(readonly text: string) {}
}

/**
 * The --json document (and the console API's body): JSON.stringify (fast, no recursion limit of its own beyond the data's
 * depth) with RawJson values and lossless numbers written verbatim.
 */
export function jsonDocument(value: unknown, indent = 2): string {
  const raws: string[] = []
  const nonce = randomBytes(8).toString('hex')
  const text = JSON.stringify(
    value,
    (_key, v: unknown) => {
      if (v instanceof RawJson || isLosslessNumber(v)) {
        raws.push(v instanceof RawJson ? v.text.trim() : String(v))
        return `\u0000raw${nonce}:${raws.length - 1}`
      }
      return v
    },
    indent,
  )
  if (raws.length === 0) return text
  return text.replace(new RegExp(`"\\\\u0000raw${nonce}:(\\d+)"`, 'g'), (_m, i: string) => raws[Number(i)]!)
}

/** Largest payload pretty-printed for people; bigger ones print as stored. */
const MAX_PRETTY_PAYLOAD = 1024 * 1024

/** A payload's JSON text indented for people, every number exactly as stored. */
export function prettyPayload(text: string): string {
  if (text.length > MAX_PRETTY_PAYLOAD) return text
  try {
    return stringifyLossless(parseLossless(text), null, 2) ?? text
  } catch {
    // Duplicate keys (json, not jsonb, keeps them): show the text as stored.
    return text
  }
}

/** A DLQ entry as documents carry it: the payload exactly as stored, once. */
export function entryDocument(entry: DlqEntry): Omit<DlqEntry, 'payloadText' | 'payload'> & {payload: RawJson} {
  const {payloadText, ...rest} = entry
  return {...rest, payload: new RawJson(payloadText)}
}

/** A job as documents carry it: the payload exactly as stored, once. */
export function jobDocument(job: JobEntry): Omit<JobEntry, 'payloadText' | 'payload'> & {payload: RawJson} {
  const {payloadText, ...rest} = job
  return {...rest, payload: new RawJson(payloadText)}
}
