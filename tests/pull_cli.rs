//! `devenv pull` from the command line: it names the images it could not pull and exits 1.
//! (Against the stand-in pull engine every pull fails; with the real one, this image's registry
//! does not exist.)

use std::process::Command;

#[test]
fn a_failed_pull_names_the_image_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("devenv.yaml"),
        "services:\n  web:\n    image: registry.invalid/team/web:1\n  \
         worker:\n    image: registry.invalid/team/web:1\n    pull_policy: always\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_devenv"))
        .arg("pull")
        .current_dir(tmp.path())
        .env("DEVENV_HOME", tmp.path().join("home"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("registry.invalid/team/web:1"), "{stderr}");
    // One image for both services: pulled (and reported) once.
    assert!(stderr.ends_with("error: could not pull registry.invalid/team/web:1\n"), "{stderr}");
}

#[test]
fn pulling_an_unknown_service_fails() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("devenv.yaml"), "services:\n  web:\n    image: nginx\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_devenv"))
        .args(["pull", "-q", "db"])
        .current_dir(tmp.path())
        .env("DEVENV_HOME", tmp.path().join("home"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no service \"db\""), "{stderr}");
}
