// The demo page: draws, preprocesses to 28x28, runs the three model variants on one device and
// shows what ran where. All model work is wgedge (pkg/ is wasm-bindgen's output).
import init, { WebModel, openDevice, testDigits } from './pkg/wgedge_browser.js';

const VARIANTS = ['f32', 'int8', 'int4'];
const RUNS = 20;
const $ = (id) => document.getElementById(id);
const pad = $('pad');
const ctx = pad.getContext('2d', { willReadFrequently: true });
const small = $('small');
const sctx = small.getContext('2d', { willReadFrequently: true });

let models = {};     // variant -> WebModel
let sessions = {};   // variant -> WebSession
let pixels = null;   // Float32Array(784) in 0..1, the current input
let digits = null;   // held-out test digits, fetched on first use
let busy = Promise.resolve();

function showError(msg) {
  const e = $('error');
  e.textContent = msg;
  e.style.display = msg ? 'block' : 'none';
}

function clearPad() {
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, pad.width, pad.height);
  sctx.fillStyle = '#000';
  sctx.fillRect(0, 0, 28, 28);
  pixels = null;
  $('label').textContent = '';
}

// MNIST-like preprocessing: the drawing's bounding box scaled to fit 20x20, centred in 28x28.
function padToPixels() {
  const img = ctx.getImageData(0, 0, pad.width, pad.height).data;
  let x0 = pad.width, y0 = pad.height, x1 = -1, y1 = -1;
  for (let y = 0; y < pad.height; y++) {
    for (let x = 0; x < pad.width; x++) {
      if (img[(y * pad.width + x) * 4] > 20) {
        if (x < x0) x0 = x; if (x > x1) x1 = x;
        if (y < y0) y0 = y; if (y > y1) y1 = y;
      }
    }
  }
  if (x1 < 0) return null;
  const w = x1 - x0 + 1, h = y1 - y0 + 1;
  const s = 20 / Math.max(w, h);
  sctx.fillStyle = '#000';
  sctx.fillRect(0, 0, 28, 28);
  sctx.imageSmoothingEnabled = true;
  sctx.drawImage(pad, x0, y0, w, h, 14 - (w * s) / 2, 14 - (h * s) / 2, w * s, h * s);
  const d = sctx.getImageData(0, 0, 28, 28).data;
  const px = new Float32Array(784);
  for (let i = 0; i < 784; i++) px[i] = d[i * 4] / 255;
  return px;
}

function showPixels(px) {
  const im = sctx.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = Math.round(px[i] * 255);
    im.data.set([v, v, v, 255], i * 4);
  }
  sctx.putImageData(im, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, pad.width, pad.height);
}

async function openBackend(name) {
  $('backend-used').textContent = 'opening…';
  document.body.dataset.state = 'loading';
  let dev;
  try {
    dev = await openDevice(name);
    showError('');
  } catch (e) {
    if (name !== 'webgpu') throw e;
    // No WebGPU here: say so, and run on the CPU backend instead.
    showError(`WebGPU is not available: ${e.message || e}. Using the wgedge CPU backend instead.`);
    dev = await openDevice('cpu');
    $('backend').value = 'cpu';
  }
  $('backend-used').textContent = dev.backend === 'cpu' ? 'CPU backend' : `WebGPU (${dev.backend})`;
  $('adapter').textContent = dev.adapter;
  $('limits').textContent = dev.limits || 'none (CPU)';
  document.body.dataset.backend = dev.backend;
  sessions = {};
  for (const v of VARIANTS) sessions[v] = await dev.session(models[v]);
  document.body.dataset.state = 'ready';
  if (pixels) await runAll();
}

async function runAll() {
  if (!pixels) return;
  document.body.dataset.state = 'running';
  for (const v of VARIANTS) {
    const s = sessions[v];
    const row = $(`row-${v}`);
    const probs = await s.run(pixels); // warm-up, and the answer shown
    const times = [];
    for (let i = 0; i < RUNS; i++) {
      const t = performance.now();
      await s.run(pixels);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    let best = 0;
    for (let k = 1; k < probs.length; k++) if (probs[k] > probs[best]) best = k;
    row.querySelector('.pred').textContent = best;
    row.querySelector('.p').textContent = probs[best].toFixed(3);
    row.querySelector('.ms').textContent = `${times[RUNS >> 1].toFixed(2)} ms`;
    row.dataset.pred = best;
    row.dataset.ms = times[RUNS >> 1];
  }
  document.body.dataset.state = 'done';
}

// Serialise everything that touches the sessions.
function queue(f) {
  busy = busy.then(f).catch((e) => {
    showError(String(e.message || e));
    document.body.dataset.state = 'error';
  });
  return busy;
}

async function main() {
  await init();
  const bytes = new Uint8Array(await (await fetch('models/mnist-cnn.safetensors')).arrayBuffer());
  models.f32 = WebModel.fromBytes(bytes);
  models.int8 = models.f32.variant('int8');
  models.int4 = models.f32.variant('int4');
  for (const v of VARIANTS) {
    const row = $(`row-${v}`);
    row.querySelector('.bytes').textContent = models[v].fileBytes.toLocaleString('en');
    row.querySelector('.wbytes').textContent = models[v].weightBytes.toLocaleString('en');
  }
  $('nruns').textContent = RUNS;
  clearPad();
  await openBackend('webgpu');
}

let drawing = false;
function at(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}
pad.addEventListener('pointerdown', (e) => {
  drawing = true;
  pad.setPointerCapture(e.pointerId);
  ctx.strokeStyle = '#fff';
  ctx.lineWidth = 18;
  ctx.lineCap = ctx.lineJoin = 'round';
  ctx.beginPath();
  ctx.moveTo(...at(e));
});
pad.addEventListener('pointermove', (e) => {
  if (!drawing) return;
  ctx.lineTo(...at(e));
  ctx.stroke();
});
pad.addEventListener('pointerup', () => {
  drawing = false;
  pixels = padToPixels();
  $('label').textContent = '';
  queue(runAll);
});
$('clear').onclick = clearPad;
$('run').onclick = () => { pixels = pixels || padToPixels(); queue(runAll); };
$('sample').onclick = () => queue(async () => {
  if (!digits) {
    const b = new Uint8Array(await (await fetch('models/mnist-test.safetensors')).arrayBuffer());
    digits = testDigits(b);
  }
  const n = digits.labels.length;
  const i = Math.floor(Math.random() * n);
  pixels = digits.images.slice(i * 784, (i + 1) * 784);
  showPixels(pixels);
  $('label').textContent = `held-out digit #${i}, label ${digits.labels[i]}`;
  await runAll();
});
$('backend').onchange = (e) => queue(() => openBackend(e.target.value));

main().catch((e) => {
  showError(`The demo could not start: ${e.message || e}`);
  document.body.dataset.state = 'error';
});
