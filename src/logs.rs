//! Service logs: each container writes its stdout and stderr straight into one file per service
//! (opened O_APPEND), so output survives the supervisor; this module reads them back, with
//! Compose's coloured `service |` prefix, and rotates them.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Rotate a log file past this size: it is copied to `NAME.log.1` and truncated.
pub const ROTATE_BYTES: u64 = 16 * 1024 * 1024;

/// Colours of the service prefixes, in Compose's order.
const COLOURS: [u8; 6] = [36, 33, 32, 35, 34, 31];

/// A prefix printer for a set of services, aligned like Compose's.
pub struct Prefixer {
    width: usize,
    colour: bool,
}

impl Prefixer {
    pub fn new<'a>(services: impl IntoIterator<Item = &'a str>, colour: bool) -> Prefixer {
        Prefixer { width: services.into_iter().map(str::len).max().unwrap_or(0), colour }
    }

    pub fn prefix(&self, index: usize, service: &str) -> String {
        let name = format!("{service:<w$} | ", w = self.width);
        if self.colour {
            format!("\x1b[{}m{name}\x1b[0m", COLOURS[index % COLOURS.len()])
        } else {
            name
        }
    }
}

/// The last `n` lines of a file (all of it when `n` is None).
pub fn tail_lines(path: &Path, n: Option<usize>) -> std::io::Result<(Vec<String>, u64)> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((vec![], 0)),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let end = text.len() as u64;
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let skip = n.map_or(0, |n| lines.len().saturating_sub(n));
    Ok((lines.into_iter().skip(skip).collect(), end))
}

/// Follows a set of log files from given offsets, writing complete lines with their prefix.
pub struct Follower {
    files: Vec<(String, PathBuf, u64, String)>,
    prefixer: Prefixer,
}

impl Follower {
    /// `files`: service, path, offset to start from.
    pub fn new(files: Vec<(String, PathBuf, u64)>, colour: bool) -> Follower {
        let prefixer = Prefixer::new(files.iter().map(|(s, ..)| s.as_str()), colour);
        Follower {
            files: files.into_iter().map(|(s, p, o)| (s, p, o, String::new())).collect(),
            prefixer,
        }
    }

    /// Starts every file at its current end.
    pub fn from_end(services: &[(String, PathBuf)], colour: bool) -> Follower {
        let files = services
            .iter()
            .map(|(s, p)| {
                (s.clone(), p.clone(), std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            })
            .collect();
        Follower::new(files, colour)
    }

    /// Writes what was appended since the last call; returns whether anything was.
    pub fn poll(&mut self, out: &mut dyn Write) -> std::io::Result<bool> {
        let mut any = false;
        for (i, (service, path, offset, partial)) in self.files.iter_mut().enumerate() {
            let Ok(mut f) = File::open(&*path) else { continue };
            let len = f.metadata()?.len();
            if len < *offset {
                // Rotated or truncated: start again from the beginning.
                *offset = 0;
            }
            if len == *offset {
                continue;
            }
            f.seek(SeekFrom::Start(*offset))?;
            let mut reader = BufReader::new(f.take(len - *offset));
            let mut line = String::new();
            while reader.read_line(&mut line)? > 0 {
                *offset += line.len() as u64;
                if line.ends_with('\n') {
                    partial.push_str(&line);
                    write!(out, "{}{}", self.prefixer.prefix(i, service), partial)?;
                    partial.clear();
                    any = true;
                } else {
                    partial.push_str(&line);
                }
                line.clear();
            }
        }
        out.flush()?;
        Ok(any)
    }

    /// Follows until `stop` says so, polling every `interval`.
    pub fn follow(
        &mut self,
        out: &mut dyn Write,
        interval: Duration,
        stop: &dyn Fn() -> bool,
    ) -> std::io::Result<()> {
        while !stop() {
            if !self.poll(out)? {
                std::thread::sleep(interval);
            }
        }
        self.poll(out).map(|_| ())
    }
}

/// Rotates `path` when it has grown past [`ROTATE_BYTES`]. Writers keep their O_APPEND file
/// descriptors, so the file is copied and truncated rather than renamed.
pub fn rotate_if_large(path: &Path) -> std::io::Result<bool> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > ROTATE_BYTES => {
            let mut rotated = path.as_os_str().to_owned();
            rotated.push(".1");
            std::fs::copy(path, &rotated)?;
            File::options().write(true).open(path)?.set_len(0)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follower_prefixes_complete_lines_and_survives_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
        std::fs::write(&a, "old\n").unwrap();
        let mut f =
            Follower::from_end(&[("web".into(), a.clone()), ("db".into(), b.clone())], false);
        std::fs::write(&b, "one\ntw").unwrap();
        let mut out = Vec::new();
        f.poll(&mut out).unwrap();
        assert_eq!(String::from_utf8_lossy(&out), "db  | one\n");
        std::fs::write(&b, "one\ntwo\n").unwrap();
        std::fs::OpenOptions::new().append(true).open(&a).unwrap().write_all(b"new\n").unwrap();
        out.clear();
        f.poll(&mut out).unwrap();
        assert_eq!(String::from_utf8_lossy(&out), "web | new\ndb  | two\n");
        std::fs::write(&a, "").unwrap();
        std::fs::write(&a, "again\n").unwrap();
        out.clear();
        f.poll(&mut out).unwrap();
        assert_eq!(String::from_utf8_lossy(&out), "web | again\n");
    }

    #[test]
    fn tail_takes_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "1\n2\n3\n").unwrap();
        assert_eq!(tail_lines(&p, Some(2)).unwrap().0, vec!["2", "3"]);
        assert_eq!(tail_lines(&p, None).unwrap().0.len(), 3);
        assert_eq!(tail_lines(&dir.path().join("none"), None).unwrap().0.len(), 0);
    }

    #[test]
    fn large_logs_rotate_and_writers_keep_appending() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("svc.log");
        let mut writer = std::fs::OpenOptions::new().create(true).append(true).open(&p).unwrap();
        writer.write_all(b"small\n").unwrap();
        assert!(!rotate_if_large(&p).unwrap());
        writer.write_all(&vec![b'x'; ROTATE_BYTES as usize]).unwrap();
        assert!(rotate_if_large(&p).unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        assert_eq!(
            std::fs::metadata(dir.path().join("svc.log.1")).unwrap().len(),
            ROTATE_BYTES + 6
        );
        writer.write_all(b"after\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "after\n",
            "O_APPEND writes land at the new end"
        );
    }
}
