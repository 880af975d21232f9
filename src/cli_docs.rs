//! Shell completions and man pages generated from a binary's clap
//! definition, for the Debian package (scripts/package; docs/operations.md,
//! "Installation"): `pgpilot --completion SHELL` / `--man-pages DIR` and
//! `pgpilotctl completion SHELL` / `man-pages DIR`. Generated from the
//! definitions so they never drift from the options the binaries take.

use std::io;
use std::path::{Path, PathBuf};

/// The completion script of `cmd` for `shell`. Generated into memory:
/// clap_complete panics on a failed write (a closed pipe), we return the
/// error instead.
pub fn completion(shell: clap_complete::Shell, cmd: &mut clap::Command) -> Vec<u8> {
    let name = cmd.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(shell, cmd, name, &mut script);
    script
}

/// Write the man pages of `cmd` into `dir` (section 1): `<name>.1`, and
/// `<name>-<sub>.1` for every visible subcommand, as git's pages are.
/// Returns the files written.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    // Built: each subcommand then has its display name (`<name>-<sub>`,
    // the page's title) and bin name (`<name> <sub>`, its synopsis).
    let mut cmd = cmd;
    cmd.build();
    let name = cmd.get_name().to_owned();
    // Every page's footer names the program and its version.
    let source = format!("{name} {}", cmd.get_version().unwrap_or_default());
    let mut written = Vec::new();
    let mut write = |page_name: &str, c: clap::Command| -> io::Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c)
            .source(source.clone())
            .render(&mut buf)?;
        let path = dir.join(format!("{page_name}.1"));
        std::fs::write(&path, buf)?;
        written.push(path);
        Ok(())
    };
    // clap's own `help` subcommand gets no page: `<name>(1)` lists them all.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let page = format!("{name}-{}", sub.get_name());
        write(&page, sub.clone())?;
    }
    write(&name, cmd)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> clap::Command {
        clap::Command::new("tool")
            .version("1.2.3")
            .about("A tool")
            .arg(
                clap::Arg::new("verbose")
                    .long("verbose")
                    .help("Say more")
                    .action(clap::ArgAction::SetTrue),
            )
            .subcommand(clap::Command::new("list").about("List things"))
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn man_pages_for_the_command_and_each_visible_subcommand() {
        let dir = std::env::temp_dir().join(format!("pgpilot-man-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = write_man_pages(cmd(), &dir).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tool-list.1", "tool.1"]);
        let main = std::fs::read_to_string(dir.join("tool.1")).unwrap();
        assert!(main.contains(".TH"), "{main}");
        assert!(main.contains("Say more"), "{main}");
        assert!(main.contains("List things"), "{main}");
        assert!(!main.contains("secret"), "{main}");
        let list = std::fs::read_to_string(dir.join("tool-list.1")).unwrap();
        assert!(list.contains("List things"), "{list}");
        // Titled and footed as the whole command.
        assert!(list.contains(".TH tool-list 1  \"tool 1.2.3\""), "{list}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn completions_name_the_options() {
        let bash = String::from_utf8(completion(clap_complete::Shell::Bash, &mut cmd())).unwrap();
        assert!(bash.contains("--verbose"), "{bash}");
        assert!(bash.contains("complete -F"), "{bash}");
    }
}
