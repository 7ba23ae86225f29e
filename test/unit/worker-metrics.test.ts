import {expect} from 'chai'

import {createWorkerMetrics} from '../../src/lib/worker/metrics.js'

describe('worker job counters (plain numbers added at scrape time)', () => {
  it('a scrape shows every start and completion once, however often it is scraped', async () => {
    const metrics = createWorkerMetrics()
    const send = metrics.jobCountCell('send_email')
    expect(metrics.jobCountCell('send_email')).to.equal(send)
    send.started += 3
    send.completed += 2
    metrics.jobCountCell('charge').started += 1
    const line = (text: string, name: string, task: string): string | undefined =>
      text.split('\n').find((l) => l.startsWith(`${name}{task="${task}"}`))
    let text = await metrics.registry.metrics()
    expect(line(text, 'backfill_jobs_started_total', 'send_email')).to.equal(
      'backfill_jobs_started_total{task="send_email"} 3',
    )
    expect(line(text, 'backfill_jobs_completed_total', 'send_email')).to.equal(
      'backfill_jobs_completed_total{task="send_email"} 2',
    )
    expect(line(text, 'backfill_jobs_started_total', 'charge')).to.equal('backfill_jobs_started_total{task="charge"} 1')
    expect(line(text, 'backfill_jobs_completed_total', 'charge')).to.equal(undefined)
    text = await metrics.registry.metrics()
    expect(line(text, 'backfill_jobs_started_total', 'send_email')).to.equal(
      'backfill_jobs_started_total{task="send_email"} 3',
    )
    send.started += 1
    send.completed += 1
    text = await metrics.registry.metrics()
    expect(line(text, 'backfill_jobs_started_total', 'send_email')).to.equal(
      'backfill_jobs_started_total{task="send_email"} 4',
    )
    expect(line(text, 'backfill_jobs_completed_total', 'send_email')).to.equal(
      'backfill_jobs_completed_total{task="send_email"} 3',
    )
    expect((await metrics.jobsCompleted.get()).values.find((v) => v.labels.task === 'send_email')?.value).to.equal(3)
  })
})
