//! `demo-server`: the service inside mkportable's demo portable image.
//!
//! `demo-server serve` is the long-running `demo.service`: it counts its starts
//! in `$STATE_DIRECTORY/starts` and writes a heartbeat to
//! `$RUNTIME_DIRECTORY/heartbeat` every second. `demo-server greet` is the
//! per-connection `demo@.service` behind `demo.socket` (`Accept=yes`): systemd
//! hands it the connection as stdin and stdout, and it answers with a greeting
//! that names the image it runs from (read from `/etc/os-release`).
//!
//! It uses only the standard library, so it links statically and needs nothing
//! from the host.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;
use std::{env, fs, thread};

fn main() {
    let mode = env::args().nth(1).unwrap_or_default();
    let res = match mode.as_str() {
        "serve" => serve(),
        "greet" => greet(),
        _ => {
            eprintln!("usage: demo-server serve|greet");
            std::process::exit(2);
        }
    };
    if let Err(e) = res {
        eprintln!("demo-server: {e}");
        std::process::exit(1);
    }
}

fn dir_from_env(var: &str) -> io::Result<PathBuf> {
    env::var_os(var)
        .map(PathBuf::from)
        .ok_or_else(|| io::Error::other(format!("{var} is not set (run me from systemd)")))
}

fn serve() -> io::Result<()> {
    let state = dir_from_env("STATE_DIRECTORY")?;
    let runtime = dir_from_env("RUNTIME_DIRECTORY")?;
    let starts_path = state.join("starts");
    let starts = fs::read_to_string(&starts_path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    fs::write(&starts_path, format!("{starts}\n"))?;
    println!(
        "demo: started ({starts} start(s) so far), image {}",
        image_name()
    );
    for beat in 1u64.. {
        fs::write(runtime.join("heartbeat"), format!("demo alive {beat}\n"))?;
        thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

fn greet() -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "hello from {}", image_name())?;
    out.flush()
}

/// `PORTABLE_ID IMAGE_VERSION` from the image's os-release.
fn image_name() -> String {
    let text = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "?".to_string())
    };
    format!("{} {}", field("PORTABLE_ID"), field("IMAGE_VERSION"))
}
