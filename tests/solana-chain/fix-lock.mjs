#!/usr/bin/env node
// The npm registry reachable from this workplace serves only litesvm's linux-x64-gnu binary
// package; the other five platform packages of litesvm 1.5.0 answer 404, so `npm install` leaves
// them out of package-lock.json and `npm ci` then refuses the lock ("Missing: litesvm-darwin-arm64@
// from lock file"). This adds lock entries for them (platform-gated optional packages, skipped on
// linux-x64-gnu without being fetched). Run after any `npm install`:  npm run relock
import { readFileSync, writeFileSync } from "node:fs";

const VERSION = "1.5.0";
const PLATFORMS = {
  "darwin-arm64": { cpu: ["arm64"], os: ["darwin"] },
  "darwin-x64": { cpu: ["x64"], os: ["darwin"] },
  "linux-arm64-gnu": { cpu: ["arm64"], libc: ["glibc"], os: ["linux"] },
  "linux-arm64-musl": { cpu: ["arm64"], libc: ["musl"], os: ["linux"] },
  "linux-x64-gnu": null, // present in the registry: keep npm's own entry
  "linux-x64-musl": { cpu: ["x64"], libc: ["musl"], os: ["linux"] },
};
const path = new URL("./package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(path, "utf8"));
const pkgs = { ...lock.packages };
let added = 0;
for (const [plat, f] of Object.entries(PLATFORMS)) {
  const key = `node_modules/litesvm-${plat}`;
  if (f === null || pkgs[key]) continue;
  const { cpu, libc, os } = f;
  pkgs[key] = { version: VERSION, cpu, ...(libc ? { libc } : {}), license: "MIT", optional: true, os, engines: { node: ">= 20" } };
  added++;
}
const order = ([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : a > b ? 1 : 0);
lock.packages = Object.fromEntries(Object.entries(pkgs).sort(order));
writeFileSync(path, JSON.stringify(lock, null, 2) + "\n");
console.log(`fix-lock: added ${added} litesvm platform entries`);
