#!/usr/bin/env node
// Drives Debian's chromium, headless, through the Chrome DevTools protocol (Node's built-in
// WebSocket: run with --experimental-websocket on Node 20, no npm package), for the console tests.
//
// stdin: one JSON job
//   { "chromium": "/usr/bin/chromium", "base": "http://127.0.0.1:PORT",
//     "headers": { "Authorization": "Bearer …" }, "screenshots": "/abs/dir",
//     "steps": [ { "name": "settlements", "path": "/console/settlements" | "run": "<js that navigates>",
//                  "extract": "<js expression returning JSON>", "screenshot": true } ] }
// A step either loads `path` or evaluates `run` (e.g. changing a filter, which submits the form) and
// waits for the next page load. Then it evaluates `extract` and takes a full-page screenshot.
// stdout: { "steps": [ { "name", "url", "status", "errors": [...], "data": … } ] }
// errors: console.error calls, uncaught exceptions, and browser log entries of level error (failed
// loads, CSP violations) seen while the step ran. On a harness failure: {"error"} on stderr, exit 2.

import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const DEADLINE_MS = 90_000;
// chromium's process group id once started, so that a failure still stops it.
let chromiumGroup = null;
function fail(message) {
  if (chromiumGroup) {
    try {
      process.kill(-chromiumGroup, "SIGKILL");
    } catch {
      // already gone
    }
  }
  process.stderr.write(JSON.stringify({ error: message }) + "\n");
  process.exit(2);
}
setTimeout(() => fail(`browser.mjs did not finish within ${DEADLINE_MS} ms`), DEADLINE_MS).unref();

async function readJob() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

/** Starts chromium with a throwaway profile; resolves with the process and its DevTools port. */
function launch(bin) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "x402-console-chromium-"));
  const child = spawn(bin, [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--no-default-browser-check", "--disable-extensions",
    "--remote-debugging-port=0", `--user-data-dir=${profile}`, "--window-size=1400,1000",
    "about:blank",
  ], { stdio: ["ignore", "ignore", "pipe"], detached: true });
  return new Promise((resolve, reject) => {
    let seen = "";
    child.stderr.on("data", chunk => {
      seen += chunk;
      const m = seen.match(/DevTools listening on ws:\/\/[^:]+:(\d+)\//);
      if (m) resolve({ child, port: Number(m[1]), profile });
    });
    child.on("exit", code => reject(new Error(`chromium exited (${code}): ${seen.slice(-2000)}`)));
  });
}

/** A CDP session on the first page target. */
async function connect(port) {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  const page = targets.find(t => t.type === "page");
  if (!page) throw new Error("chromium has no page target");
  const ws = new WebSocket(page.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("cannot open the DevTools socket"));
  });
  let id = 0;
  const waiting = new Map();
  const listeners = [];
  ws.onmessage = event => {
    const msg = JSON.parse(event.data);
    if (msg.id && waiting.has(msg.id)) {
      const { resolve, reject } = waiting.get(msg.id);
      waiting.delete(msg.id);
      if (msg.error) reject(new Error(`${msg.error.message}`));
      else resolve(msg.result);
    } else if (msg.method) {
      for (const l of listeners) l(msg);
    }
  };
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      id += 1;
      waiting.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  return { send, on: l => listeners.push(l), close: () => ws.close() };
}

async function main() {
  const job = await readJob();
  const { child, port, profile } = await launch(job.chromium ?? "chromium");
  chromiumGroup = child.pid;
  const out = { steps: [] };
  try {
    const cdp = await connect(port);
    let errors = [];
    let loaded = null;
    let status = null;
    cdp.on(msg => {
      if (msg.method === "Runtime.consoleAPICalled" && msg.params.type === "error")
        errors.push(`console.error: ${msg.params.args.map(a => a.value ?? a.description).join(" ")}`);
      if (msg.method === "Runtime.exceptionThrown")
        errors.push(`exception: ${msg.params.exceptionDetails.exception?.description ?? msg.params.exceptionDetails.text}`);
      if (msg.method === "Log.entryAdded" && msg.params.entry.level === "error")
        errors.push(`log: ${msg.params.entry.text} ${msg.params.entry.url ?? ""}`.trim());
      if (msg.method === "Network.responseReceived" && msg.params.type === "Document")
        status = msg.params.response.status;
      if (msg.method === "Page.loadEventFired" && loaded) loaded();
    });
    for (const domain of ["Page", "Runtime", "Log", "Network"]) await cdp.send(`${domain}.enable`);
    if (job.headers) await cdp.send("Network.setExtraHTTPHeaders", { headers: job.headers });
    fs.mkdirSync(job.screenshots, { recursive: true });
    const evaluate = async expression => {
      const r = await cdp.send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
      if (r.exceptionDetails) throw new Error(`evaluating ${expression}: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
      return r.result.value;
    };
    for (const step of job.steps) {
      errors = [];
      status = null;
      const load = new Promise(resolve => (loaded = resolve));
      if (step.path) await cdp.send("Page.navigate", { url: job.base + step.path });
      else await evaluate(step.run);
      await Promise.race([load, new Promise((_, rej) => setTimeout(() => rej(new Error(`${step.name}: no load event`)), 20_000))]);
      loaded = null;
      // Let late console messages (deferred script, subresources) arrive.
      await new Promise(r => setTimeout(r, 300));
      const data = step.extract ? await evaluate(step.extract) : null;
      const url = await evaluate("location.href");
      if (step.screenshot !== false) {
        const shot = await cdp.send("Page.captureScreenshot", { format: "png", captureBeyondViewport: true });
        fs.writeFileSync(path.join(job.screenshots, `${step.name}.png`), Buffer.from(shot.data, "base64"));
      }
      out.steps.push({ name: step.name, url, status, errors: [...errors], data });
    }
    cdp.close();
  } finally {
    // chromium runs in its own process group (detached): its renderer and zygote children write
    // to the profile too, so the whole group is stopped, by its id, before the profile goes.
    const exited = child.exitCode !== null ? Promise.resolve() : new Promise(r => child.once("exit", r));
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // already gone
    }
    await exited;
    try {
      fs.rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    } catch (e) {
      process.stderr.write(`browser.mjs: could not remove ${profile}: ${e}\n`);
    }
  }
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(0);
}

main().catch(e => fail(e instanceof Error ? e.stack ?? e.message : String(e)));
