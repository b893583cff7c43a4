//! Finding the project's binaries in the cargo target directory.

use std::path::PathBuf;

/// The path of binary `name` built in the same target directory as the running
/// executable (tests live in `target/<profile>/deps`, binaries in `target/<profile>`).
pub fn path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(|p| p.to_path_buf());
    while let Some(d) = dir {
        let candidate = d.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        if d.file_name().is_some_and(|n| n == "target") {
            break;
        }
        dir = d.parent().map(|p| p.to_path_buf());
    }
    anyhow::bail!(
        "binary `{name}` not found near {}; build it first: cargo build --workspace --bins",
        exe.display()
    )
}
