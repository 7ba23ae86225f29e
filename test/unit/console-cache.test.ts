import {expect} from 'chai'

import {SharedCache} from '../../src/lib/console/cache.js'
import {Params, parseCliSelection} from '../../src/lib/console/params.js'
import {html, Safe} from '../../src/lib/console/html.js'

describe('console: shared cache, CLI selections, HTML escaping', () => {
  it('concurrent requests share one load; a failure is not kept', async () => {
    const cache = new SharedCache(600_000)
    let calls = 0
    const load = async (): Promise<number> => {
      calls += 1
      await new Promise((r) => setTimeout(r, 20))
      return calls
    }
    const values = await Promise.all(Array.from({length: 20}, () => cache.get('k', load)))
    expect(values).to.deep.equal(Array(20).fill(1))
    expect(cache.loads).to.equal(1)
    const failing = cache.get('bad', () => Promise.reject(new Error('boom')))
    await failing.catch(() => undefined)
    expect(await cache.get('bad', async () => 'ok')).to.equal('ok')
  })

  it('loads again in the next window, and after clear()', async () => {
    const cache = new SharedCache(30)
    let n = 0
    const load = async (): Promise<number> => ++n
    expect(await cache.get('k', load)).to.equal(1)
    await new Promise((r) => setTimeout(r, 70))
    expect(await cache.get('k', load)).to.equal(2)
    cache.clear()
    expect(await cache.get('k', load, 600_000)).to.equal(3)
  })

  it('reads a CLI selection as the shell would split it', () => {
    expect(parseCliSelection(`--task send_email --error "timed out" --state=retrying 42 --queue ''`)).to.deep.equal([
      ['task', 'send_email'],
      ['error', 'timed out'],
      ['state', 'retrying'],
      ['id', '42'],
      ['queue', ''],
    ])
    expect(() => parseCliSelection('--all')).to.throw(/unknown filter --all/)
    expect(() => parseCliSelection('--task')).to.throw(/--task needs a value/)
    const params = new Params([new URLSearchParams('q=--task+a&task=b')])
    expect(params.all('task')).to.deep.equal(['b', 'a'])
  })

  it('escapes every interpolated value; only Safe fragments pass', () => {
    const hostile = `<img src=x onerror=alert(1)>"'&`
    expect(html`<td title="${hostile}">${hostile}</td>`.html).to.equal(
      '<td title="&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;">&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;</td>',
    )
    expect(html`${[hostile, new Safe('<b>ok</b>')]}`.html).to.equal(
      '&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;<b>ok</b>',
    )
  })
})
