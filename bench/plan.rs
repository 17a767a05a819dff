//! Benchmark: parse, interpolate, validate and plan (start layers) a generated 500-service
//! project file, the work every `devenv` command does before anything else.
//!
//! Run with `cargo bench --bench plan`. Prints the median, p95 and minimum over many runs;
//! BENCHMARKS.md records the figures.

use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use devenv::config::load_str;

/// A project of `n` services in the shapes real files use: short and long ports, bind and named
/// volumes, interpolated values, list and map `depends_on`, healthchecks, labels.
fn generate(n: usize) -> String {
    let mut s = String::from("name: bench\nx-common: &common\n  restart: unless-stopped\n  labels:\n    team: devenv\nservices:\n");
    for i in 0..n {
        let _ = write!(
            s,
            "  svc{i}:\n    <<: *common\n    image: \"${{REGISTRY:-docker.io}}/library/app:{i}\"\n    command: [\"sh\", \"-c\", \"echo $$HOSTNAME && sleep 3600\"]\n    environment:\n      INDEX: \"{i}\"\n      DB_URL: postgres://db:${{DB_PORT:-5432}}/app{i}\n"
        );
        let _ = write!(
            s,
            "    ports:\n      - \"127.0.0.1:{}:80\"\n      - target: 9000\n        published: \"{}\"\n        protocol: udp\n    volumes:\n      - ./src/svc{i}:/app:ro\n      - data{}:/var/lib/data\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 5s\n",
            10000 + i,
            20000 + i,
            i % 10
        );
        if i > 0 {
            let _ = write!(s, "    depends_on:\n      - svc{}\n", i / 2);
        }
        if i > 2 {
            let _ = writeln!(s, "      - svc{}", i - 3);
        }
    }
    s.push_str("volumes:\n");
    for v in 0..10 {
        let _ = writeln!(s, "  data{v}: {{}}");
    }
    s
}

fn main() {
    let text = generate(500);
    let env: HashMap<String, String> = [("DB_PORT".to_string(), "5433".to_string())].into();
    let run = || {
        let p =
            load_str(Path::new("bench.yaml"), &text, Path::new("/work/bench"), env.clone(), None)
                .expect("the generated project is valid");
        let layers = p.graph.start_layers();
        assert_eq!(layers.iter().map(Vec::len).sum::<usize>(), 500);
    };
    for _ in 0..5 {
        run();
    }
    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed()
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "plan/500-services: {} bytes, median {:.2} ms, p95 {:.2} ms, min {:.2} ms (200 runs)",
        text.len(),
        ms(times[times.len() / 2]),
        ms(times[times.len() * 95 / 100]),
        ms(times[0])
    );
}
