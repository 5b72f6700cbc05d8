//! Runs one shell command in the test VM (Debian's kernel, this machine's
//! root read-only): for trying a kernel feature by hand before writing its
//! test.
//!
//! `cargo run -p bulkhead-netns --example vm_shell -- 'nft list ruleset' [MODULE...]`

use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(script) = args.next() else {
        eprintln!("usage: vm_shell 'COMMAND' [MODULE...]");
        std::process::exit(2);
    };
    let modules: Vec<String> = args.collect();
    let modules: Vec<&str> = modules.iter().map(String::as_str).collect();
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/vm");
    let kernel = bulkhead_netns::vm::prepare(&target)?;
    let cwd = std::env::current_dir()?;
    let outcome = bulkhead_netns::vm::run(
        &kernel,
        &bulkhead_netns::vm::VmCommand {
            argv: &["/bin/sh", "-c", &script],
            cwd: &cwd,
            env: &[],
            modules: &modules,
            memory_mib: 1024,
            timeout: Duration::from_secs(300),
        },
    )?;
    print!("{}", outcome.output);
    eprintln!(
        "vm: {} in {:.1}s, status {:?}",
        outcome.accel,
        outcome.took.as_secs_f32(),
        outcome.status
    );
    std::process::exit(outcome.status.unwrap_or(1));
}
