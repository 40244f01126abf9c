//! The browser client (`js/volley.js`) against the protocol's test vectors, run with
//! Node.js: both clients must read and write the same bytes. Skipped, saying so,
//! when `node` is not installed.

use std::process::Command;

#[test]
fn browser_client_round_trips_every_protocol_vector() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let script = format!("{root}/framework/js/test/vectors.cjs");
    let doc = format!("{root}/docs/protocol.md");
    let output = match Command::new("node").arg(&script).arg(&doc).output() {
        Ok(output) => output,
        Err(e) => {
            eprintln!("SKIPPED: node is not available ({e}); the browser client was not checked");
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "volley.js failed the vectors:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
