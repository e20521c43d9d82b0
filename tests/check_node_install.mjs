// Usage: node tests/check_node_install.mjs DIR
// Exit 0 when DIR/node_modules holds exactly what DIR/package-lock.json pins, else 1 with the
// reason. Used by scripts/test.sh (to decide whether to run `npm ci --prefix DIR`) and by the
// Rust tests, for tests/sdk/node and tests/ui.
import { readFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = resolve(process.argv[2] ?? '.');
const root = fileURLToPath(new URL('..', import.meta.url));
const name = relative(root, dir) || '.';
const read = (p) => JSON.parse(readFileSync(resolve(dir, p), 'utf8'));

let want;
let have;
try {
  want = read('package-lock.json').packages;
} catch (err) {
  console.error(`${name}/package-lock.json is unreadable: ${err.message}`);
  process.exit(1);
}
try {
  have = read('node_modules/.package-lock.json').packages;
} catch {
  console.error(`${name}/node_modules is missing`);
  process.exit(1);
}
for (const [path, pkg] of Object.entries(want)) {
  if (path === '' || pkg.dev || pkg.optional) continue;
  const got = have[path]?.version;
  if (got !== pkg.version) {
    console.error(`${name}/node_modules is stale: ${path} is ${got ?? 'missing'}, package-lock.json pins ${pkg.version}`);
    process.exit(1);
  }
}
