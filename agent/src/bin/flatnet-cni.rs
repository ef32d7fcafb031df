//! flatnet-cni: the CNI plugin. It forwards every request to flatnetd.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let env = |k: &str| std::env::var(k).ok();
    let (out, code) = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => flatnet_agent::cni::run(&env, &stdin, Duration::from_secs(120)),
        Err(e) => flatnet_agent::cni::io_failure(&e),
    };
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(out.as_bytes());
    let _ = o.flush();
    if code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
