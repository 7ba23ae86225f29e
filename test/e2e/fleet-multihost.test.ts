import {spawnSync} from 'node:child_process'
import net from 'node:net'

import {expect} from 'chai'
import {parse} from 'pg-connection-string'

import {BIN, cleanEnv} from '../support/cli.js'
import {TestSchema, testDatabaseName, testUrl} from '../support/db.js'
import {parseSeries, scrape, ServerProcess, waitUntil} from '../support/fleet.js'
import {createLedger, TASKS_DIR} from '../support/worker.js'

/**
 * A TCP hop between one worker and PostgreSQL, so that the test can cut that worker off the
 * database as a network partition would: every open connection reset (the server sees its
 * backends' clients vanish, as after pg_terminate_backend) and new ones refused, repeatedly.
 */
class Link {
  private readonly sockets = new Set<net.Socket>()
  private partitioned = false
  private server!: net.Server
  port = 0

  async start(): Promise<void> {
    const upstream = parse(testUrl())
    const host = upstream.host || '127.0.0.1'
    const port = Number(upstream.port || 5432)
    this.server = net.createServer((client) => {
      if (this.partitioned) return client.destroy()
      const server = host.startsWith('/') ? net.connect(`${host}/.s.PGSQL.${port}`) : net.connect(port, host)
      for (const [a, b] of [
        [client, server],
        [server, client],
      ] as const) {
        this.sockets.add(a)
        a.on('error', () => b.destroy())
        a.on('close', () => {
          this.sockets.delete(a)
          b.destroy()
        })
        a.pipe(b)
      }
    })
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.port = (this.server.address() as net.AddressInfo).port
  }

  url(): string {
    const {user, password} = parse(testUrl())
    const auth = `${encodeURIComponent(user || 'postgres')}${password ? `:${encodeURIComponent(password)}` : ''}`
    return `postgres://${auth}@127.0.0.1:${this.port}/${encodeURIComponent(testDatabaseName())}`
  }

  /** Cut every connection now and refuse new ones. */
  partition(): void {
    this.partitioned = true
    for (const socket of this.sockets) {
      try {
        socket.resetAndDestroy() // TCP: an RST, as a dropped route would produce
      } catch {
        socket.destroy() // the unix-socket side
      }
    }
  }

  async stop(): Promise<void> {
    this.partition()
    await new Promise((resolve) => this.server.close(resolve))
  }
}

const canUnshare = (): boolean => process.getuid?.() === 0 && spawnSync('unshare', ['--uts', 'true']).status === 0

describe('a fleet on several simulated hosts: kill the leader, partition the next one', function () {
  this.timeout(240_000)
  let t: TestSchema
  const links: Link[] = []
  const workers: ServerProcess[] = []

  before(function () {
    if (!canUnshare()) {
      console.warn('skipping: needs root and unshare(1) to give each worker a hostname of its own (UTS namespace)')
      this.skip()
    }
  })
  after(async () => {
    for (const w of workers) await w.stop(5000)
    for (const l of links) await l.stop()
    await t?.drop()
  })

  it('the leader moves, dead workers’ locks are freed, a partitioned worker fences itself, metrics stay consistent', async () => {
    t = await TestSchema.create({migrated: true, prefix: 'hosts'})
    const ledger = await createLedger(t)
    // Six long jobs: each of the three workers (concurrency 2) holds two.
    await t.query(`select ${t.quoted}.add_job('work', '{"ms":300000,"abortable":true}') from generate_series(1, 6)`)
    const hosts = ['host-a', 'host-b', 'host-c']
    const bases: string[] = []
    for (const host of hosts) {
      const link = new Link()
      await link.start()
      links.push(link)
      // Its own UTS namespace: os.hostname() (what the registry records) is the simulated host's.
      const worker = new ServerProcess(
        'unshare',
        [
          '--uts',
          'sh',
          '-c',
          `hostname ${host} && exec "$0" "$@"`,
          process.execPath,
          BIN,
          'worker',
          '--schema',
          t.schema,
          '--tasks',
          TASKS_DIR,
          '--concurrency',
          '2',
          '--local-queue-size',
          '0',
          '--heartbeat-interval',
          '1s',
          '--lock-cleanup-interval',
          '1s',
          '--shutdown-timeout',
          '2s',
          '--metrics-port',
          '0',
          '--queue-metrics-interval',
          '300ms',
        ],
        cleanEnv({DATABASE_URL: link.url(), LEDGER_TABLE: ledger}),
      )
      workers.push(worker)
      const [, base] = await worker.waitFor(/metrics at (http:\/\/127\.0\.0\.1:\d+)\/metrics/)
      bases.push(base!)
    }
    const registry = async (): Promise<{hostname: string; pool_id: string}[]> =>
      t.query(`select hostname, pool_id from ${t.quoted}.backfill_workers where stopped_at is null order by hostname`)
    await waitUntil('three workers on three hosts', async () => (await registry()).length === 3, 30_000)
    expect((await registry()).map((r) => r.hostname)).to.deep.equal(hosts)
    await waitUntil(
      'each worker to hold two jobs',
      async () =>
        (
          await t.query(
            `select locked_by from ${t.quoted}._private_jobs where locked_at is not null group by locked_by having count(*) = 2`,
          )
        ).length === 3,
      30_000,
    )
    const poolOf = new Map((await registry()).map((r) => [r.hostname, r.pool_id]))

    const alive = new Set([0, 1, 2])
    const leaders = async (): Promise<number[]> => {
      const out: number[] = []
      for (const i of alive) {
        const s = parseSeries(await scrape(`${bases[i]}/metrics`).catch(() => ''))
        if (s.get('backfill_queue_metrics_leader') === 1) out.push(i)
      }
      return out
    }
    await waitUntil('one leader', async () => (await leaders()).length === 1)
    const [first] = await leaders()

    // 1. Kill the leader outright (a host lost with its process).
    workers[first!]!.child.kill('SIGKILL')
    await workers[first!]!.exited
    alive.delete(first!)
    await waitUntil('a new leader', async () => (await leaders()).length === 1, 20_000)
    const [second] = await leaders()
    expect(second).to.not.equal(first)

    // 2. Partition the new leader from the database: connections cut, new ones refused.
    links[second!]!.partition()
    alive.delete(second!)
    const [last] = [...alive]
    await waitUntil('the last worker to lead', async () => (await leaders()).length === 1, 30_000)
    expect(await leaders()).to.deep.equal([last])
    // The partitioned worker notices it cannot record heartbeats and stops itself (fencing).
    const fenced = await workers[second!]!.exited
    expect(fenced.code, workers[second!]!.output).to.equal(1)
    expect(workers[second!]!.output).to.match(/lost contact with the database|lost the database connection/)

    // 3. The survivor frees the dead workers' locks (no presence session, heartbeat past the
    //    30 s bound) and runs their jobs; nothing stays locked by the killed or the fenced.
    const gone = [poolOf.get(hosts[first!]!)!, poolOf.get(hosts[second!]!)!]
    await waitUntil(
      'the dead workers’ locks to be freed',
      async () =>
        (await t.query(`select 1 from ${t.quoted}._private_jobs where locked_by = any($1)`, [gone])).length === 0 &&
        (await t.query(`select 1 from ${t.quoted}._private_job_queues where locked_by = any($1)`, [gone])).length === 0,
      90_000,
    )
    // 4. The leader's queue metrics agree with the database.
    await waitUntil(
      'consistent queue metrics',
      async () => {
        const s = parseSeries(await scrape(`${bases[last!]}/metrics`))
        const jobs = ['ready', 'scheduled', 'running', 'exhausted'].reduce(
          (sum, state) => sum + (s.get(`backfill_jobs{task="work",state="${state}"}`) ?? 0),
          0,
        )
        return (
          jobs === 6 &&
          s.get('backfill_workers{runtime="backfill",state="live"}') === 1 &&
          s.get('backfill_locks{kind="job",liveness="dead"}') === 0 &&
          s.get('backfill_jobs{task="work",state="running"}') === 2
        )
      },
      30_000,
    )
    const dead = await t.query<{hostname: string}>(
      `select hostname from ${t.quoted}.backfill_workers where pool_id = any($1) and stopped_at is null`,
      [gone],
    )
    expect(dead.map((r) => r.hostname).sort()).to.deep.equal([hosts[first!], hosts[second!]].sort())
  })
})
