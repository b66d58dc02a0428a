// The few lines of test runner the node test scripts share: `test(name, body)` registers an async
// case, `run()` runs them in order, prints "ok NAME" or "FAIL NAME" with the stack, a count, and
// exits non-zero if any failed.
'use strict';

const tests = [];

function test(name, body) { tests.push({ name, body }); }

async function run() {
  let failed = 0;
  for (const { name, body } of tests) {
    try {
      await body();
      console.log(`ok   ${name}`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}\n${e.stack}`);
    }
  }
  console.log(`${tests.length - failed} of ${tests.length} passed`);
  process.exit(failed === 0 ? 0 : 1);
}

module.exports = { test, run };
