import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import {chromium, type BrowserContext} from 'playwright-core'

export const CHROMIUM = process.env.BACKFILL_CHROMIUM ?? '/usr/bin/chromium'

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** Why browser tests cannot run here, or undefined when Chromium is installed. */
export function browserMissing(): string | undefined {
  return existsSync(CHROMIUM)
    ? undefined
    : `no Chromium at ${CHROMIUM} (install Debian's chromium package, or set BACKFILL_CHROMIUM)`
}

/** Headless Chromium with a fresh profile of its own, removed by close(). */
export async function launchBrowser(
  options: {viewport?: {width: number; height: number}; colorScheme?: 'light' | 'dark'} = {},
): Promise<{context: BrowserContext; close: () => Promise<void>}> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bf-chromium-'))
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: options.viewport ?? {width: 1280, height: 900},
    colorScheme: options.colorScheme ?? 'light',
  })
  return {
    context,
    close: async () => {
      await context.close().catch(() => undefined)
      rmSync(dir, {recursive: true, force: true})
    },
  }
}
