// Hostile stored values render inert in real headless Chromium (Debian's
// /usr/bin/chromium through playwright-core). Started by
// tests/html_escape.rs against a running `pbx-certd serve` whose store holds
// markup in certificate subjects, settings and DNS providers; exits non-zero
// at the first failed check.
//
// The context bypasses the page's CSP on purpose: the CSP alone would stop an
// injected inline handler, and this test must see the escaping itself hold
// (an injected `<img src=x onerror=alert(1)>` would fire a dialog here).
//
// Environment:
//   PBX_URL       https://127.0.0.1:PORT of the daemon
//   PBX_PASSWORD  the admin password (already set)
//   PBX_TEXTS     JSON {path: [text that must be visible as text, ...]}
//   PBX_VALUES    JSON [[path, selector, value the input must hold], ...]
//   PBX_KIND      a hostile import kind, echoed in the error line

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is not set`);
  return v;
}

const BASE = env('PBX_URL').replace(/\/$/, '');
const PASSWORD = env('PBX_PASSWORD');
const TEXTS = JSON.parse(env('PBX_TEXTS'));
const VALUES = JSON.parse(env('PBX_VALUES'));
const KIND = env('PBX_KIND');

let step = 'start';
function check(cond, message) {
  if (!cond) throw new Error(`${step}: ${message}`);
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pbx-certd-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  ignoreHTTPSErrors: true,
  bypassCSP: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--ignore-certificate-errors'],
});
context.setDefaultTimeout(Number(process.env.PBX_WEB_TEST_TIMEOUT_MS || 15000));

const dialogs = [];
let exitCode = 0;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('dialog', async (d) => {
    dialogs.push(`${step}: ${d.type()} ${d.message()}`);
    await d.dismiss();
  });
  // Inert means: no element came out of a value, no dialog, the text shows.
  const inert = async (texts) => {
    // (`goto` waits for `load`, which waits for images, so an injected
    // `onerror` has run by now.)
    check(dialogs.length === 0, `dialogs: ${dialogs.join(' | ')}`);
    check((await page.locator('img, script, iframe, object, embed').count()) === 0,
      'an element was injected');
    const body = await page.locator('body').innerText();
    for (const t of texts) check(body.includes(t), `not visible as text: ${t}`);
  };

  step = 'log in';
  await page.goto(`${BASE}/login`);
  await page.fill('#password', PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  check(new URL(page.url()).pathname === '/certs', `expected /certs, got ${page.url()}`);

  for (const [p, texts] of Object.entries(TEXTS)) {
    step = `page ${p}`;
    console.log(`escape-test: ${step}`);
    const resp = await page.goto(`${BASE}${p}`);
    check(resp.status() === 200, `status ${resp.status()}`);
    await inert(texts);
  }
  for (const [p, selector, value] of VALUES) {
    step = `input ${selector} on ${p}`;
    await page.goto(`${BASE}${p}`);
    check((await page.locator(selector).inputValue()) === value, 'the input does not hold the value as is');
  }

  step = 'an echoed form value';
  console.log(`escape-test: ${step}`);
  await page.goto(`${BASE}/import`);
  await page.fill('#cert', 'x');
  await page.locator('#kind option').first().evaluate((o, v) => { o.value = v; }, KIND);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  // The refusal quotes the word as Rust's `{:?}` does (inner quotes escaped).
  await inert([`unknown kind "${KIND.replaceAll('"', '\\"')}"`]);
  console.log('escape-test: all checks passed');
} catch (e) {
  console.error(`escape-test: FAILED: ${e.stack || e}`);
  exitCode = 1;
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(exitCode);
