import {expect} from 'chai'

import {estimateThroughput, ThroughputRing, type ThroughputSample} from '../../src/lib/console/throughput.js'

const t0 = Date.parse('2026-01-01T00:00:00Z')
const sample = (sec: number, lastId: number | null, jobs: number, dlq = 0): ThroughputSample => ({
  at: new Date(t0 + sec * 1000).toISOString(),
  lastId,
  jobs,
  dlq,
})

describe('console: throughput estimate', () => {
  it('completed = ids issued − growth in rows − DLQ captures, per interval and per minute', () => {
    const e = estimateThroughput([
      sample(0, 100, 10), // start
      sample(30, 150, 20, 0), // 50 issued, rows +10 → 40 completed
      sample(60, 150, 5, 3), // none issued, rows −15, 3 captured → 12 completed
    ])
    expect(e.estimate).to.equal(true)
    expect(e.samples).to.equal(3)
    expect(e.points.map((p) => p.completed)).to.deep.equal([40, 12])
    expect(e.points.map((p) => p.intervalMs)).to.deep.equal([30_000, 30_000])
    expect(e.completed).to.equal(52)
    expect(e.spanMs).to.equal(60_000)
    expect(e.perMinute).to.equal(52)
  })

  it('has no rate before two samples', () => {
    expect(estimateThroughput([]).perMinute).to.equal(null)
    const one = estimateThroughput([sample(0, 1, 1)])
    expect(one.points).to.deep.equal([])
    expect(one.perMinute).to.equal(null)
  })

  it('a shrinking DLQ (retry, purge) is no capture; negative deltas clamp to 0', () => {
    // A DLQ retry: one new id, one more row, one DLQ entry fewer → nothing completed.
    expect(estimateThroughput([sample(0, 10, 5, 4), sample(10, 11, 6, 3)]).points[0]?.completed).to.equal(0)
    // Rows grew more than ids issued (an insert landed between the id read and the count).
    expect(estimateThroughput([sample(0, 10, 5), sample(10, 11, 8)]).points[0]?.completed).to.equal(0)
  })

  it('a counter reset (sequence went backwards) or a missing id leaves that interval unknown', () => {
    const e = estimateThroughput([
      sample(0, 1000, 10),
      sample(10, 5, 0), // schema recreated: reset
      sample(20, 25, 0), // 20 issued, all done
      sample(30, null, 0), // no privilege to read the sequence
      sample(40, 30, 0),
    ])
    expect(e.points.map((p) => p.completed)).to.deep.equal([null, 20, null, null])
    expect(e.completed).to.equal(20)
    expect(e.spanMs).to.equal(10_000)
    expect(e.perMinute).to.equal(120)
  })

  it('skips samples that do not move forward in time', () => {
    const e = estimateThroughput([sample(0, 1, 0), sample(0, 5, 0), sample(60, 11, 0)])
    expect(e.points.map((p) => p.completed)).to.deep.equal([6])
    expect(e.perMinute).to.equal(6)
  })

  it('the ring keeps the last N samples, at most one per interval', () => {
    const ring = new ThroughputRing(3, 5000)
    expect(ring.push(sample(0, 1, 0))).to.equal(true)
    expect(ring.push(sample(2, 2, 0))).to.equal(false) // too soon: another tab's refresh
    for (const s of [5, 10, 15, 20]) ring.push(sample(s, s, 0))
    expect(ring.samples().map((s) => s.lastId)).to.deep.equal([10, 15, 20])
  })
})
