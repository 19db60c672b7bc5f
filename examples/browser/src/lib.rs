//! wgedge in a web page: the shipped digit classifier (f32, and int8/int4 quantized in the
//! page with `wgedge::compress`) on the browser's WebGPU, or on the CPU backend when the
//! browser has none or the user picks it.
//!
//! The JS side (`www/main.js`) fetches the model bytes, opens a device once
//! ([`open_device`]), builds one session per model variant on it ([`WebDevice::session`]) and
//! runs them ([`WebSession::run`]); everything that touches the GPU is async. The Rust
//! functions under the bindings ([`open_context`], [`classify`], ...) are what the browser tests
//! (`tests/web.rs`) call.

use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wgedge::compress::{quantize, QuantConfig, WeightKind};
use wgedge::{Backend, GpuContext, Model, Session, SessionOptions, Tensor};

/// Side of the classifier's square input image.
pub const SIDE: usize = 28;

fn js(e: wgedge::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// The model variants the page compares: "f32" (as shipped), "int8" (per output channel) and
/// "int4" (groups of 32, f16 scales): the library's defaults for each kind.
pub fn variant(f32_model: &Model, kind: &str) -> wgedge::Result<Model> {
    let kind = match kind {
        "f32" => return Ok(f32_model.clone()),
        "int8" => WeightKind::Int8,
        "int4" => WeightKind::Int4,
        other => {
            return Err(wgedge::Error::Input(format!(
                "unknown model variant '{other}' (expected f32, int8 or int4)"
            )))
        }
    };
    Ok(quantize(f32_model, &QuantConfig::new(kind))?.0)
}

/// Opens the device for `backend` ("webgpu", "cpu" or "auto"): `Ok(None)` is the CPU backend.
/// A WebGPU request in a browser without WebGPU is an error that says so (the page shows it
/// and opens the CPU backend instead).
pub async fn open_context(backend: &str) -> wgedge::Result<Option<Arc<GpuContext>>> {
    let b: Backend = backend.parse()?;
    Ok(GpuContext::open(b).await?.map(Arc::new))
}

/// A session for `model` on `ctx` (the CPU backend when `None`) with the default options:
/// autotune has no clock to block on in the browser, so each family's default kernels run.
pub async fn open_session(model: &Model, ctx: Option<Arc<GpuContext>>) -> wgedge::Result<Session> {
    match ctx {
        Some(ctx) => Session::with_context_async(model, ctx, SessionOptions::default()).await,
        None => Session::cpu(model, SessionOptions::default()),
    }
}

/// Class probabilities of one 28x28 image (values 0..1, white digit on black, as MNIST).
pub async fn classify(session: &Session, pixels: &[f32]) -> wgedge::Result<Vec<f32>> {
    if pixels.len() != SIDE * SIDE {
        return Err(wgedge::Error::Input(format!(
            "the digit image has {} pixels; the classifier takes {SIDE}x{SIDE} = {}",
            pixels.len(),
            SIDE * SIDE
        )));
    }
    let img = Tensor::new(&[1, 1, SIDE, SIDE], pixels.to_vec())?;
    let out = session.run_async(&[("image", &img)]).await?;
    let first = out
        .first()
        .ok_or_else(|| wgedge::Error::Graph("the model has no output".into()))?;
    Ok(first.to_f32().f32s("probs")?.to_vec())
}

/// The held-out digits shipped with the model (`models/mnist-test.safetensors`): images as
/// 0..1 pixels, `[n * 784]`, and their labels.
pub fn test_digits(bytes: &[u8]) -> wgedge::Result<(Vec<f32>, Vec<u8>)> {
    let (t, _) = wgedge::model::read_tensors(bytes)?;
    let get = |n: &str| {
        t.get(n)
            .map(|v| v.to_f32())
            .ok_or_else(|| wgedge::Error::MissingWeight(n.into()))
    };
    let images = get("images")?;
    let labels = get("labels")?;
    let px = images.f32s("images")?.iter().map(|v| v / 255.0).collect();
    let lb = labels.f32s("labels")?.iter().map(|&v| v as u8).collect();
    Ok((px, lb))
}

/// Height of the text-line images the PP-OCRv4 recogniser takes.
pub const TEXT_HEIGHT: usize = 48;

/// An imported ONNX text recogniser (PP-OCRv4 rec as `rapidocr-onnxruntime` ships it): the
/// model imported for text lines `TEXT_HEIGHT` high and `width` wide (its width stays symbolic,
/// so a session runs any width), its input name, and its character list (the model's
/// `character` metadata; CTC class 0 is the blank, the last class a space).
pub struct Recognizer {
    pub model: Model,
    pub input: String,
    pub chars: Vec<String>,
    /// Whether the import kept the width symbolic (other widths re-plan instead of failing).
    pub any_width: bool,
}

/// Imports a PP-OCR recogniser from its ONNX bytes.
pub fn import_recognizer(onnx: &[u8], width: usize) -> wgedge::Result<Recognizer> {
    // The shape is given by input name: read the name from the file first.
    let input = wgedge::onnx::declared_inputs(onnx)?
        .into_iter()
        .next()
        .map(|(name, _)| name)
        .ok_or_else(|| wgedge::Error::ModelFile("the recogniser declares no input".into()))?;
    let mut opts = wgedge::onnx::ImportOptions::default();
    opts.shapes
        .insert(input.clone(), vec![1, 3, TEXT_HEIGHT, width]);
    let (model, report) = wgedge::onnx::import(onnx, &opts)?;
    let chars: Vec<String> = report
        .metadata
        .get("character")
        .ok_or_else(|| {
            wgedge::Error::ModelFile(
                "the recogniser has no 'character' metadata (its character list)".into(),
            )
        })?
        .lines()
        .map(str::to_string)
        .collect();
    let any_width = report
        .dims
        .get(&input)
        .is_some_and(|d| d.get(3).is_some_and(|s| s.is_some()));
    Ok(Recognizer {
        model,
        input,
        chars,
        any_width,
    })
}

/// Greedy CTC decoding of `[1, T, C]` class probabilities: the best class per step, repeats
/// merged, blanks (class 0) dropped; class `i` is `chars[i - 1]`, class `chars.len() + 1` a
/// space. Returns the text and the mean probability of the kept characters.
pub fn ctc_decode(probs: &Tensor, chars: &[String]) -> wgedge::Result<(String, f32)> {
    let s = probs.shape();
    if s.len() != 3 || s[0] != 1 {
        return Err(wgedge::Error::Input(format!(
            "recogniser output has shape {s:?}, expected [1, T, classes]"
        )));
    }
    let (t, c) = (s[1], s[2]);
    let p = probs.to_f32();
    let p = p.f32s("probs")?;
    let (mut text, mut conf, mut n, mut last) = (String::new(), 0.0f32, 0usize, 0usize);
    for step in 0..t {
        let row = &p[step * c..(step + 1) * c];
        let (best, &pb) = row
            .iter()
            .enumerate()
            .fold((0, &f32::MIN), |a, b| if b.1 > a.1 { b } else { a });
        if best != 0 && best != last {
            match best {
                i if i <= chars.len() => text.push_str(&chars[i - 1]),
                _ => text.push(' '),
            }
            conf += pb;
            n += 1;
        }
        last = best;
    }
    Ok((text, if n > 0 { conf / n as f32 } else { 0.0 }))
}

/// Recognises one text line: `pixels` is `[3, TEXT_HEIGHT, width]` normalised as PaddleOCR
/// does (`(v / 255 - 0.5) / 0.5`).
pub async fn recognize(
    session: &Session,
    input: &str,
    chars: &[String],
    pixels: &[f32],
    width: usize,
) -> wgedge::Result<(String, f32)> {
    let img = Tensor::new(&[1, 3, TEXT_HEIGHT, width], pixels.to_vec())?;
    let out = session.run_async(&[(input, &img)]).await?;
    let first = out
        .first()
        .ok_or_else(|| wgedge::Error::Graph("the model has no output".into()))?;
    ctc_decode(first, chars)
}

/// A model in the page.
#[wasm_bindgen]
pub struct WebModel {
    model: Model,
    file_bytes: usize,
    /// For an imported recogniser: its input name and character list.
    text: Option<Rc<(String, Vec<String>)>>,
}

#[wasm_bindgen]
impl WebModel {
    /// Loads a model file's bytes (as fetched).
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(bytes: &[u8]) -> Result<WebModel, JsError> {
        let model = Model::from_bytes(bytes).map_err(js)?;
        Ok(WebModel {
            model,
            file_bytes: bytes.len(),
            text: None,
        })
    }

    /// Imports an ONNX text recogniser (PP-OCRv4 rec) in the page, for text lines `width`
    /// pixels wide (other widths run too when the import keeps the width symbolic).
    #[wasm_bindgen(js_name = fromOnnxRecognizer)]
    pub fn from_onnx_recognizer(bytes: &[u8], width: usize) -> Result<WebModel, JsError> {
        let r = import_recognizer(bytes, width).map_err(js)?;
        let file_bytes = r.model.to_bytes().map_err(js)?.len();
        Ok(WebModel {
            model: r.model,
            file_bytes,
            text: Some(Rc::new((r.input, r.chars))),
        })
    }

    /// Whether the model runs inputs of other sizes (symbolic dims kept at import).
    #[wasm_bindgen(getter, js_name = anySize)]
    pub fn any_size(&self) -> bool {
        !self.model.graph.dims.is_empty()
    }

    /// This model with its weights quantized: "int8" or "int4" ("f32" returns a copy).
    pub fn variant(&self, kind: &str) -> Result<WebModel, JsError> {
        let model = variant(&self.model, kind).map_err(js)?;
        let file_bytes = model.to_bytes().map_err(js)?.len();
        Ok(WebModel {
            model,
            file_bytes,
            text: self.text.clone(),
        })
    }

    /// Bytes of the model file (graph and weights as stored).
    #[wasm_bindgen(getter, js_name = fileBytes)]
    pub fn file_bytes(&self) -> usize {
        self.file_bytes
    }

    /// Bytes of the weights as stored (packed codes and scales for quantized weights).
    #[wasm_bindgen(getter, js_name = weightBytes)]
    pub fn weight_bytes(&self) -> usize {
        self.model.weight_bytes()
    }
}

/// A device opened once and shared by the page's sessions: the browser's WebGPU adapter, or
/// the CPU backend.
#[wasm_bindgen]
pub struct WebDevice {
    ctx: Option<Arc<GpuContext>>,
}

/// Opens "webgpu", "cpu" or "auto"; resolves to a [`WebDevice`] or rejects with the reason
/// (no WebGPU in this browser, no adapter granted, ...).
#[wasm_bindgen(js_name = openDevice)]
pub fn open_device(backend: String) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let ctx = open_context(&backend)
            .await
            .map_err(|e| JsValue::from(js(e)))?;
        Ok(WebDevice { ctx }.into())
    })
}

#[wasm_bindgen]
impl WebDevice {
    /// "webgpu" or "cpu".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        match &self.ctx {
            Some(c) => c.profile.backend.clone(),
            None => "cpu".into(),
        }
    }

    /// The adapter as the browser describes it (may be empty: browsers hide details).
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        match &self.ctx {
            Some(c) if c.info.name.is_empty() => "(the browser gives no description)".into(),
            Some(c) => c.info.name.clone(),
            None => format!(
                "wgedge CPU backend ({} thread in the page)",
                wgedge::cpu::threads()
            ),
        }
    }

    /// The adapter's limits that decide whether a kernel fits, as one line.
    #[wasm_bindgen(getter)]
    pub fn limits(&self) -> String {
        match &self.ctx {
            Some(c) => {
                let l = &c.profile.limits;
                let f = &c.profile.features;
                format!(
                    "{} storage buffers per stage, {} invocations per workgroup, {} B workgroup \
                     storage, shader-f16 {}, subgroups {}",
                    l.max_storage_buffers_per_stage,
                    l.max_compute_invocations_per_workgroup,
                    l.max_compute_workgroup_storage_size,
                    f.shader_f16,
                    f.subgroups
                )
            }
            None => String::new(),
        }
    }

    /// Builds a session for `model` on this device; resolves to a [`WebSession`].
    pub fn session(&self, model: &WebModel) -> js_sys::Promise {
        let ctx = self.ctx.clone();
        let text = model.text.clone();
        let model = model.model.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let s = open_session(&model, ctx)
                .await
                .map_err(|e| JsValue::from(js(e)))?;
            Ok(WebSession {
                s: Rc::new(s),
                text,
            }
            .into())
        })
    }
}

/// A model planned for a device.
#[wasm_bindgen]
pub struct WebSession {
    s: Rc<Session>,
    text: Option<Rc<(String, Vec<String>)>>,
}

#[wasm_bindgen]
impl WebSession {
    /// Runs the classifier on a 28x28 image (784 values in 0..1); resolves to the 10 class
    /// probabilities as a `Float32Array`.
    pub fn run(&self, pixels: Vec<f32>) -> js_sys::Promise {
        let s = self.s.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let p = classify(&s, &pixels)
                .await
                .map_err(|e| JsValue::from(js(e)))?;
            Ok(js_sys::Float32Array::from(p.as_slice()).into())
        })
    }

    /// Recognises a text line (a recogniser's session): `pixels` `[3, 48, width]` normalised
    /// to -1..1; resolves to `{text, confidence}`.
    pub fn recognize(&self, pixels: Vec<f32>, width: usize) -> js_sys::Promise {
        let s = self.s.clone();
        let text = self.text.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let t = text.ok_or_else(|| {
                JsValue::from(JsError::new("this session's model is not a text recogniser"))
            })?;
            let (txt, conf) = recognize(&s, &t.0, &t.1, &pixels, width)
                .await
                .map_err(|e| JsValue::from(js(e)))?;
            let o = js_sys::Object::new();
            js_sys::Reflect::set(&o, &"text".into(), &txt.into())?;
            js_sys::Reflect::set(&o, &"confidence".into(), &(conf as f64).into())?;
            Ok(o.into())
        })
    }

    /// Where the session runs ("cpu", or the adapter and backend).
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> String {
        self.s.device_name()
    }

    /// What building the session noticed (nodes on the CPU, decoded weights), one per line.
    #[wasm_bindgen(getter)]
    pub fn notices(&self) -> String {
        self.s.notices().join("\n")
    }

    /// Device memory of the weights as uploaded (0 on the CPU backend).
    #[wasm_bindgen(getter, js_name = weightDeviceBytes)]
    pub fn weight_device_bytes(&self) -> f64 {
        self.s.weight_device_bytes() as f64
    }
}

/// The shipped held-out digits (`models/mnist-test.safetensors` bytes): `{images:
/// Float32Array (n * 784), labels: Uint8Array}`, for the page's "test digit" button.
#[wasm_bindgen(js_name = testDigits)]
pub fn test_digits_js(bytes: &[u8]) -> Result<js_sys::Object, JsError> {
    let (px, lb) = test_digits(bytes).map_err(js)?;
    let o = js_sys::Object::new();
    let set = |k: &str, v: JsValue| js_sys::Reflect::set(&o, &k.into(), &v);
    set("images", js_sys::Float32Array::from(px.as_slice()).into())
        .and_then(|_| set("labels", js_sys::Uint8Array::from(lb.as_slice()).into()))
        .map_err(|_| JsError::new("could not build the digits object"))?;
    Ok(o)
}
