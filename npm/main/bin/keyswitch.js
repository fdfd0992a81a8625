#!/usr/bin/env node
// keyswitch's npm launcher. It runs the native binary from the platform package that npm
// installed for this machine: one optional dependency per platform, picked by npm through the
// package's `os` and `cpu` fields, as Claude Code and esbuild ship theirs. No install script and
// no network: the binary is already in node_modules.
// The binary gets this process's stdin, stdout and stderr (`get` prints the key on stdout), and
// its exit status, or the signal it died of, is passed on unchanged.
"use strict";

const { spawnSync } = require("child_process");
const main = require("../package.json");

// The platform packages are named after the main one: `<main>-<platform>-<arch>`.
const pkg = `${main.name}-${process.platform}-${process.arch}`;
if (!(pkg in (main.optionalDependencies || {}))) {
  console.error(
    `keyswitch: no prebuilt binary for ${process.platform}-${process.arch}: build it from source with Rust (cargo install --locked keyswitch)`
  );
  process.exit(1);
}

const exe = process.platform === "win32" ? "keyswitch.exe" : "keyswitch";
let binary;
try {
  binary = require.resolve(`${pkg}/bin/${exe}`);
} catch {
  console.error(
    `keyswitch: the package ${pkg} is missing (were optional dependencies skipped?): reinstall with npm install -g --include=optional ${main.name}`
  );
  process.exit(1);
}

// KEYSWITCH_LAUNCHER tells the binary that the `keyswitch` on PATH is this launcher, so `doctor`
// and the advice keyswitch prints treat it as keyswitch itself.
const result = spawnSync(binary, process.argv.slice(2), {
  stdio: "inherit",
  env: { ...process.env, KEYSWITCH_LAUNCHER: __filename },
});
if (result.error) {
  console.error(`keyswitch: cannot run ${binary}: ${result.error.message}`);
  process.exit(1);
}
if (result.signal) {
  // Die of the same signal, so the caller sees what it would have seen from the binary itself.
  // Node ignores some signals (SIGPIPE): then exit as a shell reports a signal death.
  process.kill(process.pid, result.signal);
  process.exit(128 + (require("os").constants.signals[result.signal] || 0));
}
process.exit(result.status ?? 1);
