export function renderCommands(manifest: unknown): string
export function spliceReadme(readme: string, block: string): string
