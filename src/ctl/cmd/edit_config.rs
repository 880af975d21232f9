//! `pgpilotctl edit-config`: change the dynamic configuration (PATCH /config on the leader).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::config::ClientConfig;
use crate::ctl::context::{Connect, Ctx, confirm};
use crate::ctl::edit;
use crate::dcs::Version;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub cluster: Option<String>,
    /// Set a dotted key, e.g. `--set loop_wait=5`; an empty value deletes it.
    #[arg(short = 's', long = "set")]
    pub set: Vec<String>,
    /// Set a PostgreSQL parameter, e.g. `--pg work_mem=16MB`.
    #[arg(short = 'p', long = "pg")]
    pub pg: Vec<String>,
    /// Merge the YAML of FILE (`-` = stdin) into the configuration.
    #[arg(long, value_name = "FILE")]
    pub apply: Option<PathBuf>,
    /// Replace the configuration with the YAML of FILE (`-` = stdin);
    /// `--apply`, `--set` and `--pg` then apply on top of it.
    #[arg(long, value_name = "FILE")]
    pub replace: Option<PathBuf>,
    /// Do not show the changes (nor "Not changed").
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Apply without asking.
    #[arg(long)]
    pub force: bool,
}

/// A YAML mapping from FILE (`-` = stdin), for `--apply` and `--replace`.
fn read_yaml_file(file: &Path, option: &str) -> anyhow::Result<Value> {
    let text = if file.as_os_str() == "-" {
        let mut t = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
            .with_context(|| format!("reading {option} - from stdin"))?;
        t
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let v: Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("parsing {} as YAML", file.display()))?;
    if !v.is_object() {
        bail!("{}: expected a YAML mapping", file.display());
    }
    Ok(v)
}

pub async fn run(conn: &Connect, cfg: &ClientConfig, a: &Args) -> anyhow::Result<()> {
    let Args {
        cluster,
        set,
        pg,
        apply,
        replace,
        quiet,
        force,
    } = a;
    let ctx = Ctx::new(conn, cfg, cluster.as_ref())?;
    let cluster = ctx.cluster().await?;
    let (before, version) = cluster
        .config
        .as_ref()
        .map(|c| (c.value.clone(), c.version.clone()))
        .with_context(|| format!("cluster {} has no dynamic configuration", ctx.scope))?;
    // patronictl's order: --replace, then --apply, then --set/--pg (a
    // later option wins); the editor only when none is given.
    if replace
        .as_ref()
        .zip(apply.as_ref())
        .is_some_and(|(r, a)| r.as_os_str() == "-" && a.as_os_str() == "-")
    {
        bail!("--replace - and --apply - cannot both read stdin");
    }
    let mut after = before.clone();
    if let Some(file) = replace {
        after = read_yaml_file(file, "--replace")?;
    }
    if let Some(file) = apply {
        crate::config::patch_config(&mut after, read_yaml_file(file, "--apply")?);
    }
    if set.is_empty() && pg.is_empty() && apply.is_none() && replace.is_none() {
        after = run_editor(&before)?;
    } else {
        edit::apply_options(&mut after, set, pg)?;
    }
    let diff = edit::diff(
        &serde_yaml_ng::to_string(&before)?,
        &serde_yaml_ng::to_string(&after)?,
    );
    if diff.is_empty() {
        if !quiet {
            println!("Not changed");
        }
        return Ok(());
    }
    if !quiet {
        print!("{diff}");
    }
    if !force {
        // A file read from stdin consumed it: there is nothing left to answer.
        let stdin_file = |f: &Option<PathBuf>| f.as_ref().is_some_and(|f| f.as_os_str() == "-");
        if stdin_file(apply) || stdin_file(replace) {
            bail!("a file read from stdin (-): add --force to apply without asking");
        }
        confirm("Apply these changes?")?;
    }
    write_config(&ctx, version, &after).await?;
    println!("Configuration changed");
    Ok(())
}

/// What `edit-config` prints (exit 1) when the `config` key changed between
/// its read and its write.
const CONCURRENT_CHANGE: &str = "config changed concurrently, re-run";

/// `edit-config`'s write, as patronictl's: the whole edited document, checked
/// as the daemons check a `PATCH /config`, written to the DCS with
/// compare-and-swap on the `version` read before the edit. A change by
/// anyone else in between (another operator, `PATCH /config`, the leader
/// restoring the key) makes the write fail and nothing is written.
async fn write_config(ctx: &Ctx, version: Version, doc: &Value) -> anyhow::Result<()> {
    let Value::Object(map) = doc else {
        bail!("the configuration must be a mapping");
    };
    if let Err(e) = crate::api::config::validate_document(map) {
        bail!("the new configuration is refused: {}", e.message());
    }
    match ctx
        .dcs
        .set_config_value(&doc.to_string(), Some(&version))
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => bail!(
            "{CONCURRENT_CHANGE}: the config key of cluster {} is no longer the version read; \
             nothing was written",
            ctx.scope
        ),
        Err(e) => {
            Err(e).with_context(|| format!("writing the config key of cluster {}", ctx.scope))
        }
    }
}

/// Open `$EDITOR` (else `vi`) on the configuration as YAML; the edited
/// document. The file is created by `tempfile` (a random name, mode 0600,
/// created exclusively), so another user cannot plant or read it, and it
/// is removed whatever happens.
fn run_editor(config: &Value) -> anyhow::Result<Value> {
    let file = tempfile::Builder::new()
        .prefix("pgpilotctl-config-")
        .suffix(".yaml")
        .tempfile()
        .context("creating a temporary file for the editor")?;
    let path = file.path().to_owned();
    std::fs::write(&path, serde_yaml_ng::to_string(config)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let editor = std::env::var("EDITOR")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_owned());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .with_context(|| format!("running the editor {editor}"));
    // Read by path: an editor may have replaced the file rather than
    // rewritten it.
    let text = std::fs::read_to_string(&path);
    drop(file);
    let status = status?;
    if !status.success() {
        bail!("the editor {editor} exited with {status}; nothing changed");
    }
    let text = text.context("reading the edited configuration")?;
    let v: Value =
        serde_yaml_ng::from_str(&text).context("the edited configuration is not valid YAML")?;
    if !v.is_object() {
        bail!("the edited configuration is not a YAML mapping");
    }
    Ok(v)
}
