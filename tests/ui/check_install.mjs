// Exit 0 when node_modules holds exactly what package-lock.json pins, else 1 with the reason.
// Used by scripts/test.sh (to decide whether to run `npm ci`) and by the Rust tests.
import { readFileSync } from 'node:fs';

const here = (p) => new URL(p, import.meta.url);
const read = (p) => JSON.parse(readFileSync(here(p), 'utf8'));

let want;
let have;
try {
  want = read('./package-lock.json').packages;
} catch (err) {
  console.error(`tests/ui/package-lock.json is unreadable: ${err.message}`);
  process.exit(1);
}
try {
  have = read('./node_modules/.package-lock.json').packages;
} catch {
  console.error('tests/ui/node_modules is missing');
  process.exit(1);
}
for (const [path, pkg] of Object.entries(want)) {
  if (path === '' || pkg.dev || pkg.optional) continue;
  const got = have[path]?.version;
  if (got !== pkg.version) {
    console.error(`tests/ui/node_modules is stale: ${path} is ${got ?? 'missing'}, package-lock.json pins ${pkg.version}`);
    process.exit(1);
  }
}
