//! `devenv login`: store credentials for a registry, as `docker login` does.

use std::io::{BufRead, IsTerminal, Write};
use std::os::fd::AsFd;

use anyhow::{bail, Context};
use nix::sys::termios::{self, LocalFlags, SetArg};

use crate::registry::{self, RegistryConfig};

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The registry, for example `registry.example.com:5000` or `docker.io`.
    pub registry: String,
    /// The user name; asked for on a terminal when not given.
    #[arg(short, long)]
    pub username: Option<String>,
    /// The password (visible to other users of this machine: prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

pub fn run(args: &LoginArgs) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let user = match &args.username {
        Some(u) => u.clone(),
        None if terminal && !args.password_stdin => prompt("Username: ", true)?,
        None => bail!("give the user name with --username"),
    };
    let password = if args.password_stdin {
        read_line(&mut stdin.lock())?
    } else if let Some(p) = &args.password {
        eprintln!(
            "WARNING! Using --password on the command line is insecure. Use --password-stdin."
        );
        p.clone()
    } else if terminal {
        prompt("Password: ", false)?
    } else {
        bail!("give the password with --password-stdin (standard input is not a terminal)");
    };
    if user.is_empty() || password.is_empty() {
        bail!("the user name and the password must not be empty");
    }
    let config = RegistryConfig::from_env().context("reading the registry configuration")?;
    registry::login(&args.registry, &user, &password, &config)?;
    println!("Login Succeeded");
    Ok(())
}

/// One line of input without its line ending.
fn read_line(input: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input.read_line(&mut line).context("reading standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Asks on stderr and reads a line from the terminal; without `echo`, what is typed is not shown
/// (the terminal's echo is off while reading and restored afterwards, even on error).
fn prompt(question: &str, echo: bool) -> anyhow::Result<String> {
    eprint!("{question}");
    std::io::stderr().flush()?;
    let stdin = std::io::stdin();
    if echo {
        return read_line(&mut stdin.lock());
    }
    let saved = termios::tcgetattr(stdin.as_fd()).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    termios::tcsetattr(stdin.as_fd(), SetArg::TCSAFLUSH, &quiet)
        .context("turning off the terminal's echo")?;
    let line = read_line(&mut stdin.lock());
    let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSAFLUSH, &saved);
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_line_loses_its_ending_only() {
        let mut input = &b"s3cret pass\r\nnext\n"[..];
        assert_eq!(super::read_line(&mut input).unwrap(), "s3cret pass");
        assert_eq!(super::read_line(&mut input).unwrap(), "next");
    }
}
