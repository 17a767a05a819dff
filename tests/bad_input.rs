//! Invalid project files, one per file under `tests/invalid/`, each starting with the exact
//! diagnostic it must produce:
//!
//! ```text
//! # expect: LINE:COLUMN: KEY.PATH: MESSAGE
//! # help: SUGGESTION (or `none`)
//! ```
//!
//! `{dir}` in an expectation stands for the directory of the file. The library must report that
//! diagnostic first, and the CLI must print it and exit with status 2.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use devenv::config::{load_str, ConfigError};

struct Case {
    file: PathBuf,
    text: String,
    expect: String,
    help: Option<String>,
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let mut lines = text.lines();
            let header = |l: Option<&str>, key: &str| {
                l.and_then(|l| l.strip_prefix(key))
                    .unwrap_or_else(|| panic!("{}: missing `{key}` line", file.display()))
                    .replace("{dir}", &dir.to_string_lossy())
            };
            let expect = header(lines.next(), "# expect: ");
            let help = Some(header(lines.next(), "# help: ")).filter(|h| h != "none");
            Case { file, text, expect, help }
        })
        .collect()
}

#[test]
fn there_are_at_least_forty_cases() {
    assert!(cases().len() >= 40, "only {} invalid files", cases().len());
}

#[test]
fn each_invalid_file_gets_its_exact_diagnostic() {
    let mut failures = Vec::new();
    for case in cases() {
        let dir = case.file.parent().unwrap();
        let got = match load_str(&case.file, &case.text, dir, HashMap::new(), None) {
            Ok(_) => {
                failures.push(format!("{}: accepted", case.file.display()));
                continue;
            }
            Err(ConfigError::Invalid(diags)) => diags.into_iter().next().unwrap(),
            Err(e) => {
                failures.push(format!("{}: unexpected error {e}", case.file.display()));
                continue;
            }
        };
        let headline = got.headline();
        let prefix = format!("{}:", case.file.display());
        let located = headline.strip_prefix(&prefix).unwrap_or(&headline);
        if located != case.expect || got.suggestion != case.help {
            failures.push(format!(
                "{}:\n  expected: {} (help: {:?})\n  got:      {} (help: {:?})",
                case.file.display(),
                case.expect,
                case.help,
                located,
                got.suggestion
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_cli_prints_the_diagnostic_with_the_source_line_and_exits_2() {
    for case in cases() {
        let out = Command::new(env!("CARGO_BIN_EXE_devenv"))
            .arg("-f")
            .arg(&case.file)
            .arg("config")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", case.file.display());
        assert!(out.stdout.is_empty(), "{}: printed a project", case.file.display());
        let first = format!("error: {}:{}", case.file.display(), case.expect);
        assert!(stderr.starts_with(&first), "{}:\n{stderr}", case.file.display());
        // The offending line is quoted under the message, with a caret at the column.
        let (line, rest) = case.expect.split_once(':').unwrap();
        let column: usize = rest.split(':').next().unwrap().parse().unwrap();
        let n: usize = line.parse().unwrap();
        let source_line = case.text.lines().nth(n - 1).unwrap_or("");
        if !source_line.is_empty() {
            assert!(stderr.contains(&format!(" {n} | {source_line}")), "{stderr}");
            assert!(stderr.contains(&format!("| {}^", " ".repeat(column - 1))), "{stderr}");
        }
    }
}
