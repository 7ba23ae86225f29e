import {expect} from 'chai'

import {AdaptivePrefetch, type LocalQueueHandle} from '../../src/lib/worker/prefetch.js'

/** A stand-in for graphile's LocalQueue fetch: reads the size as graphile does (before and after the query). */
function fetchOnce(
  queue: LocalQueueHandle,
  prefetch: AdaptivePrefetch,
  between?: () => void,
  full = false,
): [number, number] {
  const asked = queue.getJobBatchSize
  between?.()
  prefetch.fetched(full ? asked : 0)
  const compared = queue.getJobBatchSize
  return [asked, compared]
}

describe('adaptive prefetch (the local queue batch size)', () => {
  it('starts with one job per slot, grows with the completion rate, bounded by the cap', () => {
    const p = new AdaptivePrefetch({concurrency: 10, cap: 500, horizonMs: 150, tickMs: 100})
    const queue: LocalQueueHandle = {getJobBatchSize: 10}
    p.attach(queue)
    try {
      expect(queue.getJobBatchSize).to.equal(10)
      p.fetched(3)
      expect(queue.getJobBatchSize).to.equal(10)
      // 1,000 jobs/s with every slot busy: 150 ms of work = 150 jobs.
      p.running = 10
      const t0 = performance.now()
      p.completed += 100
      p.busyMs += 100 * 0.1
      p.tick(t0 + 100)
      expect(p.state().size).to.be.within(148, 150)
      // 20,000 jobs/s: capped.
      for (let i = 2; i < 20; i++) {
        p.completed += 2000
        p.busyMs += 2000 * 0.1
        p.tick(t0 + i * 100)
      }
      expect(p.state().size).to.equal(500)
    } finally {
      p.detach()
    }
  })

  it('shrinks to the free slots when idle, and stays small for slow jobs', () => {
    const p = new AdaptivePrefetch({concurrency: 10, cap: 500, horizonMs: 150, tickMs: 100})
    p.attach({getJobBatchSize: 10})
    try {
      const t0 = performance.now()
      p.running = 10
      p.completed += 500
      p.busyMs += 500 * 0.1
      p.tick(t0 + 100)
      expect(p.state().size).to.equal(500)
      // Idle: nothing running, nothing completing; the rate decays to nothing.
      p.running = 0
      for (let i = 2; i < 60; i++) p.tick(t0 + i * 100)
      expect(p.state().size).to.equal(10)
      // Slow jobs (1 s each, 10 slots busy): 10 jobs/s, 150 ms of work = 2 jobs.
      p.running = 10
      for (let i = 60; i < 120; i++) {
        p.completed += 1
        p.busyMs += 1000
        p.tick(t0 + i * 100)
      }
      expect(p.state().size).to.equal(2)
    } finally {
      p.detach()
    }
  })

  it('both reads of one fetch see the same size, even when the size changes during the query', () => {
    const p = new AdaptivePrefetch({concurrency: 10, cap: 500, horizonMs: 150, tickMs: 100})
    const queue: LocalQueueHandle = {getJobBatchSize: 10}
    p.attach(queue)
    try {
      const t0 = performance.now()
      p.running = 10
      const [asked, compared] = fetchOnce(queue, p, () => {
        p.completed += 1000
        p.busyMs += 1000 * 0.1
        p.tick(t0 + 100)
      })
      expect([asked, compared]).to.deep.equal([10, 10])
      expect(p.state().size).to.be.greaterThan(10)
      // The next fetch uses the new size, consistently.
      const [next, nextCompared] = fetchOnce(queue, p)
      expect(next).to.equal(p.state().size)
      expect(nextCompared).to.equal(next)
      // A fetch whose query failed (no completion event) leaves the size fixed until the next one completes.
      const failed = queue.getJobBatchSize
      p.completed += 5000
      p.busyMs += 5000 * 0.1
      p.tick(t0 + 200)
      expect(queue.getJobBatchSize).to.equal(failed)
      p.fetched(0)
      expect(queue.getJobBatchSize).to.equal(failed)
      expect(queue.getJobBatchSize).to.equal(p.state().size)
      // graphile's own assignment is ignored once attached.
      queue.getJobBatchSize = 3
      p.fetched(0)
      expect(queue.getJobBatchSize).to.equal(p.state().size)
    } finally {
      p.detach()
    }
  })

  it('a full fetch (a backlog) quadruples the next one, up to what the slots finish in the horizon', () => {
    const fast = new AdaptivePrefetch({concurrency: 10, cap: 500, horizonMs: 150, tickMs: 100})
    const queue: LocalQueueHandle = {getJobBatchSize: 10}
    fast.attach(queue)
    try {
      // Fast jobs (0.05 ms), every slot busy, a low rate so far (the batch size limits it).
      fast.running = 10
      const t0 = performance.now()
      fast.completed += 10
      fast.busyMs += 10 * 0.05
      fast.tick(t0 + 100)
      const sizes: number[] = []
      for (let i = 0; i < 8; i++) sizes.push(fetchOnce(queue, fast, undefined, true)[0])
      // The rate so far (100 jobs/s) asks for 15; each full fetch asks for 4 times as many.
      expect(sizes).to.deep.equal([15, 60, 240, 500, 500, 500, 500, 500])
      expect(fetchOnce(queue, fast, undefined, true)[0]).to.equal(500)
      // A fetch that is not full ends the boost.
      fetchOnce(queue, fast, undefined, false)
      expect(fast.state().size).to.equal(Math.ceil(fast.state().ratePerSecond * 0.15))
    } finally {
      fast.detach()
    }
    const slow = new AdaptivePrefetch({concurrency: 10, cap: 500, horizonMs: 150, tickMs: 100})
    const slowQueue: LocalQueueHandle = {getJobBatchSize: 10}
    slow.attach(slowQueue)
    try {
      // 1 s jobs: 10 slots finish 1.5 jobs in 150 ms, however long the backlog.
      slow.running = 10
      const t0 = performance.now()
      slow.completed += 1
      slow.busyMs += 1000
      slow.tick(t0 + 100)
      for (let i = 0; i < 10; i++) fetchOnce(slowQueue, slow, undefined, true)
      expect(slow.state().size).to.equal(2)
    } finally {
      slow.detach()
    }
  })
})
