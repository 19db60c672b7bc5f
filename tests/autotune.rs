//! Autotune: measured once per adapter, cached on disk, overridable. One test in its own binary
//! because it sets process-wide environment variables.

mod common;
use wgedge::exec::autotune;
use wgedge::ops::Op;
use wgedge::profile::TunedChoices;

#[test]
fn tuned_choices_are_cached_and_overridable() {
    let Some(ctx) = common::gpu() else { return };
    let dir = std::env::temp_dir().join(format!("wgedge-autotune-{}", std::process::id()));
    std::env::set_var("WGEDGE_CACHE_DIR", &dir);
    std::env::remove_var("WGEDGE_KERNELS");

    let path = autotune::cache_path(&ctx).expect("a cache path");
    assert!(path.starts_with(&dir));
    // The file name carries the candidates' checksum: a new variant re-tunes by itself.
    let sum = format!("{:016x}", autotune::candidates_checksum());
    assert!(path.to_string_lossy().contains(&sum), "{}", path.display());
    let tuned = pollster::block_on(autotune::choices(&ctx)).unwrap();
    assert!(tuned.notices.is_empty(), "{:?}", tuned.notices);
    let cached: TunedChoices =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        cached, tuned.choices,
        "the measured choices are what was cached"
    );

    // A second call reads the cache instead of measuring: edit the file and see the edit.
    let mut edited = tuned.choices.clone();
    let px2 = serde_json::json!({"kernel": "tiled", "px": 2});
    edited
        .get_mut("conv2d")
        .unwrap()
        .insert("conv".into(), px2.clone());
    std::fs::write(&path, serde_json::to_string(&edited).unwrap()).unwrap();
    assert_eq!(
        pollster::block_on(autotune::choices(&ctx)).unwrap().choices,
        edited
    );

    // A stale or unknown cache entry is dropped with a notice, never a crash.
    let mut stale = edited.clone();
    let conv = stale.get_mut("conv2d").unwrap();
    conv.insert(
        "conv".into(),
        serde_json::json!({"kernel": "tiled", "px": 0}),
    );
    conv.insert("no_such_slot".into(), px2.clone());
    stale
        .entry("no_such_family".into())
        .or_default()
        .insert("x".into(), px2.clone());
    std::fs::write(&path, serde_json::to_string(&stale).unwrap()).unwrap();
    let t = pollster::block_on(autotune::choices(&ctx)).unwrap();
    assert_eq!(t.notices.len(), 3, "{:?}", t.notices);
    assert!(!t.choices["conv2d"].contains_key("conv"));
    assert_eq!(t.choices["matmul"], edited["matmul"]);

    // The user's override (the environment, read by `SessionOptions::from_env` only) is
    // checked: a malformed or invalid one is an error, not a silent default.
    let forced = wgedge::bench::storage_only();
    std::env::set_var("WGEDGE_KERNELS", serde_json::to_string(&forced).unwrap());
    let o = wgedge::SessionOptions::from_env().unwrap();
    assert_eq!(o.kernels, Some(forced));
    assert!(wgedge::SessionOptions::default().kernels.is_none());
    std::env::set_var("WGEDGE_KERNELS", "{not json");
    assert!(wgedge::SessionOptions::from_env().is_err());
    std::env::set_var(
        "WGEDGE_KERNELS",
        r#"{"conv2d": {"conv": {"kernel": "tiled", "px": 0}}}"#,
    );
    let e = wgedge::SessionOptions::from_env().unwrap_err();
    assert!(e.to_string().contains("tiled-8x0"), "{e}");
    std::env::remove_var("WGEDGE_KERNELS");
    std::fs::remove_dir_all(&dir).ok();

    // Every tuned choice is one of its slot's candidates (a crossover slot's with its
    // measured density threshold, a percentage at one of the slot's points or 0), and every
    // slot was tuned.
    let slots = Op::tune_slots();
    for s in &slots {
        let got = &tuned.choices[s.family][s.slot];
        if s.crossover.is_empty() {
            assert!(s.candidates.contains(got), "{}/{}: {got}", s.family, s.slot);
            continue;
        }
        let mut bare = got.clone();
        let pct = bare
            .as_object_mut()
            .unwrap()
            .remove(wgedge::ops::CROSSOVER_FIELD)
            .and_then(|v| v.as_u64())
            .unwrap();
        let points: Vec<u64> = (s.crossover.iter())
            .map(|(d, _)| (d * 100.0).floor() as u64)
            .collect();
        assert!(
            pct == 0 || points.contains(&pct),
            "{}/{}: threshold {pct} is not one of {points:?}",
            s.family,
            s.slot
        );
        assert!(
            s.candidates.iter().any(|c| {
                let mut c = c.clone();
                c.as_object_mut()
                    .unwrap()
                    .remove(wgedge::ops::CROSSOVER_FIELD);
                c == bare
            }),
            "{}/{}: {got}",
            s.family,
            s.slot
        );
    }
    let n: usize = tuned.choices.values().map(|m| m.len()).sum();
    assert_eq!(n, slots.len());
}
