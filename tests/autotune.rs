//! Autotune: measured once per adapter, cached on disk, overridable. One test in its own binary
//! because it sets process-wide environment variables.

mod common;
use wgedge::exec::autotune;
use wgedge::ops::Kernel;
use wgedge::profile::KernelChoices;

#[test]
fn tuned_choices_are_cached_and_overridable() {
    let Some(ctx) = common::gpu() else { return };
    let dir = std::env::temp_dir().join(format!("wgedge-autotune-{}", std::process::id()));
    std::env::set_var("WGEDGE_CACHE_DIR", &dir);
    std::env::remove_var("WGEDGE_KERNELS");

    let path = autotune::cache_path(&ctx).expect("a cache path");
    assert!(path.starts_with(&dir));
    let tuned = pollster::block_on(autotune::choices(&ctx)).unwrap();
    let cached: KernelChoices =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(cached, tuned, "the measured choices are what was cached");

    // A second call reads the cache instead of measuring: edit the file and see the edit.
    let mut edited = tuned;
    edited.conv = Kernel::ConvTiled { px: 2 };
    std::fs::write(&path, serde_json::to_string(&edited).unwrap()).unwrap();
    assert_eq!(pollster::block_on(autotune::choices(&ctx)).unwrap(), edited);

    // The user's override wins over the cache; a malformed one is an error, not a silent default.
    let forced = KernelChoices::storage_only();
    std::env::set_var("WGEDGE_KERNELS", serde_json::to_string(&forced).unwrap());
    assert_eq!(pollster::block_on(autotune::choices(&ctx)).unwrap(), forced);
    std::env::set_var("WGEDGE_KERNELS", "{not json");
    assert!(pollster::block_on(autotune::choices(&ctx)).is_err());
    std::env::remove_var("WGEDGE_KERNELS");
    std::fs::remove_dir_all(&dir).ok();

    // Every tuned choice is one of the candidates.
    use wgedge::sched::select::*;
    assert!(gemm_candidates().contains(&tuned.gemm));
    assert!(gemv_candidates().contains(&tuned.gemv));
    assert!(gemm_tiled_candidates().contains(&tuned.gemm_tiled));
    assert!(conv_candidates().contains(&tuned.conv));
    assert!(dwconv_candidates().contains(&tuned.dwconv));
}
