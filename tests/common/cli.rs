//! Running the `wgedge` binary as a user would, for the command-line tests.

use std::process::Command;

/// Runs the binary with autotune off and `WGEDGE_BACKEND` removed, so the developer's shell
/// does not change what the tests run on; returns (success, stdout, stderr).
pub fn wgedge(args: &[&str]) -> (bool, String, String) {
    wgedge_env(args, &[])
}

/// [`wgedge`] with `env` set (a `None` value removes the variable; `WGEDGE_BACKEND` is removed
/// unless given).
pub fn wgedge_env(args: &[&str], env: &[(&str, Option<&str>)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wgedge"));
    cmd.args(args)
        .env("WGEDGE_AUTOTUNE", "0")
        .env_remove("WGEDGE_BACKEND");
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().expect("run wgedge");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A path in the temp directory unique to this test process: `wgedge-{group}-{pid}-{name}`.
pub fn tmp(group: &str, name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("wgedge-{group}-{}-{name}", std::process::id()))
}

/// A fresh, empty directory from [`tmp`].
pub fn tmp_dir(group: &str, name: &str) -> std::path::PathBuf {
    let d = tmp(group, name);
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).unwrap();
    d
}
