//! Running the short-lived PostgreSQL tools (initdb, pg_controldata,
//! pg_basebackup) and turning failures into [`PgError`]s with context.

use std::process::{Output, Stdio};

use tokio::process::Command;

use super::error::{PgError, PgResult, STDERR_TAIL_LINES, last_lines};

/// A printable form of the command for error messages (program and args;
/// callers never put secrets in args — passwords go through files).
pub fn describe(cmd: &Command) -> String {
    let std = cmd.as_std();
    let mut s = std.get_program().to_string_lossy().into_owned();
    for a in std.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion with stdin closed, capturing its output.
/// A non-zero exit is an error carrying the last lines of stderr (or of
/// stdout when stderr is empty).
pub async fn run(mut cmd: Command) -> PgResult<Output> {
    let command = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = cmd.output().await.map_err(|source| PgError::Spawn {
        command: command.clone(),
        source,
    })?;
    if out.status.success() {
        return Ok(out);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = if stderr.trim().is_empty() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        stderr.into_owned()
    };
    Err(PgError::CommandFailed {
        command,
        status: out.status.to_string(),
        stderr: last_lines(&text, STDERR_TAIL_LINES),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failure_carries_stderr_tail() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo one >&2; echo two >&2; exit 3"]);
        let err = run(cmd).await.unwrap_err();
        match err {
            PgError::CommandFailed {
                command,
                status,
                stderr,
            } => {
                assert!(command.starts_with("sh -c"));
                assert!(status.contains('3'));
                assert_eq!(stderr, vec!["one", "two"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn missing_program_is_spawn_error() {
        let err = run(Command::new("/nonexistent/pgpilot-nope"))
            .await
            .unwrap_err();
        assert!(matches!(err, PgError::Spawn { .. }));
    }
}
