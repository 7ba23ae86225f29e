import {readFileSync} from 'node:fs'
import path from 'node:path'

import {expect} from 'chai'

import {renderCommands, spliceReadme} from '../../scripts/readme-commands.mjs'
import {ROOT} from '../support/cli.js'
import {sourceManifest} from '../support/in-process.js'

describe('README', () => {
  // The manifest is built from src/: a built oclif.manifest.json may be stale or absent.
  it('has a current command reference (regenerate with npm run readme)', async () => {
    const manifest = await sourceManifest()
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
    expect(
      spliceReadme(readme, renderCommands(manifest)) === readme,
      'README.md command reference is stale: run npm run readme',
    ).to.equal(true)
  })

  it('documents every exit code the library defines', async () => {
    const {EXIT_CODES} = await import('../../src/lib/errors.js')
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
    for (const code of Object.values(EXIT_CODES))
      expect(readme, `exit code ${code}`).to.match(new RegExp(`\\| \`${code}\` \\|`))
  })

  it('every command has a summary, an example, and a summary on every flag', async () => {
    const manifest = (await sourceManifest()) as unknown as {
      commands: Record<
        string,
        {summary?: string; examples?: unknown[]; flags: Record<string, {summary?: string; description?: string}>}
      >
    }
    for (const [id, command] of Object.entries(manifest.commands)) {
      expect(command.summary, `${id} summary`).to.be.a('string').and.not.equal('')
      expect(command.examples?.length ?? 0, `${id} examples`).to.be.greaterThan(0)
      for (const [name, flag] of Object.entries(command.flags))
        expect(flag.summary ?? flag.description, `${id} --${name}`).to.be.a('string')
    }
  })
})
