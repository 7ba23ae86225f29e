#!/usr/bin/env node
// Renders the command reference in README.md (between <!-- commands --> and
// <!-- commandsstop -->) from oclif.manifest.json. Deterministic: no platform or Node
// version in it, so CI can check it is current (`--check`).
import {readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const START = '<!-- commands -->'
const END = '<!-- commandsstop -->'

const text = (s) =>
  (s ?? '')
    .replace(/\s*\n\s*/g, ' ')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
const cell = (s) => text(s).replaceAll('|', '\\|')

export function renderCommands(manifest) {
  const ids = Object.keys(manifest.commands)
    .filter((id) => !manifest.commands[id].hidden)
    .sort()
  const out = []
  for (const key of ids) {
    const cmd = manifest.commands[key]
    const id = key.replaceAll(':', ' ')
    out.push(`### \`backfill ${id}\``, '', text(cmd.summary), '')
    if (cmd.description && cmd.description !== cmd.summary) out.push(text(cmd.description), '')
    const args = Object.values(cmd.args ?? {})
    const usage = [
      `backfill ${id}`,
      ...args.map((a) => (a.required ? a.name.toUpperCase() : `[${a.name.toUpperCase()}]`)),
    ].join(' ')
    out.push('```', `${usage} [FLAGS]`, '```', '')
    const flags = Object.values(cmd.flags).filter((f) => !f.hidden && f.helpGroup !== 'GLOBAL')
    if (args.length > 0) {
      out.push('| argument | description |', '|---|---|')
      for (const a of args) out.push(`| \`${a.name.toUpperCase()}\` | ${cell(a.description)} |`)
      out.push('')
    }
    if (flags.length > 0) {
      out.push('| flag | env | default | description |', '|---|---|---|---|')
      for (const f of flags) {
        const name = `${f.char ? `-${f.char}, ` : ''}--${f.name}${f.type === 'option' ? ` ${f.options ? f.options.join('\\|') : 'VALUE'}` : ''}`
        const def = f.default === undefined || f.default === false ? '' : `\`${String(f.default)}\``
        out.push(`| \`${name}\` | ${f.env ? `\`${f.env}\`` : ''} | ${def} | ${cell(f.summary ?? f.description)} |`)
      }
      out.push('')
    }
    const examples = (cmd.examples ?? []).map((e) => (typeof e === 'string' ? e : e.command))
    if (examples.length > 0) {
      out.push('Examples:', '', '```sh')
      for (const e of examples)
        out.push(e.replaceAll('<%= config.bin %>', 'backfill').replaceAll('<%= command.id %>', id))
      out.push('```', '')
    }
  }
  out.push(
    'Every command also takes `--json`, `-q/--quiet` and `--no-color`; see [Output](#output-and-the-json-contract).',
  )
  return out.join('\n')
}

export function spliceReadme(readme, block) {
  const start = readme.indexOf(START)
  const end = readme.indexOf(END)
  if (start < 0 || end < start) throw new Error(`README.md lacks the ${START} … ${END} markers`)
  return `${readme.slice(0, start + START.length)}\n${block}\n${readme.slice(end)}`
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const manifest = JSON.parse(readFileSync(path.join(root, 'oclif.manifest.json'), 'utf8'))
  const readmePath = path.join(root, 'README.md')
  const readme = readFileSync(readmePath, 'utf8')
  const next = spliceReadme(readme, renderCommands(manifest))
  if (process.argv.includes('--check')) {
    if (next !== readme) {
      console.error('README.md command reference is out of date: run npm run readme')
      process.exit(1)
    }
  } else {
    writeFileSync(readmePath, next)
  }
}
