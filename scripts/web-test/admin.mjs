// Drives the pbx-certd web admin in real headless Chromium (Debian's
// /usr/bin/chromium, through playwright-core; no browser download).
// Started by tests/web_admin.rs against a running `pbx-certd serve`; exits
// non-zero at the first failed step. Install with scripts/web-test/setup.sh.
//
// Environment:
//   PBX_URL          https://127.0.0.1:PORT of the daemon
//   PBX_SETUP_TOKEN  the setup-token=... the daemon logged
//   PBX_PASSWORD     the admin password to set
//   PBX_CERT         PEM file: a server certificate (names PBX_CERT_NAME)
//   PBX_KEY          PEM file: its private key
//   PBX_CERT_NAME    the DNS name in that certificate
//   PBX_SOON_CERT    PEM file: a server certificate for soon.example that
//                    expires in 9 days; PBX_SOON_KEY its key
//   PBX_CA_CERT      PEM file: a company CA ("Web Company CA"); PBX_CA_KEY its key
//   PBX_SCREENSHOTS  directory for screenshots (created)

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium, request } from 'playwright-core';
import { indexedPng } from './png.mjs';

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is not set`);
  return v;
}

const BASE = env('PBX_URL').replace(/\/$/, '');
const TOKEN = env('PBX_SETUP_TOKEN');
const PASSWORD = env('PBX_PASSWORD');
const CERT = fs.readFileSync(env('PBX_CERT'), 'utf8');
const KEY = fs.readFileSync(env('PBX_KEY'), 'utf8');
const CERT_NAME = env('PBX_CERT_NAME');
const SOON_CERT = fs.readFileSync(env('PBX_SOON_CERT'), 'utf8');
const SOON_KEY = fs.readFileSync(env('PBX_SOON_KEY'), 'utf8');
const CA_CERT = fs.readFileSync(env('PBX_CA_CERT'), 'utf8');
const CA_KEY = fs.readFileSync(env('PBX_CA_KEY'), 'utf8');
const SHOTS = env('PBX_SCREENSHOTS');
fs.mkdirSync(SHOTS, { recursive: true });
// A line from the middle of the key: must never come back over HTTP.
const KEY_LINE = KEY.split('\n').filter((l) => l && !l.startsWith('-----'))[0];

let step = 'start';
function check(cond, message) {
  if (!cond) throw new Error(`${step}: ${message}`);
}
function begin(name) {
  step = name;
  console.log(`web-test: ${name}`);
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pbx-certd-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  ignoreHTTPSErrors: true,
  acceptDownloads: true,
  viewport: { width: 1280, height: 900 },
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--ignore-certificate-errors',
  ],
});
// PBX_WEB_TEST_TIMEOUT_MS: scripts/test-qemu.sh raises it, because the daemon
// then runs under qemu-user (password hashing is ~20x slower emulated).
const TIMEOUT = Number(process.env.PBX_WEB_TEST_TIMEOUT_MS || 15000);
context.setDefaultTimeout(TIMEOUT);

let api = null;
let anon = null;
let exitCode = 0;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const shot = (name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  const text = () => page.locator('body').innerText();
  // Phone width (issue 14): at 390x844 and at 1280x900 the page is no
  // wider than the viewport, and the given buttons of the first row sit
  // inside it without scrolling (a table scrolled in its own box would hide
  // them). Ends at the desktop size.
  const fits = async (name, selectors = []) => {
    for (const [width, height] of [[390, 844], [1280, 900]]) {
      await page.setViewportSize({ width, height });
      const [sw, iw, wide] = await page.evaluate(() => {
        const iw = window.innerWidth;
        // The innermost elements reaching past the right edge, to name the culprit.
        const wide = [...document.querySelectorAll('body *')]
          .filter((e) => (e.getBoundingClientRect().right > iw + 0.5
            && ![...e.children].some((c) => c.getBoundingClientRect().right > iw + 0.5))
            || e.scrollWidth > e.clientWidth + 1)
          .slice(0, 3).map((e) => `<${e.tagName.toLowerCase()}> ${e.textContent.slice(0, 40)}`);
        return [document.documentElement.scrollWidth, iw, wide];
      });
      check(sw <= iw, `${name} at ${width} px is ${sw} px wide: ${wide.join(' | ')}`);
      for (const sel of selectors) {
        const box = await page.locator(sel).first().boundingBox();
        check(box && box.x >= 0 && box.x + box.width <= iw, `${name} at ${width} px: ${sel} lies at ${JSON.stringify(box)}`);
      }
    }
  };
  // The README's screenshots (scripts/web-test/screenshots/): what fits in
  // the window at 1280x900 and at 390x844 (a phone), or just the element
  // `sel`; copied from PBX_SCREENSHOTS/readme by hand when the pages change.
  // Made small (png.mjs, under 60 KB) through a blank page's canvas.
  const readmeShot = async (name, sel) => {
    fs.mkdirSync(path.join(SHOTS, 'readme'), { recursive: true });
    const canvas = await context.newPage();
    for (const [width, height] of [[390, 844], [1280, 900]]) {
      await page.setViewportSize({ width, height });
      if (!sel) await page.evaluate(() => window.scrollTo(0, 0));
      const png = sel ? await page.locator(sel).first().screenshot() : await page.screenshot();
      const [w, h, rgba] = await canvas.evaluate(async (b64) => {
        const img = new Image();
        img.src = `data:image/png;base64,${b64}`;
        await img.decode();
        const c = document.createElement('canvas');
        c.width = img.width;
        c.height = img.height;
        const g = c.getContext('2d');
        g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        let bin = '';
        for (let i = 0; i < d.length; i += 0x8000) bin += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
        return [c.width, c.height, btoa(bin)];
      }, png.toString('base64'));
      const small = indexedPng(w, h, Buffer.from(rgba, 'base64'));
      check(small.length < 60 * 1024, `${name} at ${width} px: ${small.length} bytes`);
      fs.writeFileSync(path.join(SHOTS, 'readme', `${name}-${width}.png`), small);
    }
    await canvas.close();
  };
  const noKey = async () => check(!(await page.content()).includes(KEY_LINE), 'the page contains the private key');

  begin('no page without login; security headers');
  let resp = await page.goto(`${BASE}/certs`);
  check(new URL(page.url()).pathname === '/login', `expected /login, got ${page.url()}`);
  const h = resp.headers();
  check((h['content-security-policy'] || '').includes("default-src 'none'"), `CSP: ${h['content-security-policy']}`);
  check((h['content-security-policy'] || '').includes("frame-ancestors 'none'"), 'CSP frame-ancestors');
  check(h['x-frame-options'] === 'DENY', 'X-Frame-Options');
  check(h['x-content-type-options'] === 'nosniff', 'X-Content-Type-Options');
  check(h['referrer-policy'] === 'no-referrer', 'Referrer-Policy');
  check((await text()).includes('Setup token'), 'the login page asks for the setup token');
  await shot('01-login-setup-token');
  await fits('login', ['button[type=submit]']);

  begin('a wrong setup token is refused');
  await page.fill('#password', 'not-the-token');
  resp = await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]).then((r) => r[0]);
  check(resp.status() === 401, `status ${resp.status()}`);
  check((await text()).includes('wrong setup token'), 'error shown');

  begin('the setup token leads to the password form');
  await page.fill('#password', TOKEN);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  check(new URL(page.url()).pathname === '/password', `expected /password, got ${page.url()}`);
  await page.goto(`${BASE}/certs`);
  check(new URL(page.url()).pathname === '/password', 'nothing else before a password is set');
  await shot('02-set-password');
  await fits('password (setup)', ['button[type=submit]']);

  begin('set the admin password');
  await page.fill('#new', PASSWORD);
  await page.fill('#confirm', PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  check(new URL(page.url()).pathname === '/certs', `expected /certs, got ${page.url()}`);
  check((await text()).includes('the admin password is set'), 'confirmation shown');
  const cookies = await context.cookies(BASE);
  const session = cookies.find((c) => c.name === '__Host-pbx-certd');
  check(session, `session cookie missing: ${JSON.stringify(cookies)}`);
  check(session.httpOnly && session.secure && session.sameSite === 'Strict' && session.path === '/',
    `cookie flags: ${JSON.stringify(session)}`);
  await shot('03-certificates-empty');

  begin('log out');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Log out")')]);
  check(new URL(page.url()).pathname === '/login', `expected /login, got ${page.url()}`);
  await page.goto(`${BASE}/certs`);
  check(new URL(page.url()).pathname === '/login', 'logged out means no pages');

  begin('a wrong password is refused');
  check((await text()).includes('Password'), 'the login page asks for the password now');
  await page.fill('#password', 'wrong-password-123');
  resp = await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]).then((r) => r[0]);
  check(resp.status() === 401, `status ${resp.status()}`);
  check((await text()).includes('wrong password'), 'error shown');
  await shot('04-wrong-password');
  await page.fill('#password', TOKEN);
  resp = await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]).then((r) => r[0]);
  check(resp.status() === 401, 'the setup token no longer works');

  begin('log in with the password');
  await page.fill('#password', PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  check(new URL(page.url()).pathname === '/certs', `expected /certs, got ${page.url()}`);

  begin('an import error shows its code');
  await page.goto(`${BASE}/import`);
  await page.fill('#cert', 'this is not a certificate');
  await page.fill('#key', KEY);
  resp = await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]).then((r) => r[0]);
  check(resp.status() === 400, `status ${resp.status()}`);
  check((await text()).includes('[no-certificate]'), 'code shown');
  check((await page.inputValue('#cert')) === 'this is not a certificate', 'the certificate box keeps what was typed');
  check((await page.inputValue('#key')) === '', 'the key box never does');
  await noKey();
  await shot('05-import-error');
  await fits('import (error)', ['button[type=submit]']);

  begin('import a certificate and key through the form');
  await page.goto(`${BASE}/import`);
  await page.fill('#cert', CERT);
  await page.fill('#key', KEY);
  await page.selectOption('#kind', 'auto');
  await shot('06-import-form');
  await fits('import', ['button[type=submit]']);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  check(new URL(page.url()).pathname === '/certs', `expected /certs, got ${page.url()}`);
  check((await text()).includes(`imported server certificate ${CERT_NAME} (expires `), `success shown by name: ${(await text()).slice(0, 300)}`);
  const row = page.locator('tr[data-id]', { hasText: CERT_NAME });
  check((await row.count()) === 1, 'the certificate is listed');
  const certId = await row.getAttribute('data-id');
  check(/^[0-9a-f]{64}$/.test(certId || ''), `row id ${certId}`);
  check((await row.innerText()).includes('days left'), 'days left shown');
  check(await row.locator('button:has-text("Reissue")').isDisabled(), 'Reissue is disabled');
  await noKey();
  await shot('07-certificates-imported');
  await fits('certificates', ['tr[data-id] a:has-text("Download PEM")', 'tr[data-id] a:has-text("Delete")', 'header button:has-text("Log out")']);

  begin('a 1 MiB certificate box and a 1 MiB key box import through the form');
  // Text around PEM blocks is allowed; base64-like padding grows most under
  // form encoding ('+', '/', '=' and CR LF are %-escaped).
  const pad = (pem) => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const lines = [];
    let size = pem.length;
    for (let i = 0; size < 1000 * 1024; i++) {
      let line = '';
      for (let j = 0; j < 64; j++) line += alphabet[(i * 31 + j * 7) % 64];
      lines.push(line);
      size += 66;
    }
    return `${pem}\n${lines.join('\n')}\n`;
  };
  await page.goto(`${BASE}/import`);
  // (Setting the value directly: typing 2 MiB through fill() is too slow.)
  await page.locator('#cert').evaluate((el, v) => { el.value = v; }, pad(CERT));
  await page.locator('#key').evaluate((el, v) => { el.value = v; }, pad(KEY));
  resp = await Promise.all([page.waitForNavigation({ timeout: Math.max(60000, 4 * TIMEOUT) }), page.click('button[type=submit]')]).then((r) => r[0]);
  check(new URL(page.url()).pathname === '/certs', `expected /certs, got ${page.url()} (${resp.status()}): ${(await text()).slice(0, 300)}`);
  check((await text()).includes(`imported server certificate ${CERT_NAME} (expires `), 'the same certificate again');

  begin('download the PEM chain (never the key)');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    row.locator('a:has-text("Download PEM")').click(),
  ]);
  const pem = fs.readFileSync(await download.path(), 'utf8');
  check(pem.includes('-----BEGIN CERTIFICATE-----'), 'a certificate was downloaded');
  check(!pem.includes('PRIVATE KEY') && !pem.includes(KEY_LINE), 'the download holds no key');
  check(download.suggestedFilename() === `${CERT_NAME}.pem`, `file name by the certificate's name: ${download.suggestedFilename()}`);

  begin('a POST without the CSRF token is refused');
  let r = await context.request.post(`${BASE}/certs/delete`, { form: { id: certId }, maxRedirects: 0 });
  check(r.status() === 403, `no token: status ${r.status()}`);
  r = await context.request.post(`${BASE}/certs/delete`, { form: { id: certId, csrf: 'forged' }, maxRedirects: 0 });
  check(r.status() === 403, `forged token: status ${r.status()}`);
  r = await context.request.delete(`${BASE}/api/certs/${certId}`);
  check(r.status() === 403 && (await r.json()).error.code === 'csrf', `API without X-CSRF-Token: ${r.status()}`);
  await page.goto(`${BASE}/certs`);
  check((await page.locator('tr[data-id]', { hasText: CERT_NAME }).count()) === 1, 'still listed');

  begin('delete the certificate: a confirmation names it and what its names get instead');
  await Promise.all([
    page.waitForNavigation(),
    page.locator('tr[data-id]', { hasText: CERT_NAME }).locator('a:has-text("Delete")').click(),
  ]);
  check(new URL(page.url()).pathname === '/certs/delete', `confirmation step: ${page.url()}`);
  check((await text()).includes(CERT_NAME), 'the confirmation names the certificate');
  check((await page.locator('tr[data-asked="no SNI"]').count()) === 1, 'a client without SNI is served it now; the page says what it gets instead');
  await shot('08a-certificate-delete-confirm');
  await fits('certificate delete confirmation', ['button:has-text("Yes, delete")']);
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Yes, delete")')]);
  check((await text()).includes(`certificate ${CERT_NAME} (expires `) && (await text()).includes(' deleted'), `deletion confirmed by name: ${(await text()).slice(0, 300)}`);
  check((await page.locator('tr[data-id]', { hasText: CERT_NAME }).count()) === 0, 'no longer listed');
  await shot('08-certificates-deleted');

  begin('Root CA list: delete one, then reset with confirmation');
  await page.goto(`${BASE}/roots`);
  const rows = page.locator('tbody tr');
  const before = await rows.count();
  check(before > 50, `only ${before} roots`);
  await shot('09-root-ca');
  await fits('root CA', ['tbody tr a[download]', 'tbody tr input[type=checkbox]', 'button:has-text("Delete selected")']);
  check((await text()).includes(`${before} roots stored`), 'the count is the rows stored');
  const names = await page.locator('tbody tr td:nth-child(2)').allInnerTexts();
  const sortedNames = [...names].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
  check(names.slice(0, 20).join('|').toLowerCase() === sortedNames.slice(0, 20).join('|').toLowerCase(), `sorted by name: ${names.slice(0, 5)}`);
  check(!names[0].startsWith('C='), `names, not raw DNs: ${names[0]}`);
  await page.fill('#q', 'ISRG');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Filter")')]);
  check(new URL(page.url()).search === '?q=ISRG', `a GET filter: ${page.url()}`);
  const isrg = await rows.count();
  check(isrg >= 1 && isrg < before, `the filter keeps ISRG's roots only (${isrg})`);
  check((await text()).includes(`${isrg} of ${before} roots stored`), 'says how many match');
  check((await page.locator('tbody tr', { hasText: 'Internet Security Research Group' }).count()) === isrg, 'the organisation column');
  await page.goto(`${BASE}/roots`);
  const firstRoot = await rows.first().locator('td:nth-child(2)').innerText();
  await rows.first().locator('input[type=checkbox]').check();
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Delete selected")')]);
  check(new URL(page.url()).pathname === '/roots/delete', `a confirmation step: ${page.url()}`);
  check((await text()).includes(firstRoot), `the confirmation names ${firstRoot}`);
  check((await rows.count()) === 0 && (await page.locator('li').count()) === 1, 'only the ticked root is listed');
  await fits('root CA delete confirmation', ['button:has-text("Yes, delete")']);
  await shot('09b-root-ca-delete-confirm');
  await page.goto(`${BASE}/roots`);
  check((await rows.count()) === before, 'nothing deleted before the confirmation');
  await rows.first().locator('input[type=checkbox]').check();
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Delete selected")')]);
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Yes, delete")')]);
  check(new URL(page.url()).pathname === '/roots', `back to the list: ${page.url()}`);
  check((await text()).includes(`1 root(s) deleted: ${firstRoot}`), 'deletion confirmed by name');
  await page.goto(`${BASE}/tenants`);
  check((await page.locator('#roots-count').innerText()) === `${before - 1} roots stored`,
    `the Tenants page counts the roots stored: ${await page.locator('#roots-count').innerText()}`);
  await page.goto(`${BASE}/roots`);
  const [rootDownload] = await Promise.all([page.waitForEvent('download'), rows.first().locator('a[download]').click()]);
  const rootFile = rootDownload.suggestedFilename();
  check(/^[A-Za-z0-9._-]+\.pem$/.test(rootFile) && !/^[0-9a-f]{16}\.pem$/.test(rootFile), `a root's download is named by its name: ${rootFile}`);
  check((await rows.count()) === before - 1, 'one root fewer');
  await Promise.all([page.waitForNavigation(), page.click('a:has-text("Reset to the bundled list")')]);
  check(new URL(page.url()).pathname === '/roots/reset', 'confirmation step');
  await shot('10-root-ca-reset-confirm');
  await fits('root CA reset confirmation', ['button:has-text("Yes, reset")']);
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Yes, reset")')]);
  check(new URL(page.url()).pathname === '/roots', `expected /roots, got ${page.url()}`);
  check((await text()).includes('bundled list again'), 'reset confirmed');
  check((await rows.count()) === before, 'every bundled root is back');
  await shot('11-root-ca-after-reset');

  begin('tenants and system settings');
  await page.goto(`${BASE}/tenants`);
  await page.fill('#tname', 'acme');
  await page.fill('#tdns', 'pbx.acme.example\nsip.acme.example');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Add tenant")')]);
  check((await text()).includes('tenant acme added'), 'tenant added');
  check((await page.locator('tr', { hasText: 'sip.acme.example' }).count()) === 1, 'tenant listed');
  await page.fill('#tname', 'acme');
  await page.fill('#tdns', 'other.example');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Add tenant")')]);
  check((await text()).includes('[tenant-exists]'), 'duplicate refused with its code');
  check((await page.inputValue('#tname')) === 'acme' && (await page.inputValue('#tdns')) === 'other.example',
    'the add form keeps what was typed');
  await page.fill('#tname', 'gamma');
  await page.fill('#tdns', 'sip.acme.example\nnew.gamma.example');
  await page.fill('#tip', '192.0.2.99');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Add tenant")')]);
  check((await text()).includes('[dns-name-taken]'), 'a name of another tenant is refused with its code');
  check((await page.inputValue('#tname')) === 'gamma'
    && (await page.inputValue('#tdns')) === 'sip.acme.example\nnew.gamma.example'
    && (await page.inputValue('#tip')) === '192.0.2.99', 'after dns-name-taken the form keeps what was typed');
  await page.fill('#sdns', 'not a name!');
  await page.fill('#smail', 'typed@example.com');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Save")')]);
  check(/\[[a-z-]+\]/.test(await text()) && !(await text()).includes('system settings saved'), 'a bad system name is refused');
  check((await page.inputValue('#sdns')) === 'not a name!' && (await page.inputValue('#smail')) === 'typed@example.com',
    'the system form keeps what was typed');

  begin('tenant Remove: a confirmation names its names and addresses and what they get instead');
  await page.goto(`${BASE}/tenants`);
  await page.fill('#tname', 'beta');
  await page.fill('#tdns', 'beta.example');
  await page.fill('#tip', '192.0.2.77');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Add tenant")')]);
  check((await text()).includes('tenant beta added'), 'tenant beta added');

  begin('tenant edit: DNS names re-checked against the other tenants, the form kept after an error');
  await Promise.all([page.waitForNavigation(),
    page.locator('tr', { hasText: 'sip.acme.example' }).locator('a:has-text("Edit")').click()]);
  check(new URL(page.url()).pathname === '/tenants/edit', `the edit form: ${page.url()}`);
  check((await page.inputValue('#edns')) === 'pbx.acme.example\nsip.acme.example', `its names: ${await page.inputValue('#edns')}`);
  await fits('tenant edit', ['button:has-text("Save tenant")']);
  await page.fill('#edns', 'pbx.acme.example\nsip.acme.example\nbeta.example');
  await page.selectOption('#echallenge', 'dns-01');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Save tenant")')]);
  check((await text()).includes('[dns-name-taken]'), 'beta\'s name is refused with its code');
  check((await page.inputValue('#edns')) === 'pbx.acme.example\nsip.acme.example\nbeta.example'
    && (await page.inputValue('#echallenge')) === 'dns-01', 'the form keeps what was typed');
  await page.fill('#edns', 'pbx.acme.example\nsip.acme.example\nvoip.acme.example');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Save tenant")')]);
  check((await text()).includes('tenant acme saved'), `saved: ${(await text()).slice(0, 300)}`);
  check((await page.locator('tr', { hasText: 'voip.acme.example' }).count()) === 1, 'the new name is listed');
  await page.goto(`${BASE}/tenants/edit?name=acme`);
  check((await page.inputValue('#echallenge')) === 'dns-01', 'the challenge was saved');

  begin('tenant remove: the confirmation');
  await page.goto(`${BASE}/tenants`);
  await Promise.all([page.waitForNavigation(),
    page.locator('tr', { hasText: 'beta.example' }).locator('a:has-text("Remove")').click()]);
  check(new URL(page.url()).pathname === '/tenants/remove', `a confirmation step: ${page.url()}`);
  check((await text()).includes('beta.example') && (await text()).includes('192.0.2.77'), 'its names and addresses');
  const betaRow = page.locator('tr[data-asked="beta.example"]');
  check((await betaRow.count()) === 1, 'what its name gets instead');
  check((await page.locator('tr[data-asked="no SNI at 192.0.2.77"]').count()) === 1, 'what its address gets instead');
  await fits('tenant remove confirmation', ['button:has-text("Yes, remove")']);
  await shot('12a-tenant-remove-confirm');
  await page.goto(`${BASE}/tenants`);
  check((await page.locator('tr', { hasText: 'beta.example' }).count()) === 1, 'nothing removed before the confirmation');
  await Promise.all([page.waitForNavigation(),
    page.locator('tr', { hasText: 'beta.example' }).locator('a:has-text("Remove")').click()]);
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Yes, remove")')]);
  check((await text()).includes('tenant beta removed'), 'removal confirmed');
  check((await page.locator('tr', { hasText: 'beta.example' }).count()) === 0, 'beta gone');
  await page.fill('#sdns', 'pbx.example.com');
  await page.fill('#smail', 'admin@example.com');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Save")')]);
  check((await text()).includes('system settings saved'), 'system saved');
  check((await page.inputValue('#sdns')) === 'pbx.example.com', 'system DNS name shown');
  await shot('12-tenants-system');
  await fits('tenants', ['tbody tr a:has-text("Remove")', 'button:has-text("Add tenant")']);

  begin('who gets which certificate: a tenant name without its own certificate is red');
  await page.goto(`${BASE}/certs`);
  const acmeRow = page.locator('tr[data-asked="pbx.acme.example"]');
  check((await acmeRow.count()) === 1, 'the tenant name has a row');
  check((await acmeRow.getAttribute('class')) === 'err', 'the row is marked');
  check((await acmeRow.innerText()).includes('does not name pbx.acme.example'), `mismatch said: ${await acmeRow.innerText()}`);
  check((await acmeRow.locator('[data-code="name-not-covered"]').count()) === 1, 'the warning has its code');
  const noSni = page.locator('tr[data-asked="no SNI"]');
  check((await noSni.innerText()).includes('default'), `no SNI gets the default: ${await noSni.innerText()}`);
  await shot('12b-served');
  await fits('certificates with the served view', ['tr[data-id] a:has-text("Delete")']);
  await readmeShot('certificates');
  await readmeShot('served', 'table.served');

  begin('accessibility: nav with aria-current, per-row accessible names, fieldset/legend');
  check((await page.locator('nav[aria-label="Main"] a[aria-current="page"]').innerText()) === 'Certificates', 'the current page is marked');
  check((await page.locator('nav a[aria-current]').count()) === 1, 'one current page');
  await page.goto(`${BASE}/roots`);
  const labels = await page.locator('a[aria-label^="Download PEM of "]').evaluateAll((els) => els.map((e) => e.getAttribute('aria-label')));
  check(labels.length > 50 && new Set(labels).size === labels.length, `each root's download has its own name (${labels.length})`);
  await page.goto(`${BASE}/acme`);
  check((await page.locator('fieldset legend', { hasText: 'Directory' }).count()) === 1, 'the directory radio group has a legend');
  check((await page.locator('fieldset input[type=radio][name=preset]').count()) === 3, 'its radios are in the fieldset');

  begin('phone width: the CSR and password pages');
  await page.goto(`${BASE}/import`);
  await readmeShot('import');
  await page.goto(`${BASE}/csr`);
  await fits('CSR', ['button[type=submit]']);
  await page.goto(`${BASE}/password`);
  await fits('password', ['button[type=submit]']);

  begin('STIR/SHAKEN page: the certificate per tenant with its rule and x5u, a signed test call');
  await page.click('header a:has-text("STIR/SHAKEN")');
  const stirRow = page.locator('tr[data-tenant="acme"]');
  check((await stirRow.innerText()).includes('tenant'), `acme's certificate by the tenant rule: ${await stirRow.innerText()}`);
  check((await stirRow.innerText()).includes('https://pbx.example.com/sti/'), 'its x5u on the system name');
  await page.selectOption('#stenant', 'acme');
  await page.fill('#orig', '+1 (202) 555-0100');
  await page.fill('#dest', '12025550199');
  await page.selectOption('#attest', 'A');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Sign")')]);
  const identity = await page.locator('#identity').innerText();
  check(/^[\w-]+\.[\w-]+\.[\w-]+;info=<https:\/\/pbx\.example\.com\/sti\/[0-9a-f]{64}\.pem>;alg=ES256;ppt=shaken$/.test(identity), `Identity header: ${identity}`);
  const payload = JSON.parse(await page.locator('#passport-payload').innerText());
  check(payload.orig.tn === '12025550100' && payload.dest.tn[0] === '12025550199' && payload.attest === 'A', `decoded payload: ${JSON.stringify(payload)}`);
  check(JSON.parse(await page.locator('#passport-header').innerText()).ppt === 'shaken', 'decoded header');
  await page.fill('#orig', 'not a number');
  await page.fill('#dest', '12025550199');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Sign")')]);
  check((await text()).includes('[bad-tn]'), 'a bad number is refused with its code');
  await shot('12c-stir');
  await fits('STIR/SHAKEN', ['button:has-text("Sign")']);

  begin('ACME page: settings and DNS providers');
  await page.click('header a:has-text("ACME")');
  check(page.url().endsWith('/acme'), `nav link: ${page.url()}`);
  check(!(await page.isChecked('#enabled')), 'ACME off by default');
  check((await page.inputValue('#check_interval')) === '6h', `the default interval in hours: ${await page.inputValue('#check_interval')}`);
  const offRow = page.locator('#status tr[data-key="system"]');
  check((await offRow.locator('td:nth-child(3)').innerText()) === 'off', `ACME off: the system name set is "off", not pending: ${await offRow.innerText()}`);
  check(!(await text()).includes('key-only'), 'the account state in plain words');
  check((await page.locator('#account').innerText()).includes('first order'), `account: ${await page.locator('#account').innerText()}`);
  await page.check('#dir-staging');
  await page.fill('#check_interval', '1h30m');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Save")')]);
  check((await page.inputValue('#check_interval')) === '1h30m', `interval read back: ${await page.inputValue('#check_interval')}`);
  await page.fill('#check_interval', '7200');
  await page.selectOption('#challenge', 'dns-01');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Save")')]);
  check((await text()).includes('ACME settings saved'), 'ACME saved');
  check(await page.isChecked('#dir-staging'), 'staging preset kept');
  check((await page.inputValue('#check_interval')) === '2h', 'interval shown in hours');
  check((await page.inputValue('#challenge')) === 'dns-01', 'challenge shown');
  check((await page.locator('#status tr', { hasText: 'pbx.example.com' }).count()) === 1, 'system name in the status table');
  const CF_TOKEN = 'browser-cf-token-0123456789abcdef';
  await page.fill('#cloudflare-name', 'cf-web');
  await page.fill('#cloudflare-zone', 'example.com');
  await page.fill('#cloudflare-token', CF_TOKEN);
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Add Cloudflare provider")')]);
  check((await text()).includes('DNS provider cf-web added'), 'provider added');
  check(!(await page.content()).includes(CF_TOKEN), 'token shown back');
  await shot('14-acme');
  await fits('ACME', ['tr a:has-text("Remove")', 'button:has-text("Add Cloudflare provider")']);
  await readmeShot('acme');
  await Promise.all([page.waitForNavigation(),
    page.locator('tr', { hasText: 'cf-web' }).locator('a:has-text("Remove")').click()]);
  check(new URL(page.url()).pathname === '/acme/dns/remove', `a confirmation first: ${page.url()}`);
  check((await text()).includes('cf-web') && (await text()).includes('example.com'), 'it names the provider and its zone');
  await fits('DNS provider remove', ['button:has-text("Yes, remove")']);
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Yes, remove")')]);
  check((await text()).includes('DNS provider cf-web removed'), 'provider removed');
  check((await page.locator('tr', { hasText: 'cf-web' }).count()) === 0, 'provider gone');

  begin('expiry: red within 14 days wherever it shows, a sort by expiry, timestamps on one line');
  await page.goto(`${BASE}/import`);
  await page.fill('#cert', SOON_CERT);
  await page.fill('#key', SOON_KEY);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  check((await text()).includes('imported server certificate soon.example (expires '), `imported: ${(await text()).slice(0, 300)}`);
  const soonRow = page.locator('tr[data-id]', { hasText: 'soon.example' });
  check((await soonRow.locator('.expired').innerText()) === '9 days left', 'red on Certificates');
  await Promise.all([page.waitForNavigation(), page.click('th a:has-text("Expires")')]);
  check(new URL(page.url()).search === '?sort=expiry', `a GET sort: ${page.url()}`);
  const order = await page.locator('tr[data-id] time').evaluateAll((els) => els.map((e) => e.getAttribute('datetime')));
  check(order.length >= 3 && order.every((t, i) => i === 0 || order[i - 1] <= t), `soonest first: ${order}`);
  check((await page.locator('tr[data-id]').first().innerText()).includes('soon.example'), 'soon.example first');
  for (const [width, height] of [[390, 844], [1280, 900]]) {
    await page.setViewportSize({ width, height });
    const wrapped = await page.locator('time').evaluateAll((els) => els.filter((e) => e.getClientRects().length !== 1).map((e) => e.textContent));
    check(wrapped.length === 0, `timestamps wrap at ${width} px: ${wrapped}`);
  }
  await Promise.all([page.waitForNavigation(), soonRow.locator('a:has-text("Delete")').click()]);
  check((await page.locator('.expired').first().innerText()) === '9 days left', 'red on the delete confirmation');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Yes, delete")')]);
  check((await text()).includes('certificate soon.example (expires '), 'deleted by name');

  begin('ACME page: DNS-01 propagation settings in minutes/seconds');
  await page.goto(`${BASE}/acme`);
  await page.fill('#p-timeout', '3m');
  await page.fill('#p-interval', '10s');
  await page.uncheck('#p-ns');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Save propagation settings")')]);
  check((await text()).includes('propagation settings saved'), 'saved');
  check((await page.inputValue('#p-timeout')) === '3m' && (await page.inputValue('#p-interval')) === '10s', 'read back as typed');
  check(!(await page.isChecked('#p-ns')), 'NS check off');
  await page.fill('#p-timeout', 'soon');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Save propagation settings")')]);
  check((await text()).includes('[bad-setting]'), 'a bad time is refused with its code');
  check((await page.inputValue('#p-timeout')) === '3m', 'nothing changed');

  begin('alerts banner on every page, linking to the cause');
  for (const p of ['/certs', '/roots', '/import', '/tenants', '/acme', '/stir', '/csr', '/password']) {
    await page.goto(`${BASE}${p}`);
    const expiring = page.locator('#alerts [data-code="cert-expiring"]');
    check((await expiring.count()) === 1, `the expiring STIR/SHAKEN certificate on ${p}`);
  }
  await page.goto(`${BASE}/alerts`);
  check((await page.locator('#open-alerts tr[data-code="cert-expiring"]').count()) === 1, 'the Alerts page lists it with its delivery');
  const expiringLink = page.locator('#alerts [data-code="cert-expiring"] a');
  const target = await expiringLink.getAttribute('href');
  check(/^\/certs#cert-[0-9a-f]{64}$/.test(target), `links to its row: ${target}`);
  await expiringLink.click();
  check((await page.locator(`tr${target.slice(target.indexOf('#'))}`).innerText()).includes('pbx.acme.example'), 'the linked row is the certificate');

  begin('ACME page states: a failed order, its Retry button, its error on Certificates');
  // A CA that refuses connections: a loopback port nothing listens on.
  const closedPort = await new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
  await page.goto(`${BASE}/acme`);
  await page.check('#enabled');
  await page.check('#dir-custom');
  await page.fill('#directory', `https://127.0.0.1:${closedPort}/dir`);
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Save")')]);
  check((await text()).includes('ACME settings saved'), 'ACME enabled');
  const systemSet = page.locator('#status tr[data-key="system"]');
  const failures = async () => Number(await systemSet.locator('td:nth-child(6)').innerText());
  let waited = 0;
  while ((await systemSet.locator('td:nth-child(3)').innerText()) !== 'failed') {
    check(waited++ < 120, `no failed state: ${await systemSet.innerText()}`);
    await page.waitForTimeout(500);
    await page.goto(`${BASE}/acme`);
  }
  check((await systemSet.innerText()).includes('[ca-unreachable]'), `the error code: ${await systemSet.innerText()}`);
  const failuresBefore = await failures();
  // The back-off's next attempt (a minute after the first failure).
  const scheduled = Date.parse(await systemSet.locator('td:nth-child(8)').innerText());
  check(!Number.isNaN(scheduled), `a scheduled next attempt: ${await systemSet.innerText()}`);
  await Promise.all([page.waitForNavigation(), systemSet.locator('button:has-text("Retry")').click()]);
  check((await text()).includes('order for pbx.example.com queued'), `retry acknowledged: ${(await text()).slice(0, 400)}`);
  // A new attempt (bounded wait for it) that the back-off alone would not
  // have made yet: it ran before the scheduled time.
  waited = 0;
  while ((await failures()) <= failuresBefore) {
    check(waited++ < 120, `the retry made no new attempt (${failuresBefore} failures): ${await systemSet.innerText()}`);
    await page.waitForTimeout(500);
    await page.goto(`${BASE}/acme`);
  }
  const attempted = Date.parse(await systemSet.locator('td:nth-child(7)').innerText());
  check(attempted < scheduled, `the retry ran at once, not at the back-off's time: ${await systemSet.innerText()}`);
  await shot('14b-acme-failed');
  await page.goto(`${BASE}/certs`);
  const failing = page.locator('#acme-failures [data-key="system"]');
  check((await failing.innerText()).includes('[ca-unreachable]'), `the failure on Certificates: ${await failing.innerText()}`);
  check((await failing.locator('button:has-text("Retry")').count()) === 1, 'a Retry button there too');
  const selfSigned = page.locator('tr[data-id]', { hasText: 'self-signed' });
  check((await selfSigned.count()) === 1, 'the self-signed certificate is listed');
  check(await selfSigned.locator('button:has-text("Reissue")').isDisabled(), 'Reissue is disabled on a certificate ACME does not manage');
  await Promise.all([page.waitForNavigation(), failing.locator('button:has-text("Retry")').click()]);
  check(new URL(page.url()).pathname === '/certs', `back on Certificates: ${page.url()}`);
  check((await text()).includes('order for pbx.example.com queued'), 'retry from Certificates acknowledged');
  // The third failure in a row opens a renewal-failing alert (default
  // threshold 3): the banner links to the name set's row.
  const failingAlert = page.locator('#alerts [data-code="renewal-failing"] a');
  waited = 0;
  while ((await failingAlert.count()) === 0) {
    check(waited++ < 120, 'no renewal-failing alert in the banner');
    await page.waitForTimeout(500);
    await page.goto(`${BASE}/certs`);
  }
  check((await failingAlert.getAttribute('href')) === '/acme#acme-system', `banner link: ${await failingAlert.getAttribute('href')}`);
  await Promise.all([page.waitForNavigation(), failingAlert.click()]);
  check((await page.locator('tr#acme-system').count()) === 1, 'the linked name set row');
  await page.goto(`${BASE}/acme`);
  await page.uncheck('#enabled');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Save")')]);
  check((await systemSet.locator('td:nth-child(3)').innerText()) === 'off', 'off again');

  begin('CSR page: subject fields, a named country error, pending keys with a confirmed delete');
  await page.goto(`${BASE}/csr`);
  check((await page.locator('#key_type option[value=rsa2048]').innerText()) === 'RSA 2048', 'the RSA label says what the build does');
  check(!(await text()).includes('not available'), 'no "not available" label');
  await page.fill('#names', 'csr-web.example');
  await page.fill('#csr-o', 'Example GmbH');
  await page.fill('#csr-l', 'Berlin');
  await page.fill('#csr-c', '1X');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Make key and download CSR")')]);
  check((await text()).includes('[bad-country]'), `a country that is not two letters: ${(await text()).slice(0, 300)}`);
  check((await page.inputValue('#csr-o')) === 'Example GmbH' && (await page.inputValue('#names')) === 'csr-web.example', 'the form keeps what was typed');
  await page.fill('#csr-c', 'DE');
  const [csrDownload] = await Promise.all([
    page.waitForEvent('download'),
    page.click('button:has-text("Make key and download CSR")'),
  ]);
  check(csrDownload.suggestedFilename() === 'csr-web.example.csr', `CSR file name ${csrDownload.suggestedFilename()}`);
  check(fs.readFileSync(await csrDownload.path(), 'utf8').includes('BEGIN CERTIFICATE REQUEST'), 'a CSR was downloaded');
  await page.goto(`${BASE}/csr`);
  const pendingRow = page.locator('#pending-csr tr', { hasText: 'csr-web.example' });
  check((await pendingRow.count()) === 1, 'the key waiting for its certificate is listed');
  check((await pendingRow.innerText()).includes('p256'), `its key type: ${await pendingRow.innerText()}`);
  await Promise.all([page.waitForNavigation(), pendingRow.locator('a:has-text("Delete")').click()]);
  check(new URL(page.url()).pathname === '/csr/delete', `confirmation step: ${page.url()}`);
  check((await text()).includes('csr-web.example'), 'the confirmation names the CSR');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Yes, delete")')]);
  check((await text()).includes('CSR key for csr-web.example deleted'), `deleted: ${(await text()).slice(0, 300)}`);
  check((await page.locator('#pending-csr tr', { hasText: 'csr-web.example' }).count()) === 0, 'no longer listed');

  begin('the JSON API with HTTP Basic');
  anon = await request.newContext({ ignoreHTTPSErrors: true });
  r = await anon.get(`${BASE}/api/certs`);
  check(r.status() === 401 && (await r.json()).error.code === 'unauthenticated', `anonymous: ${r.status()}`);
  const basic = 'Basic ' + Buffer.from(`admin:${PASSWORD}`).toString('base64');
  api = await request.newContext({ ignoreHTTPSErrors: true, extraHTTPHeaders: { Authorization: basic } });
  r = await api.post(`${BASE}/api/import`, { data: { cert: CERT, key: KEY, kind: 'auto' } });
  check(r.status() === 200, `import: ${r.status()} ${await r.text()}`);
  const imported = await r.json();
  check(imported.id === certId && imported.kind === 'server' && imported.names.includes(CERT_NAME)
    && Array.isArray(imported.warnings), `import shape: ${JSON.stringify(imported)}`);
  r = await api.get(`${BASE}/api/certs`);
  const list = await r.json();
  // (the STIR/SHAKEN certificate the STIR step signs with is an upload too)
  const uploaded = list.filter((c) => c.source === 'upload' && c.kind !== 'stir-shaken');
  check(list.filter((c) => c.kind === 'stir-shaken').length === 1, 'the STIR/SHAKEN certificate is listed');
  check(uploaded.length === 1 && uploaded[0].id === certId && uploaded[0].key_type === 'p256',
    `certs: ${JSON.stringify(list)}`);
  check(list.every((c) => ['upload', 'self-signed'].includes(c.source)), `sources: ${JSON.stringify(list)}`);
  check(!JSON.stringify(list).includes(KEY_LINE), 'no key in the API');
  r = await api.get(`${BASE}/api/resolve?sni=${CERT_NAME.toUpperCase()}`);
  const res = await r.json();
  check(res.id === certId && res.match === 'server', `resolve: ${JSON.stringify(res)}`);
  r = await api.post(`${BASE}/api/import`, { data: { cert: 'junk' } });
  check(r.status() === 400 && (await r.json()).error.code === 'no-certificate', `bad import: ${r.status()}`);
  r = await api.delete(`${BASE}/api/tenants/acme`);
  check(r.status() === 200, `tenant remove: ${r.status()}`);
  r = await api.delete(`${BASE}/api/tenants/acme`);
  check(r.status() === 404 && (await r.json()).error.code === 'no-such-tenant', `again: ${r.status()}`);
  r = await api.get(`${BASE}/api/certs/${certId.slice(0, 8)}`);
  const shown = await r.json();
  check(shown.pem.includes('BEGIN CERTIFICATE') && !shown.pem.includes('PRIVATE KEY'), 'cert show');
  await page.goto(`${BASE}/certs`);
  check((await page.locator('tr[data-id]', { hasText: CERT_NAME }).count()) === 1, 'the API import shows on the page');
  await shot('13-certificates-after-api');

  begin('local CA page: create it, issue for a tenant (server, then also client), download the root');
  await page.goto(`${BASE}/tenants`);
  await page.fill('#tname', 'beta');
  await page.fill('#tdns', 'pbx.beta.example');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Add tenant")')]);
  check((await text()).includes('tenant beta added'), 'tenant beta added');
  await Promise.all([page.waitForNavigation(), page.click('a:has-text("Local CA page")')]);
  check(new URL(page.url()).pathname === '/ca', `the local CA page: ${page.url()}`);
  check(!(await text()).includes('pbx-certd ca'), 'no CLI text on the page');
  r = await context.request.get(`${BASE}/ca.pem`);
  check(r.status() === 404, `no root before init: ${r.status()}`);
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Create the local CA")')]);
  check((await text()).includes('local CA created'), 'created');
  const [caDownload] = await Promise.all([
    page.waitForEvent('download'),
    page.click('a:has-text("Download the root (PEM)")'),
  ]);
  const rootPem = fs.readFileSync(await caDownload.path(), 'utf8');
  check(rootPem.includes('BEGIN CERTIFICATE') && !rootPem.includes('PRIVATE KEY'), 'the root, never its key');
  await page.selectOption('#ca-tenant', 'beta');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Issue certificate")')]);
  check((await text()).includes('issued a certificate for pbx.beta.example (server-auth)'), `server certificate: ${(await text()).slice(0, 300)}`);
  await page.selectOption('#ca-tenant', 'beta');
  await page.check('#ca-client');
  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Issue certificate")')]);
  check((await text()).includes('issued a certificate for pbx.beta.example (server-auth, client-auth)'), `client too: ${(await text()).slice(0, 300)}`);
  r = await api.get(`${BASE}/api/certs`);
  const issued = (await r.json()).filter((c) => c.source === 'local-ca' && c.tenant === 'beta');
  check(issued.length === 2 && issued.some((c) => c.eku.includes('client-auth')), `issued: ${JSON.stringify(issued)}`);
  await shot('15-local-ca');

  begin('import: a CA with its key is refused as a certificate; kind "local CA" (replace) makes it the local CA');
  await page.goto(`${BASE}/import`);
  await page.fill('#cert', CA_CERT);
  await page.fill('#key', CA_KEY);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  check((await text()).includes('[ca-with-key]') && (await text()).includes('--kind ca'), `refused with its code: ${(await text()).slice(0, 400)}`);
  await page.fill('#key', CA_KEY);
  await page.selectOption('#kind', 'ca');
  // The local CA page's step made one already: replace it.
  await page.check('#replace');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  check(new URL(page.url()).pathname === '/tenants', `to the Tenants page and its local CA: ${page.url()}`);
  check((await text()).includes('imported ca certificate') && (await text()).includes('Web Company CA'), `the local CA shown: ${(await text()).slice(0, 300)}`);

  begin('page weight: every page but Root CA under 16 KB');
  const weights = [];
  for (const p of ['/certs', '/import', '/tenants', '/acme', '/stir', '/csr', '/password', '/ca', '/alerts']) {
    r = await context.request.get(`${BASE}${p}`);
    check(r.status() === 200, `${p}: ${r.status()}`);
    const bytes = (await r.body()).length;
    weights.push(`${p} ${bytes}`);
    check(bytes < 16 * 1024, `${p} weighs ${bytes} bytes`);
  }
  console.log(`web-test: page bytes: ${weights.join(', ')}`);
  console.log('web-test: all steps passed');
} catch (e) {
  console.error(`web-test: FAILED: ${e.stack || e}`);
  exitCode = 1;
} finally {
  if (api) await api.dispose();
  if (anon) await anon.dispose();
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(exitCode);
