//! `Backend::Auto` by measurement: the first session times the model on the GPU adapter and the
//! CPU backend, keeps the faster and caches the verdict; the next one reads it.

mod common;
use wgedge::{Backend, Session, SessionOptions, Tensor};

#[test]
fn auto_measures_once_then_reads_the_cached_verdict() {
    // This test binary's own cache (set before any session reads it; the only test here).
    let dir = std::env::temp_dir().join(format!("wgedge-auto-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::env::set_var("WGEDGE_CACHE_DIR", &dir);
    let model = common::models::mlp(4);
    let opts = SessionOptions {
        autotune: false,
        ..Default::default()
    };
    let first = Session::with_options(&model, Backend::Auto, opts.clone()).unwrap();
    let n = first.notices()[0].clone();
    if n == "auto: no GPU adapter found; using the CPU backend" {
        assert!(!first.is_gpu());
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true requires a GPU adapter, and Auto found none"
        );
        common::skip_gpu_check("no adapter: Auto cannot measure");
        return;
    }
    assert!(n.starts_with("auto: measured "), "{n}");
    assert!(n.contains(" ms per run on the CPU backend, "), "{n}");
    let chose_gpu = n.contains("; using the GPU (");
    assert!(chose_gpu || n.contains("; using the CPU backend ("), "{n}");
    assert_eq!(first.is_gpu(), chose_gpu, "{n}");
    let cached: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("auto-") && f.ends_with(".json"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");

    let second = Session::with_options(&model, Backend::Auto, opts.clone()).unwrap();
    let n2 = &second.notices()[0];
    assert!(n2.starts_with("auto: cached measurement "), "{n2}");
    assert_eq!(second.is_gpu(), chose_gpu);
    let x = Tensor::random(&[4, 784], 1);
    let a = &first.run(&[("x", &x)]).unwrap()[0];
    let b = &second.run(&[("x", &x)]).unwrap()[0];
    common::assert_close("auto sessions", a, b, 1e-4, 1e-4);

    // Other options are another verdict (here: one thread for the CPU kernels).
    let one = SessionOptions {
        threads: Some(1),
        ..opts
    };
    let third = Session::with_options(&model, Backend::Auto, one).unwrap();
    assert!(third.notices()[0].starts_with("auto: measured "));
    std::fs::remove_dir_all(dir).ok();
}
