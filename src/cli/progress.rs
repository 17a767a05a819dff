//! Pull progress on stderr: live bars on a terminal (one per layer, one overall line per image),
//! one plain line per finished layer and image otherwise, nothing with `--quiet`.
//!
//! No thread is left behind: indicatif only starts one for a steady tick, which is never
//! enabled here (bars redraw when bytes arrive), and [`Progress::finish`] drops every bar. `up -d`
//! forks after pulling, which needs a single-threaded process.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::image::pull::PullProgress;
use crate::image::{Digest, ImageInfo, Reference};

/// How pull progress is shown.
pub struct Progress {
    kind: Kind,
}

enum Kind {
    Quiet,
    Plain(Mutex<Plain>),
    Bars(Mutex<Bars>),
}

impl Progress {
    /// Bars when stderr is a terminal, plain lines when not, nothing when `quiet`.
    pub fn stderr(quiet: bool) -> Progress {
        let kind = if quiet {
            Kind::Quiet
        } else if std::io::stderr().is_terminal() {
            Kind::Bars(Mutex::new(Bars::new()))
        } else {
            Kind::Plain(Mutex::new(Plain::new(Box::new(std::io::stderr()))))
        };
        Progress { kind }
    }

    /// Plain lines to any writer.
    #[cfg(test)]
    fn plain(out: Box<dyn Write + Send>) -> Progress {
        Progress { kind: Kind::Plain(Mutex::new(Plain::new(out))) }
    }

    /// Leaves the bars as they last were (an image that failed keeps its bars where they stopped)
    /// and lets go of the terminal.
    pub fn finish(self) {
        if let Kind::Bars(bars) = self.kind {
            let bars = bars.into_inner().unwrap_or_else(|e| e.into_inner());
            for image in bars.images.into_values() {
                for bar in image.layers.values().chain([&image.overall]) {
                    if !bar.is_finished() {
                        bar.abandon();
                    }
                }
            }
        }
    }
}

/// `sha256:3f1a2b4c5d6e…`: the first 12 hex digits, as Docker shows layers.
pub fn short(digest: &Digest) -> String {
    format!("{}…", &digest.hex()[..12])
}

/// Bytes in decimal units with one decimal: `12.3 MB`, `512 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

// ---------------------------------------------------------------------------------------------
// Plain lines

struct Plain {
    out: Box<dyn Write + Send>,
    /// Layer sizes from the manifest, per image.
    sizes: BTreeMap<(String, Digest), u64>,
}

impl Plain {
    fn new(out: Box<dyn Write + Send>) -> Plain {
        Plain { out, sizes: BTreeMap::new() }
    }

    fn line(&mut self, text: String) {
        let _ = writeln!(self.out, "{text}");
    }
}

fn layer_line(image: &Reference, layer: &Digest, size: Option<u64>) -> String {
    match size {
        Some(size) => {
            format!("{} layer {} {} done", image.familiar(), short(layer), human_bytes(size))
        }
        None => format!("{} layer {} done", image.familiar(), short(layer)),
    }
}

fn cached_line(image: &Reference, layer: &Digest) -> String {
    format!("{} layer {} already exists", image.familiar(), short(layer))
}

fn retry_line(image: &Reference, what: &str, attempt: u32, error: &str) -> String {
    format!("{} {what}: retrying (attempt {attempt}) after: {error}", image.familiar())
}

fn done_line(image: &Reference, info: &ImageInfo) -> String {
    format!("{} pulled {} ({})", image.familiar(), info.manifest_digest, human_bytes(info.size))
}

// ---------------------------------------------------------------------------------------------
// Bars

struct Bars {
    multi: MultiProgress,
    images: BTreeMap<String, ImageBars>,
}

struct ImageBars {
    overall: ProgressBar,
    layers: BTreeMap<Digest, ProgressBar>,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
            images: BTreeMap::new(),
        }
    }

    fn image(&mut self, image: &Reference) -> &mut ImageBars {
        let multi = &self.multi;
        self.images.entry(image.to_string()).or_insert_with(|| {
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(style("{prefix:.bold} {bytes}/{total_bytes} {msg}"));
            overall.set_prefix(image.familiar());
            overall.set_message("resolving");
            ImageBars { overall, layers: BTreeMap::new() }
        })
    }

    /// The layer's bar, made on first use; `size` (when known, not 0) sets its length.
    fn layer(&mut self, image: &Reference, layer: &Digest, size: u64) -> ProgressBar {
        let multi = self.multi.clone();
        let img = self.image(image);
        let bar = img
            .layers
            .entry(layer.clone())
            .or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(size));
                bar.set_style(style(
                    "  {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                ));
                bar.set_prefix(short(layer));
                bar
            })
            .clone();
        if size > 0 {
            bar.set_length(size);
        }
        bar
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> ")
}

// ---------------------------------------------------------------------------------------------

impl PullProgress for Progress {
    fn resolved(&self, image: &Reference, _manifest: &Digest, layers: &[(Digest, u64)]) {
        match &self.kind {
            Kind::Quiet => {}
            Kind::Plain(p) => {
                let mut p = p.lock().expect("progress");
                for (layer, size) in layers {
                    p.sizes.insert((image.to_string(), layer.clone()), *size);
                }
            }
            Kind::Bars(b) => {
                let mut b = b.lock().expect("progress");
                b.image(image).overall.set_length(layers.iter().map(|l| l.1).sum());
                b.image(image).overall.set_message("");
                for (layer, size) in layers {
                    b.layer(image, layer, *size);
                }
            }
        }
    }

    fn layer_cached(&self, image: &Reference, layer: &Digest) {
        match &self.kind {
            Kind::Quiet => {}
            Kind::Plain(p) => p.lock().expect("progress").line(cached_line(image, layer)),
            Kind::Bars(b) => {
                let mut b = b.lock().expect("progress");
                let bar = b.layer(image, layer, 0);
                b.image(image).overall.inc(bar.length().unwrap_or(0));
                bar.finish_with_message("already exists");
            }
        }
    }

    fn layer_bytes(&self, image: &Reference, layer: &Digest, bytes: u64) {
        if let Kind::Bars(b) = &self.kind {
            let mut b = b.lock().expect("progress");
            b.layer(image, layer, 0).inc(bytes);
            b.image(image).overall.inc(bytes);
        }
    }

    fn layer_done(&self, image: &Reference, layer: &Digest) {
        match &self.kind {
            Kind::Quiet => {}
            Kind::Plain(p) => {
                let mut p = p.lock().expect("progress");
                let size = p.sizes.get(&(image.to_string(), layer.clone())).copied();
                p.line(layer_line(image, layer, size));
            }
            Kind::Bars(b) => {
                b.lock().expect("progress").layer(image, layer, 0).finish_with_message("done")
            }
        }
    }

    fn retry(&self, image: &Reference, what: &str, attempt: u32, error: &str) {
        match &self.kind {
            Kind::Quiet => {}
            Kind::Plain(p) => {
                p.lock().expect("progress").line(retry_line(image, what, attempt, error))
            }
            Kind::Bars(b) => {
                let mut b = b.lock().expect("progress");
                b.image(image).overall.set_message(format!("retrying {what} (attempt {attempt})"));
                let _ = b.multi.println(retry_line(image, what, attempt, error));
            }
        }
    }

    fn done(&self, image: &Reference, info: &ImageInfo) {
        match &self.kind {
            Kind::Quiet => {}
            Kind::Plain(p) => p.lock().expect("progress").line(done_line(image, info)),
            Kind::Bars(b) => {
                let mut b = b.lock().expect("progress");
                let img = b.image(image);
                for bar in img.layers.values() {
                    bar.finish();
                }
                img.overall.finish_with_message(format!("pulled {}", short(&info.manifest_digest)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn digest(hex_digit: char) -> Digest {
        Digest::from_hex(&hex_digit.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(12_345_678), "12.3 MB");
        assert_eq!(human_bytes(42_100_000), "42.1 MB");
        assert_eq!(human_bytes(1_500), "1.5 kB");
    }

    #[test]
    fn plain_lines_per_finished_layer() {
        let buf = Buffer::default();
        let p = Progress::plain(Box::new(buf.clone()));
        let image = Reference::parse("redis:7").unwrap();
        let (a, b, c) = (digest('a'), digest('b'), digest('c'));
        p.resolved(&image, &digest('f'), &[(a.clone(), 12_345_678), (b.clone(), 10)]);
        p.layer_cached(&image, &b);
        p.layer_bytes(&image, &a, 1000);
        p.retry(&image, "layer sha256:aaaa", 2, "connection reset");
        p.layer_done(&image, &a);
        p.layer_done(&image, &c); // not announced: no size
        let info = ImageInfo {
            reference: image.clone(),
            manifest_digest: digest('f'),
            config_digest: digest('e'),
            config: Default::default(),
            layers: Vec::new(),
            size: 34_500_000,
        };
        p.done(&image, &info);
        p.finish();
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            out,
            "redis:7 layer bbbbbbbbbbbb… already exists\n\
             redis:7 layer sha256:aaaa: retrying (attempt 2) after: connection reset\n\
             redis:7 layer aaaaaaaaaaaa… 12.3 MB done\n\
             redis:7 layer cccccccccccc… done\n\
             redis:7 pulled sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff (34.5 MB)\n"
        );
    }

    #[test]
    fn quiet_says_nothing_and_bars_finish() {
        let image = Reference::parse("nginx").unwrap();
        let q = Progress::stderr(true);
        q.layer_done(&image, &digest('a'));
        q.finish();
        // Bars drawn nowhere: every event works without a terminal, and finishing leaves nothing.
        let bars = Progress {
            kind: Kind::Bars(Mutex::new(Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
                images: BTreeMap::new(),
            })),
        };
        bars.resolved(&image, &digest('f'), &[(digest('a'), 100), (digest('b'), 50)]);
        bars.layer_cached(&image, &digest('b'));
        bars.layer_bytes(&image, &digest('a'), 60);
        bars.retry(&image, "layer", 1, "timeout");
        if let Kind::Bars(b) = &bars.kind {
            let mut b = b.lock().unwrap();
            assert_eq!(b.image(&image).overall.position(), 110);
            assert_eq!(b.image(&image).overall.length(), Some(150));
        }
        bars.finish();
    }
}
