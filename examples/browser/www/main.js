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
let device = null;   // the open WebDevice (shared by the digit and text sessions)

// The imported text recogniser: fetched and imported on first use.
const OCR_URL = 'models/ppocrv4_rec.onnx';
const OCR_VARIANTS = ['f32', 'int8'];
const OCR_RUNS = 5;
const OCR_HEIGHT = 48;
let ocrModels = null;    // variant -> WebModel
let ocrSessions = null;  // variant -> WebSession on `device`

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
  device = dev;
  ocrSessions = null;
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

// Draws the text black on white, 48 pixels high, in a width rounded up to 32 pixels (so a few
// widths cover most lines and each is planned once); returns [3, 48, width] values in -1..1,
// as PaddleOCR normalises them.
function renderLine(text) {
  const line = $('ocr-line');
  const c = line.getContext('2d', { willReadFrequently: true });
  c.font = '32px sans-serif';
  const w = Math.min(960, Math.max(64, Math.ceil((c.measureText(text).width + 16) / 32) * 32));
  line.width = w;
  c.fillStyle = '#fff';
  c.fillRect(0, 0, w, OCR_HEIGHT);
  c.fillStyle = '#000';
  c.font = '32px sans-serif';
  c.textBaseline = 'middle';
  c.fillText(text, 8, OCR_HEIGHT / 2 + 1);
  const d = c.getImageData(0, 0, w, OCR_HEIGHT).data;
  const plane = w * OCR_HEIGHT;
  const px = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let ch = 0; ch < 3; ch++) px[ch * plane + i] = (d[i * 4 + ch] / 255 - 0.5) / 0.5;
  }
  return { px, w };
}

async function recognise() {
  const ocr = $('ocr');
  ocr.dataset.state = 'running';
  const text = $('ocr-text').value;
  const { px, w } = renderLine(text);
  if (!ocrModels) {
    $('ocr-status').textContent = 'fetching the ONNX model…';
    const r = await fetch(OCR_URL);
    if (!r.ok) {
      ocr.dataset.state = 'missing';
      $('ocr-status').textContent = `the model file is not served here (${OCR_URL}: HTTP ${r.status}); ` +
        'tools/models.sh fetches it and tools/web.sh copies it';
      return;
    }
    const bytes = new Uint8Array(await r.arrayBuffer());
    $('ocr-status').textContent = 'importing the ONNX model…';
    let t = performance.now();
    const f32 = WebModel.fromOnnxRecognizer(bytes, w);
    const importMs = performance.now() - t;
    t = performance.now();
    const int8 = f32.variant('int8');
    const quantMs = performance.now() - t;
    ocrModels = { f32, int8 };
    $('ocr-status').textContent = `ONNX file ${bytes.length.toLocaleString('en')} bytes; imported in ` +
      `${importMs.toFixed(0)} ms${f32.anySize ? ' (width symbolic)' : ' (fixed width)'}, int8 quantized in ${quantMs.toFixed(0)} ms`;
    ocr.dataset.importMs = importMs;
    for (const v of OCR_VARIANTS) {
      const row = $(`ocr-${v}`);
      row.querySelector('.bytes').textContent = ocrModels[v].fileBytes.toLocaleString('en');
      row.querySelector('.wbytes').textContent = ocrModels[v].weightBytes.toLocaleString('en');
    }
  }
  if (!ocrSessions) {
    ocrSessions = {};
    for (const v of OCR_VARIANTS) ocrSessions[v] = await device.session(ocrModels[v]);
  }
  for (const v of OCR_VARIANTS) {
    const s = ocrSessions[v];
    const row = $(`ocr-${v}`);
    const got = await s.recognize(px, w); // warm-up (plans this width once), and the answer shown
    const times = [];
    for (let i = 0; i < OCR_RUNS; i++) {
      const t = performance.now();
      await s.recognize(px, w);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    row.querySelector('.text').textContent = got.text;
    row.querySelector('.p').textContent = got.confidence.toFixed(3);
    row.querySelector('.ms').textContent = `${times[OCR_RUNS >> 1].toFixed(1)} ms`;
    row.dataset.text = got.text;
    row.dataset.ms = times[OCR_RUNS >> 1];
  }
  ocr.dataset.state = 'done';
}
$('ocr-nruns').textContent = OCR_RUNS;
$('ocr-run').onclick = () => queue(() => recognise().catch((e) => {
  $('ocr').dataset.state = 'error';
  throw e;
}));

main().catch((e) => {
  showError(`The demo could not start: ${e.message || e}`);
  document.body.dataset.state = 'error';
});
