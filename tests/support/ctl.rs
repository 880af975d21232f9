//! Running `pgpilotctl` against a [`TestCluster`], with node 0's
//! configuration.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use super::cluster::TestCluster;

/// `pgpilotctl -c <node 0's config> args...` with `env` added, answering
/// its prompts from `stdin`.
pub fn run(c: &TestCluster, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgpilotctl"))
        .envs(env.iter().copied())
        .arg("-c")
        .arg(&c.nodes[0].config_path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgpilotctl");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("pgpilotctl output")
}

/// [`run`] without input, which must succeed: its standard output.
pub fn ok(c: &TestCluster, args: &[&str]) -> String {
    let out = run(c, args, "", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pgpilotctl {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
