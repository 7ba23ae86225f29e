import {expect} from 'chai'

import {UsageError} from '../../src/lib/errors.js'
import {formatDuration, parseDuration} from '../../src/lib/duration.js'
import {planLocks, timeoutWarnings} from '../../src/lib/locks/clean.js'
import type {LockEntry} from '../../src/lib/locks/list.js'
import {
  heartbeatBound,
  judgeOwner,
  ownerFamily,
  type OwnerFacts,
  type RegistryFacts,
} from '../../src/lib/locks/owners.js'

const registry = (over: Partial<RegistryFacts> = {}): RegistryFacts => ({
  hostname: 'h',
  pid: 1,
  startedAt: new Date(0),
  lastHeartbeatAt: new Date(0),
  stoppedAt: null,
  version: null,
  heartbeatIntervalMs: 10_000,
  heartbeatAgeMs: 0,
  effectiveHeartbeatAgeMs: 0,
  ...over,
})
const facts = (over: Partial<OwnerFacts> = {}): OwnerFacts => ({
  owner: 'pool-aa',
  sessions: 0,
  registry: null,
  rust: null,
  holdsResilientJob: false,
  ...over,
})

describe('lock owners', () => {
  it('families from the owner prefix', () => {
    expect(ownerFamily('pool-0123456789abcdef01')).to.equal('node')
    expect(ownerFamily('otpool-0123456789abcdef01')).to.equal('node')
    expect(ownerFamily('worker-0123456789abcdef01')).to.equal('node')
    expect(ownerFamily('graphile_worker_0123456789abcdef01')).to.equal('rust')
    expect(ownerFamily('my-script')).to.equal('other')
    expect(ownerFamily(null)).to.equal('other')
  })

  it('heartbeat bound: 3 × the recorded interval, at least 30 s, or the override', () => {
    expect(heartbeatBound({heartbeatIntervalMs: 10_000})).to.equal(30_000)
    expect(heartbeatBound({heartbeatIntervalMs: 1_000})).to.equal(30_000)
    expect(heartbeatBound({heartbeatIntervalMs: 60_000})).to.equal(180_000)
    expect(heartbeatBound({heartbeatIntervalMs: null})).to.equal(30_000)
    expect(heartbeatBound({heartbeatIntervalMs: 60_000}, {heartbeatTimeoutMs: 5000})).to.equal(5000)
  })

  it('a presence session proves life even with a stale or stopped registry row', () => {
    const v = judgeOwner(
      facts({sessions: 1, registry: registry({effectiveHeartbeatAgeMs: 1e9, stoppedAt: new Date()})}),
    )
    expect(v).to.include({liveness: 'live', evidence: 'presence-session'})
  })

  it('registry rows: fresh heartbeat live, stale dead, stopped dead', () => {
    expect(judgeOwner(facts({registry: registry({effectiveHeartbeatAgeMs: 29_000})})).liveness).to.equal('live')
    expect(
      judgeOwner(facts({registry: registry({effectiveHeartbeatAgeMs: 31_000, heartbeatAgeMs: 31_000})})).liveness,
    ).to.equal('dead')
    expect(judgeOwner(facts({registry: registry({stoppedAt: new Date()})})).liveness).to.equal('dead')
  })

  it('Rust heartbeats: 5 min bound, tripled for resilient jobs; no evidence is unknown', () => {
    const rust = (age: number) => ({
      startedAt: new Date(0),
      lastHeartbeatAt: new Date(0),
      heartbeatAgeMs: age,
      effectiveHeartbeatAgeMs: age,
    })
    expect(judgeOwner(facts({owner: 'graphile_worker_x', rust: rust(299_000)})).liveness).to.equal('live')
    expect(judgeOwner(facts({owner: 'graphile_worker_x', rust: rust(301_000)})).liveness).to.equal('dead')
    expect(
      judgeOwner(facts({owner: 'graphile_worker_x', rust: rust(600_000), holdsResilientJob: true})).liveness,
    ).to.equal('live')
    expect(judgeOwner(facts({owner: 'graphile_worker_x'}))).to.include({liveness: 'unknown', evidence: 'none'})
    expect(judgeOwner(facts())).to.include({liveness: 'unknown'})
  })
})

describe('lock release plan', () => {
  let n = 0
  const lock = (over: Partial<LockEntry>): LockEntry => {
    n += 1
    const base: LockEntry = {
      kind: 'job',
      jobId: String(n),
      queueId: null,
      queueName: null,
      taskIdentifier: 't',
      owner: 'pool-a',
      family: 'node',
      liveness: 'unknown',
      lockedAt: `2026-01-01T00:00:00.00000${n % 10}Z`,
      ageMs: 0,
      attempts: 1,
      maxAttempts: 8,
      key: '',
    }
    const entry = {...base, ...over}
    return {...entry, key: `${entry.kind}:${entry.jobId ?? entry.queueId}:${entry.owner}:${entry.lockedAt}`}
  }
  const opts = {queueMs: 300_000, jobMs: 1_800_000, force: false, reasonOf: () => 'r'}
  const min = 60_000

  it('dead: released whatever the age; live: kept whatever the age; unknown: by age', () => {
    const plan = planLocks(
      [
        lock({liveness: 'dead', ageMs: 1}),
        lock({liveness: 'live', ageMs: 100 * 3_600_000}),
        lock({liveness: 'unknown', ageMs: 29 * min}),
        lock({liveness: 'unknown', ageMs: 31 * min}),
      ],
      opts,
    )
    expect(plan.map((p) => `${p.action}:${p.reason}`)).to.deep.equal([
      'release:dead-owner',
      'keep:live-owner',
      'keep:unknown-not-stale',
      'release:stale-unknown',
    ])
  })

  it('an unknown owner keeps its queue lock while its job in that queue is kept', () => {
    const plan = planLocks(
      [
        lock({ageMs: 10 * min, queueId: 1}),
        lock({kind: 'queue', jobId: null, queueId: 1, ageMs: 10 * min}),
        lock({kind: 'queue', jobId: null, queueId: 2, ageMs: 10 * min}),
        lock({kind: 'queue', jobId: null, queueId: 3, ageMs: 4 * min}),
        lock({kind: 'queue', jobId: null, queueId: 1, owner: 'pool-b', ageMs: 10 * min}),
      ],
      opts,
    )
    expect(plan.map((p) => `${p.action}:${p.reason}`)).to.deep.equal([
      'keep:unknown-not-stale',
      'keep:queue-in-use',
      'release:stale-unknown',
      'keep:unknown-not-stale',
      'release:stale-unknown',
    ])
  })

  it('force releases live owners; only keeps what was not confirmed', () => {
    const live = lock({liveness: 'live'})
    const dead = lock({liveness: 'dead'})
    const forced = planLocks([live, dead], {...opts, force: true})
    expect(forced.map((p) => p.reason)).to.deep.equal(['forced', 'dead-owner'])
    const confirmed = planLocks([live, dead], {...opts, force: true, only: new Set([dead.key])})
    expect(confirmed.map((p) => `${p.action}:${p.reason}`)).to.deep.equal(['keep:not-confirmed', 'release:dead-owner'])
  })

  it("timeout warnings follow the crate's guard rails", () => {
    expect(timeoutWarnings(300_000, 1_800_000)).to.deep.equal([])
    expect(timeoutWarnings(59_000, 1_800_000).map((w) => w.level)).to.deep.equal(['warning'])
    expect(timeoutWarnings(300_000, 299_000).map((w) => w.level)).to.deep.equal(['error'])
    expect(timeoutWarnings(300_000, 899_000).map((w) => w.level)).to.deep.equal(['warning'])
  })
})

describe('durations', () => {
  it('parses units, compounds, and bare numbers only in a named unit', () => {
    expect(parseDuration('250ms')).to.equal(250)
    expect(parseDuration('5m')).to.equal(300_000)
    expect(parseDuration('1h30m')).to.equal(5_400_000)
    expect(parseDuration('90', {defaultUnit: 's'})).to.equal(90_000)
    expect(parseDuration('200', {defaultUnit: 'ms'})).to.equal(200)
    expect(() => parseDuration('90')).to.throw(UsageError, /a unit is required/)
    expect(parseDuration('1.5s')).to.equal(1500)
    expect(() => parseDuration('5 minutes')).to.throw(UsageError, /is not a duration/)
    expect(() => parseDuration('-5m')).to.throw(UsageError)
  })

  it('formats for people', () => {
    expect(formatDuration(450)).to.equal('450ms')
    expect(formatDuration(4200)).to.equal('4.2s')
    expect(formatDuration(125_000)).to.equal('2m 5s')
    expect(formatDuration(3 * 3_600_000 + 60_000)).to.equal('3h 1m')
    expect(formatDuration(null)).to.equal('–')
  })
})
