//! Link the binaries with packed relative relocations (`DT_RELR`) where
//! the toolchain can (docs/operations.md, "Footprint beside Patroni").
//!
//! Why: the binaries are position-independent (ASLR), and a PIE of this
//! size carries ~18,000 relative relocations, 430 KB of `.rela.dyn` that
//! the dynamic loader reads once at start and that then stays resident in
//! every daemon for its whole life. `-z pack-relative-relocs` (GNU ld ≥
//! 2.38, glibc ≥ 2.36) packs them into ~5 KB of `.relr.dyn`: the idle
//! daemon's resident set drops by ~0.4 MB, with ASLR kept. Non-PIE
//! (`relocation-model=static`) would save as much and more, but gives up
//! ASLR in a daemon that serves a network API: refused.
//!
//! The linker is probed first: a toolchain that refuses the option
//! (another linker, an older binutils) links the binaries as before, with
//! a build warning, rather than failing the build. GNU ld leaves the
//! option out by itself when the C library lacks `GLIBC_ABI_DT_RELR`.

use std::path::PathBuf;
use std::process::Command;

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || env != "gnu" {
        return;
    }
    match linker_accepts(FLAG) {
        Ok(()) => println!("cargo:rustc-link-arg-bins={FLAG}"),
        Err(why) => println!(
            "cargo:warning=binaries linked without {FLAG} (the linker refused it: {why}); \
             each daemon keeps ~0.4 MB more resident"
        ),
    }
}

/// Link an empty C program with `flag` through the C compiler driver
/// rustc links with (`cc`, or `$RUSTC_LINKER`).
fn linker_accepts(flag: &str) -> Result<(), String> {
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let src = out.join("relr_probe.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").map_err(|e| e.to_string())?;
    let cc = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_owned());
    let result = Command::new(&cc)
        .arg("-pie")
        .arg("-fPIE")
        .arg(flag)
        .arg(&src)
        .arg("-o")
        .arg(out.join("relr_probe"))
        .output()
        .map_err(|e| format!("{cc}: {e}"))?;
    if result.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&result.stderr)
            .lines()
            .next()
            .unwrap_or("no message")
            .to_owned())
    }
}
