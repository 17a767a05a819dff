//! The `devenv` binary: parse the command line, set up logging, hand over to the library.

use clap::Parser;

fn main() {
    // The runtime helper mode (`devenv __runtime ...`) must start before anything else: it calls
    // libcontainer, which clones this process and so needs it single-threaded (see
    // `devenv::runtime::helper`).
    if std::env::args_os().nth(1).as_deref() == Some(devenv::runtime::helper::HELPER_ARG.as_ref()) {
        std::process::exit(devenv::runtime::helper::main());
    }
    // So is the exec helper (`devenv __exec ...`), which the supervisor runs: exec forks and
    // joins namespaces, which needs a single thread.
    if std::env::args_os().nth(1).as_deref() == Some(devenv::runtime::exec::HELPER_ARG.as_ref()) {
        std::process::exit(devenv::runtime::exec::helper_main());
    }
    let cli = devenv::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEVENV_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    std::process::exit(devenv::cli::run(cli));
}
