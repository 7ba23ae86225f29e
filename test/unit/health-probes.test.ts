import {expect} from 'chai'

import {EventLoopWatch, workerProbes, type WorkerHealthState} from '../../src/lib/worker/health.js'

describe('worker probes (/healthz, /readyz)', () => {
  const loop = new EventLoopWatch(50)
  after(() => loop.stop())
  const state =
    (s: Partial<WorkerHealthState>): (() => WorkerHealthState) =>
    () => ({
      phase: 'running',
      heartbeatSilentMs: 1000,
      connected: true,
      fenceAfterMs: 15_000,
      ...s,
    })

  it('running, connected, recent heartbeat: alive and ready', () => {
    const p = workerProbes(state({}), loop)
    expect(p.live()).to.deep.equal({ok: true, reason: 'running'})
    expect(p.ready()).to.deep.equal({ok: true, reason: 'running'})
  })

  it('starting (migrations, startup capture): alive, not ready', () => {
    const p = workerProbes(state({phase: 'starting', heartbeatSilentMs: null, connected: false}), loop)
    expect(p.live().ok).to.equal(true)
    expect(p.ready()).to.deep.equal({ok: false, reason: 'starting'})
  })

  it('draining after SIGTERM: alive (let it finish), not ready', () => {
    const p = workerProbes(state({phase: 'stopping'}), loop)
    expect(p.live()).to.deep.equal({ok: true, reason: 'stopping'})
    expect(p.ready()).to.deep.equal({ok: false, reason: 'stopping'})
  })

  it('no heartbeat recorded past the fencing bound: neither alive nor ready', () => {
    const p = workerProbes(state({heartbeatSilentMs: 20_000}), loop)
    expect(p.live()).to.deep.equal({ok: false, reason: 'no heartbeat recorded for 20 s'})
    expect(p.ready().ok).to.equal(false)
  })

  it('presence session lost (reconnecting): alive, not ready', () => {
    const p = workerProbes(state({connected: false}), loop)
    expect(p.live().ok).to.equal(true)
    expect(p.ready()).to.deep.equal({ok: false, reason: 'presence session not connected'})
  })

  it('a stalled event loop fails liveness', async () => {
    const watch = new EventLoopWatch(20)
    try {
      const until = Date.now() + 300
      while (Date.now() < until) {
        // block the loop
      }
      const p = workerProbes(state({}), watch, 100)
      expect(p.live().ok).to.equal(false)
      expect(p.live().reason).to.match(/event loop stalled for \d+ ms/)
      await new Promise((r) => setTimeout(r, 60))
      expect(p.live().ok).to.equal(true)
    } finally {
      watch.stop()
    }
  })
})
