import http from 'node:http'
import type {AddressInfo} from 'node:net'

import {expect} from 'chai'
import type {BrowserContext, Page} from 'playwright-core'

import {startConsole, type RunningConsole} from '../support/console.js'
import {browserMissing, launchBrowser} from '../support/browser.js'
import {TestSchema} from '../support/db.js'
import {fillDlq, insertDlq, whereIsEverything} from '../support/dlq.js'
import {addJob} from '../support/jobs.js'

const XSS_PAYLOAD = {html: '<img src=x onerror=alert(1)>', script: '<script>alert(2)</script>'}
const XSS_TASK = '<script>alert(3)</script>'

describe('web console in headless Chromium', function () {
  this.timeout(120_000)
  let t: TestSchema
  let c: RunningConsole | undefined
  let browser: {context: BrowserContext; close: () => Promise<void>} | undefined
  let page: Page
  const dialogs: string[] = []

  before(function () {
    const missing = browserMissing()
    if (missing) {
      // Said clearly, and only when the browser cannot be had.
      console.warn(`      skipping the browser tests: ${missing}`)
      this.skip()
    }
  })
  beforeEach(async () => {
    t = await TestSchema.create({migrated: true, prefix: 'uib'})
    browser = await launchBrowser()
    page = await browser.context.newPage()
    dialogs.length = 0
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message())
      void dialog.dismiss()
    })
  })
  afterEach(async () => {
    await browser?.close()
    await c?.stop()
    c = undefined
    await t.drop()
  })

  const open = async (path: string): Promise<void> => {
    const response = await page.goto(`${c!.origin}${path}`)
    expect(response?.status(), path).to.be.lessThan(400)
  }

  it('opens the overview, then the DLQ groups; dry-runs a retry, confirms it, and the entries move exactly once', async () => {
    await fillDlq(t, 6, {tasks: 2})
    await addJob(t, 'send_email', {payload: {to: 'a@example.com'}})
    c = await startConsole(t)
    await open('/')
    expect(await page.title()).to.equal('Overview · backfill')
    expect(await page.locator('.cards').innerText()).to.match(/DLQ entries/)
    expect(await page.locator('main').innerText()).to.match(/task_0/)
    // The throughput sparkline: inline SVG with a text summary; a rate once two samples ≥ 5 s apart exist.
    const spark = page.getByRole('img', {name: /^Throughput/})
    expect(await spark.getAttribute('aria-label')).to.match(/collecting samples/)
    await new Promise((r) => setTimeout(r, 5200))
    await page.reload()
    expect(await spark.getAttribute('aria-label')).to.match(/^Throughput ≈ 0 jobs\/min over the last \d/)
    expect(await page.locator('#throughput svg rect').count()).to.equal(1)
    expect(await page.locator('#throughput-summary').innerText()).to.match(/estimate/i)
    await page.getByRole('link', {name: 'DLQ', exact: true}).click()
    await page.waitForURL(/\/dlq$/)
    expect(await page.locator('h1').innerText()).to.match(/failure groups/)
    const groupRows = page.locator('table').first().locator('tbody tr')
    expect(await groupRows.count()).to.equal(2)
    // Retry the group of task_1 (3 entries): a preview first, nothing changed.
    const row = groupRows.filter({hasText: 'task_1'})
    await row.getByRole('button', {name: /Retry group/}).click()
    await page.waitForURL(/\/dlq\/retry$/)
    expect(await page.locator('#preview-count').innerText()).to.match(/Would retry 3 entries/)
    expect((await whereIsEverything(t)).jobs.filter((i) => i !== null)).to.deep.equal([])
    const confirmToken = await page.locator('input[name=confirm]').inputValue()
    const csrfToken = await page.locator('form:has(#confirm) input[name=_csrf]').inputValue()
    await page.locator('input[name=reason]').fill('browser canary')
    await page.locator('#confirm').click()
    await page.waitForSelector('#result')
    expect(await page.locator('#result').innerText()).to.match(/Retried 3 entries/)
    // The same confirmation submitted again (a double click, a resubmitted form) replays the answer.
    await page.goBack({waitUntil: 'commit'}).catch(() => undefined)
    const again = await page.request.post(`${c!.origin}/dlq/retry`, {
      form: {
        confirm: confirmToken,
        _csrf: csrfToken,
      },
      headers: {origin: c!.origin},
    })
    expect(again.status()).to.equal(200)
    expect(await again.text()).to.match(/Retried 3 entries/)
    const where = await whereIsEverything(t)
    const retried = [1, 3, 5]
    expect(where.dlq).to.deep.equal([2, 4, 6])
    expect(where.jobs.filter((i) => i !== null).sort()).to.deep.equal(retried)
    const [audit] = await t.query<{n: number; reason: string}>(
      `select count(*)::int as n, max(reason) as reason from ${t.quoted}.backfill_dlq_audit where action = 'retry'`,
    )
    expect(audit).to.deep.equal({n: 1, reason: 'browser canary'})
    expect(dialogs).to.deep.equal([])
  })

  it('renders hostile job data as text and runs none of it', async () => {
    const [entry] = await insertDlq(t, [
      {task: XSS_TASK, payload: XSS_PAYLOAD, lastError: '<img src=x onerror=alert(4)>', jobKey: '<b>k</b>'},
    ])
    const job = await addJob(t, XSS_TASK, {payload: XSS_PAYLOAD, queue: '<i>q</i>'})
    c = await startConsole(t)
    const scripts: string[] = []
    page.on('request', (request) => {
      if (!request.url().startsWith(c!.origin)) scripts.push(request.url())
    })
    for (const path of ['/', '/dlq', `/dlq/${entry}`, '/dlq/entries', '/jobs', `/jobs/${job}`, '/locks', '/history']) {
      await open(path)
      // No element was injected: the only <script> is our own asset, no <img> at all.
      expect(await page.locator('script').count(), path).to.equal(1)
      expect(await page.locator('main img').count(), path).to.equal(0)
    }
    await open(`/dlq/${entry}`)
    const text = await page.locator('main').innerText()
    expect(text).to.include('<img src=x onerror=alert(1)>')
    expect(text).to.include('<script>alert(2)</script>')
    expect(text).to.include(XSS_TASK)
    await open(`/jobs/${job}`)
    expect(await page.locator('main').innerText()).to.include('<img src=x onerror=alert(1)>')
    expect(dialogs).to.deep.equal([])
    expect(scripts.filter((u) => !u.startsWith('data:'))).to.deep.equal([])
  })

  it('refuses a cross-site POST (a form on another origin aimed at the console)', async () => {
    await fillDlq(t, 3)
    c = await startConsole(t)
    const target = `${c.origin}/dlq/purge`
    const evil = http.createServer((_req, res) => {
      res.writeHead(200, {'content-type': 'text/html'})
      res.end(`<form id="f" method="post" action="${target}"><input name="all" value="true"><input name="confirm" value="x"></form>
        <form id="g" method="post" action="${c!.origin}/api/v1/dlq/purge"><input name="all" value="true"><input name="yes" value="true"></form>`)
    })
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.2', resolve))
    try {
      // 127.0.0.2 vs 127.0.0.1: another origin and another site, as far as the browser can tell.
      const origin = `http://127.0.0.2:${(evil.address() as AddressInfo).port}`
      for (const form of ['f', 'g']) {
        const tab = await browser!.context.newPage()
        await tab.goto(origin)
        const [response] = await Promise.all([
          tab.waitForResponse((r) => r.url().startsWith(c!.origin)),
          tab.evaluate(`document.getElementById('${form}').submit()`),
        ])
        expect(response.status(), form).to.equal(403)
        await tab.close()
      }
    } finally {
      evil.closeAllConnections()
      await new Promise((resolve) => evil.close(resolve))
    }
    expect((await whereIsEverything(t)).dlq).to.have.length(3)
  })

  it('read-only mode offers no actions anywhere', async () => {
    const [entry] = await insertDlq(t, [{task: 'send_email'}])
    const job = await addJob(t, 'send_email')
    c = await startConsole(t, {readOnly: true})
    for (const path of [
      '/',
      '/dlq',
      `/dlq/${entry}`,
      '/dlq/entries?task=send_email',
      '/jobs?task=send_email',
      `/jobs/${job}`,
      '/locks',
    ]) {
      await open(path)
      expect(await page.locator('form[method=post]').count(), path).to.equal(0)
      expect(await page.locator('main').innerText(), path).to.match(/Actions are off: the console runs read-only/)
    }
  })

  it('keyboard navigation reaches the retry button, and Enter opens the preview', async () => {
    const [entry] = await insertDlq(t, [{task: 'send_email'}])
    c = await startConsole(t)
    await open(`/dlq/${entry}`)
    let reached = false
    for (let i = 0; i < 40 && !reached; i++) {
      await page.keyboard.press('Tab')
      reached = (await page.evaluate('document.activeElement && document.activeElement.id')) === 'retry-entry'
    }
    expect(reached, 'Tab reaches the Retry button').to.equal(true)
    await page.keyboard.press('Enter')
    await page.waitForURL(/\/dlq\/retry$/)
    expect(await page.locator('#preview-count').innerText()).to.match(/Would retry 1 entry/)
  })

  it('fits a narrow screen and follows a dark system setting; pauses auto refresh', async () => {
    await fillDlq(t, 2)
    await browser!.close()
    browser = await launchBrowser({viewport: {width: 360, height: 740}, colorScheme: 'dark'})
    page = await browser.context.newPage()
    c = await startConsole(t)
    await open('/')
    const overflow = (await page.evaluate(
      'document.documentElement.scrollWidth - document.documentElement.clientWidth',
    )) as number
    expect(overflow).to.be.at.most(0)
    const background = await page.evaluate('getComputedStyle(document.body).backgroundColor')
    expect(background).to.equal('rgb(13, 17, 23)')
    const toggle = page.locator('#refresh-toggle')
    expect(await toggle.isVisible()).to.equal(true)
    await toggle.click()
    expect(await toggle.getAttribute('aria-pressed')).to.equal('true')
    // Times: relative text with the absolute time on hover.
    const time = page.locator('time[data-relative]').first()
    expect(await time.getAttribute('title')).to.match(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z$/)
  })

  it('jobs: the filter bar takes the CLI grammar; move the selection to the DLQ after a preview', async () => {
    const a = await addJob(t, 'broken_task', {payload: {n: 1}})
    const b = await addJob(t, 'broken_task', {payload: {n: 2}})
    const other = await addJob(t, 'fine_task')
    c = await startConsole(t)
    await open('/jobs')
    await page.locator('#filter').fill("--task 'broken_task' --state ready")
    await page.locator('#filter').press('Enter')
    await page.waitForURL(/q=/)
    expect(await page.locator('main table tbody tr').count()).to.equal(2)
    await page.getByRole('button', {name: 'Move to DLQ…'}).click()
    expect(await page.locator('#preview-count').innerText()).to.match(/Would change 2 of 2/)
    await page.locator('#confirm').click()
    expect(await page.locator('#result').innerText()).to.match(/Changed 2 job\(s\) \(2 moved to the DLQ\)/)
    const left = (await t.jobs()).map((j) => j.id)
    expect(left).to.deep.equal([other])
    const moved = await t.query<{id: string}>(
      `select original_job_id::text as id from ${t.quoted}.backfill_dlq order by 1`,
    )
    expect(moved.map((r) => r.id)).to.deep.equal([a, b].sort())
  })

  it('with a token: pages ask to sign in, the form signs in, and actions carry the identity', async () => {
    await fillDlq(t, 2)
    const token = 'browser-token-0123456789abcdef'
    c = await startConsole(t, {auth: {token}})
    await page.goto(`${c.origin}/dlq?task=task_1`)
    await page.waitForURL(/\/login\?next=/)
    await page.locator('input[name=token]').fill(token)
    await page.getByRole('button', {name: 'Sign in'}).click()
    await page.waitForURL(/\/dlq\?task=task_1$/)
    await page.getByRole('button', {name: 'Purge…'}).click()
    await page.locator('#confirm').click()
    expect(await page.locator('#result').innerText()).to.match(/Deleted 1 entry/)
    const [audit] = await t.query<{os_user: string; hostname: string}>(
      `select os_user, hostname from ${t.quoted}.backfill_dlq_audit where action = 'purge'`,
    )
    expect(audit).to.deep.equal({os_user: 'console:token', hostname: '127.0.0.1'})
    await page.getByRole('button', {name: 'Sign out'}).click()
    await page.waitForURL(/\/login$/)
    await page.goto(`${c.origin}/`)
    await page.waitForURL(/\/login/)
  })
})
