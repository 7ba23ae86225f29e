import {expect} from 'chai'

import {SharedCache} from '../../src/lib/console/cache.js'
import {Params, parseCliSelection} from '../../src/lib/console/params.js'
import {html, Safe, table} from '../../src/lib/console/html.js'

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

  it('table(): headers with scope, figures aligned, cells escaped, conditional columns, empty state', () => {
    const hostile = '<img src=x onerror=alert(1)>'
    const rows = [{name: hostile, n: 1234}]
    const flat = (s: Safe): string => s.html.replace(/\s*\n\s*/g, '')
    const out = flat(
      table(
        [
          {header: 'Name <1>', rowHeader: true, class: 'mono', cell: (r) => r.name},
          {header: 'N', num: true, wide: true, cell: (r) => r.n.toLocaleString('en-US')},
          false,
          {header: 'Link', cell: () => html`<a href="/x">x</a>`},
        ],
        rows,
        {caption: `Caption ${hostile}`},
      ),
    )
    expect(out).to.equal(
      '<div class="scroll"><table><caption>Caption &lt;img src=x onerror=alert(1)&gt;</caption>' +
        '<thead><tr><th scope="col">Name &lt;1&gt;</th><th scope="col" class="num wide">N</th><th scope="col">Link</th></tr></thead>' +
        '<tbody><tr><th scope="row" class="mono">&lt;img src=x onerror=alert(1)&gt;</th><td class="num wide">1,234</td>' +
        '<td><a href="/x">x</a></td></tr></tbody></table></div>',
    )
    const columns = [{header: 'Name', cell: (r: {name: string}) => r.name}]
    expect(table(columns, [], {empty: `none ${hostile}`}).html).to.equal(
      '<p class="muted">none &lt;img src=x onerror=alert(1)&gt;</p>',
    )
    expect(table(columns, []).html).to.equal('')
  })
})
