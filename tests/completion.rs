//! `pgpilotctl completion SHELL`: the scripts name every subcommand, bash
//! accepts its script (`bash -n`) and completes with it, and no
//! configuration or DCS is needed.

use std::io::Write;
use std::process::{Command, Stdio};

const SUBCOMMANDS: &[&str] = &[
    "list",
    "topology",
    "history",
    "show-config",
    "edit-config",
    "pause",
    "resume",
    "switchover",
    "failover",
    "restart",
    "reload",
    "flush",
    "query",
    "reinit",
    "remove",
    "dsn",
    "version",
    "completion",
];

fn completion(shell: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilotctl"))
        .args(["completion", shell])
        // A configuration that does not exist: not read.
        .env("PATRONICTL_CONFIG_FILE", "/nonexistent/pgpilotctl.yml")
        .output()
        .expect("run pgpilotctl completion");
    assert!(
        out.status.success(),
        "completion {shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 script")
}

/// Run `script` with bash, the completion script on stdin first.
fn bash(completion_script: &str, script: &str) -> std::process::Output {
    let mut child = Command::new("bash")
        .arg("-s")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bash");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{completion_script}\n{script}\n").as_bytes())
        .expect("write script");
    drop(stdin);
    child.wait_with_output().expect("bash output")
}

#[test]
fn bash_completion_script() {
    let script = completion("bash");
    for sub in SUBCOMMANDS {
        assert!(
            script.contains(&format!("pgpilotctl,{sub})")),
            "no {sub} in the bash script"
        );
    }
    assert!(script.contains("complete -F _pgpilotctl"), "{script}");

    // bash -n: the syntax is valid.
    let mut child = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bash -n");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write script");
    let out = child.wait_with_output().expect("bash -n");
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // And it completes: a subcommand from its prefix, the values of --format.
    let out = bash(
        &script,
        r#"COMP_WORDS=(pgpilotctl swi); COMP_CWORD=1
_pgpilotctl pgpilotctl swi pgpilotctl; echo "sub: ${COMPREPLY[*]}"
COMP_WORDS=(pgpilotctl list -f ""); COMP_CWORD=3
_pgpilotctl pgpilotctl "" -f; echo "format: ${COMPREPLY[*]}""#,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sub: switchover\n"), "{stdout}");
    assert!(
        stdout.contains("format: pretty json yaml tsv\n"),
        "{stdout}"
    );
}

#[test]
fn zsh_and_fish_completion_scripts() {
    let zsh = completion("zsh");
    assert!(zsh.starts_with("#compdef pgpilotctl"), "{zsh}");
    let fish = completion("fish");
    for sub in SUBCOMMANDS {
        assert!(
            zsh.contains(&format!("'{sub}:")),
            "no {sub} in the zsh script"
        );
        assert!(
            fish.contains(&format!("-a \"{sub}\"")),
            "no {sub} in the fish script"
        );
    }
}

#[test]
fn unknown_shell_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_pgpilotctl"))
        .args(["completion", "tcsh"])
        .output()
        .expect("run pgpilotctl");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bash") && err.contains("zsh"), "{err}");
}
