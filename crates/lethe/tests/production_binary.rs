//! The binary built without `--features bench` (the one deployed) carries
//! no benchmark code: `lethe bench` is not a command there.

mod common;

use common::BIN;

#[test]
fn the_production_binary_has_no_bench_commands() {
    if cfg!(feature = "bench") {
        return;
    }
    let out = std::process::Command::new(BIN)
        .args(["bench", "export", "--mb", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unrecognized subcommand 'bench'"), "{err}");
    let help = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("demo") && !help.contains("bench"), "{help}");
}
