//! `shmlane bridge ARGS...`: runs the `shmlane-bridge` binary (crates/bridge) with ARGS, so that
//! zenoh stays out of this binary's build. It is looked for next to this binary, then on PATH.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// `shmlane bridge`: every argument goes to `shmlane-bridge` (`shmlane bridge --help` shows its
/// options).
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct BridgeArgs {
    /// Arguments of `shmlane-bridge`
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

/// The name of the bridge's binary.
const BINARY: &str = "shmlane-bridge";

/// Runs `shmlane-bridge` with the arguments and exits with its status.
pub fn run(args: BridgeArgs) -> ExitCode {
    let Some(binary) = find() else {
        eprintln!(
            "shmlane: {BINARY} was not found next to this binary or on PATH: build it with \
             `cargo build -p shmlane-bridge` (or install it with `cargo install --path crates/bridge`)"
        );
        return ExitCode::from(2);
    };
    use std::os::unix::process::CommandExt;
    // exec: the bridge takes this process's place (its signals, its exit status).
    let error = std::process::Command::new(&binary).args(&args.args).exec();
    eprintln!("shmlane: cannot run {}: {error}", binary.display());
    ExitCode::from(1)
}

/// `shmlane-bridge` next to this binary, else the first on PATH.
fn find() -> Option<PathBuf> {
    let sibling = std::env::current_exe().ok()?.parent()?.join(BINARY);
    if sibling.is_file() {
        return Some(sibling);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(BINARY)).find(|p| p.is_file())
}
