import {readFileSync} from 'node:fs'

/** backfill's own version (package.json two levels above src/lib and dist/lib). */
export const BACKFILL_VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {version: string})
      .version
  } catch {
    return '0.0.0'
  }
})()
