// Drives the demo page (tools/web.sh test) in Debian's Chromium through playwright-core: draws a
// digit with the mouse, checks what each model variant predicts on WebGPU, switches to the CPU
// backend, and checks the page's fallback when the browser has no WebGPU. Prints the latencies
// the page measured and saves a screenshot. Exits non-zero on any failure.
//
// Env: PLAYWRIGHT_DIR (where playwright-core is installed), DEMO_URL, SCREENSHOT (optional),
// CI=true (a page without WebGPU is then a failure, not a note).
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.PLAYWRIGHT_DIR}/`);
const { chromium } = require('playwright-core');
const url = process.env.DEMO_URL;
const strict = process.env.CI === 'true';
const VARIANTS = ['f32', 'int8', 'int4'];

function check(ok, what) {
  if (!ok) throw new Error(`demo page: ${what}`);
}

async function state(page, want, timeout = 180000) {
  await page.waitForFunction(
    (w) => w.includes(document.body.dataset.state),
    want,
    { timeout },
  );
  return page.evaluate(() => document.body.dataset.state);
}

// A "1": one vertical stroke, drawn with mouse events as a user would.
async function drawOne(page) {
  const box = await page.locator('#pad').boundingBox();
  const x = box.x + box.width * 0.5;
  await page.mouse.move(x + 6, box.y + box.height * 0.15);
  await page.mouse.down();
  for (let i = 1; i <= 12; i++) {
    await page.mouse.move(x + 6 - i * 0.5, box.y + box.height * (0.15 + 0.7 * i / 12));
  }
  await page.mouse.up();
}

async function results(page) {
  return page.evaluate((vs) => Object.fromEntries(vs.map((v) => {
    const r = document.getElementById(`row-${v}`);
    return [v, { pred: Number(r.dataset.pred), ms: Number(r.dataset.ms) }];
  })), VARIANTS);
}

// Types a line into the imported recogniser's box and checks that each variant reads it back
// (spaces aside: the model may merge or drop a space). A page without the model file is a
// note, and a failure under CI.
async function recogniseLine(page, text, where) {
  await page.fill('#ocr-text', text);
  await page.click('#ocr-run');
  await page.waitForFunction(
    () => ['done', 'missing', 'error'].includes(document.getElementById('ocr').dataset.state),
    null,
    { timeout: 900000 },
  );
  const st = await page.evaluate(() => document.getElementById('ocr').dataset.state);
  const status = await page.locator('#ocr-status').textContent();
  if (st === 'missing') {
    check(!strict, `the recogniser's model file is not served: ${status}`);
    console.log(`NOTE: ${status}`);
    return;
  }
  check(st === 'done', `recognition failed on ${where}: ${await page.locator('#error').textContent()}`);
  const got = await page.evaluate((vs) => Object.fromEntries(vs.map((v) => {
    const r = document.getElementById(`ocr-${v}`);
    return [v, { text: r.dataset.text, ms: Number(r.dataset.ms) }];
  })), ['f32', 'int8']);
  const norm = (t) => t.replace(/\s+/g, '');
  for (const v of ['f32', 'int8']) {
    check(norm(got[v].text) === norm(text), `${v} on ${where} read "${text}" as "${got[v].text}"`);
  }
  console.log(`recogniser on ${where}: ${status}; ` +
    `${['f32', 'int8'].map((v) => `${v} "${got[v].text}" ${got[v].ms.toFixed(1)} ms`).join(', ')}`);
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless=new', '--no-sandbox', '--enable-unsafe-webgpu',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-first-run', '--disable-quic',
  ],
});
let failed = false;
try {
  // 1. WebGPU.
  const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  const s = await state(page, ['ready', 'error']);
  check(s === 'ready', `did not start: ${await page.locator('#error').textContent()}`);
  const backend = await page.evaluate(() => document.body.dataset.backend);
  const adapter = await page.locator('#adapter').textContent();
  const limits = await page.locator('#limits').textContent();
  if (backend !== 'browserwebgpu') {
    const msg = `the page runs on '${backend}', not WebGPU: ${await page.locator('#error').textContent()}`;
    check(!strict, msg);
    console.log(`NOTE: ${msg}`);
  }
  console.log(`page backend: ${backend}; adapter: ${adapter}; limits: ${limits}`);
  await drawOne(page);
  await state(page, ['done', 'error']);
  const gpu = await results(page);
  for (const v of VARIANTS) check(gpu[v].pred === 1, `${v} on ${backend} read the drawn 1 as ${gpu[v].pred}`);
  console.log(`drawn 1 on ${backend}: ${VARIANTS.map((v) => `${v} ${gpu[v].ms.toFixed(2)} ms`).join(', ')}`);
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });

  // 2. The held-out test digit button runs all three.
  await page.click('#sample');
  await page.waitForFunction(() => document.getElementById('label').textContent !== '');
  await state(page, ['done', 'error']);
  const label = await page.locator('#label').textContent();
  const sample = await results(page);
  console.log(`${label}: predictions ${VARIANTS.map((v) => `${v} ${sample[v].pred}`).join(', ')}`);
  for (const v of VARIANTS) check(sample[v].pred >= 0 && sample[v].pred <= 9, `${v}: no prediction for the test digit`);

  // 2b. The imported ONNX text recogniser reads a typed line back.
  await recogniseLine(page, 'wgedge 2026', backend);

  // 3. Switch to the CPU backend: the same drawing, the same answers.
  await page.click('#clear');
  await drawOne(page);
  await state(page, ['done', 'error']);
  await page.selectOption('#backend', 'cpu');
  await page.waitForFunction(() => document.body.dataset.backend === 'cpu');
  await state(page, ['done', 'error']);
  check((await page.locator('#backend-used').textContent()) === 'CPU backend', 'backend label after switching');
  const cpu = await results(page);
  for (const v of VARIANTS) check(cpu[v].pred === 1, `${v} on the CPU backend read the drawn 1 as ${cpu[v].pred}`);
  console.log(`drawn 1 on the CPU backend: ${VARIANTS.map((v) => `${v} ${cpu[v].ms.toFixed(2)} ms`).join(', ')}`);
  await recogniseLine(page, 'Edge 42', 'the CPU backend');
  check(errors.length === 0, `page errors: ${errors.join('; ')}`);

  // 4. A browser without WebGPU: the page says so and runs on the CPU backend.
  const ctx = await browser.newContext();
  await ctx.addInitScript(() => { delete Navigator.prototype.gpu; });
  const bare = await ctx.newPage();
  await bare.goto(url);
  await state(bare, ['ready', 'error']);
  const err = await bare.locator('#error').textContent();
  check(await bare.locator('#error').isVisible(), 'no error shown without WebGPU');
  check(/WebGPU is not available/.test(err) && /CPU backend instead/.test(err), `error text: ${err}`);
  check((await bare.evaluate(() => document.body.dataset.backend)) === 'cpu', 'fallback backend');
  await drawOne(bare);
  await state(bare, ['done', 'error']);
  const fb = await results(bare);
  for (const v of VARIANTS) check(fb[v].pred === 1, `${v} after the fallback read the drawn 1 as ${fb[v].pred}`);
  console.log(`without WebGPU the page says: "${err}"`);
  console.log('demo page: all checks passed');
} catch (e) {
  console.error(String(e.stack || e));
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
