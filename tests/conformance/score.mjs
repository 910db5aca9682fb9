// Score a cache-tests (github.com/http-tests/cache-tests) JSON result file
// using the suite's own result logic, for a proxy / shared cache.
//
// This file contains no code from the suite: it imports the suite's
// test-engine/lib/results.mjs and tests/index.mjs from a checkout at run time.
//
// usage: node score.mjs <suite-dir> <results.json> [--list] [--json]
import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const args = process.argv.slice(2)
const flags = new Set(args.filter(a => a.startsWith('--')))
const [suiteDir, resultsFile] = args.filter(a => !a.startsWith('--'))
if (!suiteDir || !resultsFile) {
  console.error('usage: node score.mjs <suite-dir> <results.json> [--list] [--json]')
  process.exit(2)
}
const load = p => import(pathToFileURL(path.resolve(suiteDir, p)).href)
const { determineTestResult, resultTypes } = await load('test-engine/lib/results.mjs')
const testSuites = (await load('tests/index.mjs')).default
const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))

// the set of tests the CLI runs for a (non-browser) cache: see runner.mjs
const typeName = new Map(Object.entries(resultTypes).map(([k, v]) => [v, k]))
const counts = {
  required: { total: 0, pass: 0 },
  optimal: { total: 0, pass: 0 },
  check: { total: 0, yes: 0 }
}
const byType = {}
const failing = []
for (const suite of testSuites) {
  for (const test of suite.tests) {
    if (test.browser_only === true) continue
    const kind = test.kind === undefined ? 'required' : test.kind
    const type = typeName.get(determineTestResult(testSuites, test.id, results))
    byType[type] = (byType[type] || 0) + 1
    counts[kind].total++
    if (type === 'pass') counts[kind].pass++
    if (type === 'yes') counts[kind].yes++
    if (kind === 'required' && type !== 'pass') {
      const raw = results[test.id]
      failing.push({ id: test.id, suite: suite.id, result: type, detail: Array.isArray(raw) ? raw.join(': ') : raw })
    }
  }
}

if (flags.has('--json')) {
  console.log(JSON.stringify({ counts, byType, failing }, null, 2))
} else {
  if (flags.has('--list')) {
    for (const f of failing) console.log(`${f.result.padEnd(16)} ${f.id}  ${f.detail === undefined ? '' : f.detail}`)
  }
  console.log(`results by type: ${JSON.stringify(byType)}`)
  console.log(`optional (optimal) passes: ${counts.optimal.pass} of ${counts.optimal.total}`)
  console.log(`checks answered yes: ${counts.check.yes} of ${counts.check.total}`)
  console.log(`required passes: ${counts.required.pass} of ${counts.required.total}`)
}
