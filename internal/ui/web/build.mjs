// Builds the explorer into ../dist: one script and one style sheet, each named by the start of
// its content's SHA-256 (so the server may cache them as immutable), and index.html naming
// them. The output depends only on the sources and the pinned packages: building twice gives
// the same bytes, which CI checks against the committed dist.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'dist');
const hashLen = 12; // ui.HashLen

const result = await build({
  absWorkingDir: here,
  entryPoints: ['src/main.jsx'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: 'out',
  entryNames: 'app',
  legalComments: 'eof',
  charset: 'utf8',
  write: false,
  logLevel: 'warning',
});

mkdirSync(out, { recursive: true });
for (const name of readdirSync(out)) {
  rmSync(join(out, name));
}
const names = {};
for (const f of result.outputFiles) {
  const ext = f.path.slice(f.path.lastIndexOf('.'));
  const hash = createHash('sha256').update(f.contents).digest('hex').slice(0, hashLen);
  const name = `app.${hash}${ext}`;
  writeFileSync(join(out, name), f.contents);
  names[ext] = name;
}
// The style sheet carries the id of the one cytoscape would otherwise insert inline, which
// the Content-Security-Policy (style-src 'self') refuses; style.css holds its one rule.
const index = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>twinflow explorer</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" id="__________cytoscape_stylesheet" href="/ui/${names['.css']}">
<script type="module" src="/ui/${names['.js']}"></script>
</head>
<body>
<div id="app"><p class="boot">Loading the twinflow explorer…</p></div>
</body>
</html>
`;
writeFileSync(join(out, 'index.html'), index);
