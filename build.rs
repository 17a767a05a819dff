//! Builds `devenv-init`, the PID 1 of containers with `init: true`, from
//! `src/runtime/init_program.rs`, as a static executable that runs in any image (busybox has no C
//! library). The library embeds the result (`src/runtime/init.rs`); its FNV-1a hash names the file
//! written on the host.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "src/runtime/init_program.rs";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let binary = out.join("devenv-init");

    // Size over speed: the init only waits for signals. `panic=abort` and stripped symbols keep it
    // small; `crt-static` links the C library in (a static-pie with glibc, fully static on musl).
    let status = Command::new(&rustc)
        .args(["--edition", "2021", "--crate-name", "devenv_init", "--crate-type", "bin"])
        .args(["-C", "opt-level=s", "-C", "panic=abort", "-C", "strip=symbols"])
        .args(["-C", "target-feature=+crt-static", "-C", "codegen-units=1"])
        .args(["--target", &target])
        .arg(SOURCE)
        .arg("-o")
        .arg(&binary)
        .status()
        .unwrap_or_else(|err| panic!("cannot run {rustc:?} to build {SOURCE}: {err}"));
    assert!(status.success(), "building {SOURCE} failed: {status}");

    let bytes = std::fs::read(&binary).unwrap_or_else(|err| panic!("read {binary:?}: {err}"));
    let hash = bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    println!("cargo:rustc-env=DEVENV_INIT_HASH={hash:016x}");
}
