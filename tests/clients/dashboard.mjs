// Drives the dashboard in a real headless Chromium (Debian's /usr/bin/chromium, through npm
// playwright-core) for testkit/src/browser.rs. Reads one JSON command per stdin line, answers
// one JSON line per command on stdout: {ok: true, value} or {ok: false, error}.
//
//   node dashboard.mjs OUTPUT_DIR
//
// Commands (each may name a page; "main" by default):
//   {cmd: "init", js}             a script every page runs before its own (for pages opened later)
//   {cmd: "open", url}            a new page (or the named one) goes to url
//   {cmd: "goto", url}            the page navigates to url
//   {cmd: "fill", selector, value}
//   {cmd: "click", selector}
//   {cmd: "wait", js, timeoutMs}  until the expression is truthy in the page; answers its value
//   {cmd: "eval", js}             the expression's value
//   {cmd: "screenshot", path, fullPage}  (fullPage: true unless false)
//   {cmd: "close"}                closes the browser and exits
// Every page starts with window.__xss = false; page errors and console errors are collected in
// window.__errors (read them with eval). If stdin closes without "close" (the test failed),
// every page is saved as a screenshot in OUTPUT_DIR first.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

// process.exit() drops whatever stdout has not yet handed to the pipe (writes to a pipe are
// asynchronous in Node): exit once what was written has been flushed.
function exitFlushed(code) {
  process.stdout.write("", () => process.exit(code));
}

const outDir = process.argv[2] || '.';
const executablePath = process.env.SWARMQ_CHROMIUM || '/usr/bin/chromium';
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
await context.addInitScript(() => {
  window.__xss = false;
  window.__errors = [];
  window.addEventListener('error', (e) => window.__errors.push(String(e.message)));
});
const pages = new Map();
const consoleErrors = [];

async function page(name) {
  let p = pages.get(name);
  if (!p) {
    p = await context.newPage();
    // The browser logs every 4xx/5xx answer ("Failed to load resource"); those are the API
    // doing its job (a refused prompt, a 401 before login), not errors of the page.
    p.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) consoleErrors.push(`${name}: ${m.text()}`);
    });
    p.on('dialog', (d) => { consoleErrors.push(`${name}: dialog ${d.message()}`); d.dismiss(); });
    pages.set(name, p);
  }
  return p;
}

async function run(c) {
  if (c.cmd === 'init') return void (await context.addInitScript(c.js));
  const p = await page(c.page || 'main');
  const timeout = c.timeoutMs || 90000;
  switch (c.cmd) {
    case 'open':
    case 'goto':
      await p.goto(c.url, { waitUntil: 'load', timeout });
      return null;
    case 'fill':
      await p.fill(c.selector, c.value, { timeout });
      return null;
    case 'click':
      await p.click(c.selector, { timeout });
      return null;
    case 'wait':
      return await poll(p, c.js, timeout);
    case 'eval':
      return await p.evaluate(c.js);
    case 'consoleErrors':
      return consoleErrors;
    case 'screenshot':
      await p.screenshot({ path: c.path, fullPage: c.fullPage !== false });
      return null;
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}

// Evaluates `js` every 50 ms until it is truthy. (Playwright's waitForFunction evaluates with
// eval() inside the page, which the dashboard's CSP rightly forbids; evaluate() does not.)
async function poll(p, js, timeout) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await p.evaluate(js);
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for: ${js} (last value ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function screenshots() {
  mkdirSync(outDir, { recursive: true });
  for (const [name, p] of pages) {
    const path = join(outDir, `failure-${name}.png`);
    await p.screenshot({ path, fullPage: true }).catch(() => {});
    process.stderr.write(`dashboard.mjs: saved ${path}\n`);
  }
}

const input = createInterface({ input: process.stdin });
let closed = false;
for await (const line of input) {
  if (!line.trim()) continue;
  const c = JSON.parse(line);
  if (c.cmd === 'close') {
    closed = true;
    break;
  }
  try {
    const value = await run(c);
    process.stdout.write(`${JSON.stringify({ ok: true, value: value ?? null })}\n`);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: String(e.message || e) })}\n`);
  }
}
if (!closed) await screenshots();
await browser.close();
exitFlushed(0);
