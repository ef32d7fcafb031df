//! flatnet-cni: the CNI plugin. It forwards every request to flatnetd.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    if std::io::stdin().read_to_end(&mut stdin).is_err() {
        stdin.clear();
    }
    let env = |k: &str| std::env::var(k).ok();
    let (out, code) = flatnet_agent::cni::run(&env, &stdin, Duration::from_secs(120));
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(out.as_bytes());
    let _ = o.flush();
    if code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
