//! The browser client (`js/volley.js`) without a server: against the protocol's test
//! vectors, run with Node.js (both clients must read and write the same bytes), and its
//! TypeScript declarations (`js/volley.d.ts`) checked by `tsc`. Skipped, saying so,
//! when `node` (or TypeScript, from `npm ci` in `framework/js`) is not installed, unless
//! `VOLLEY_REQUIRE_NODE` is set (as in CI).

use std::path::Path;
use std::process::Command;

/// Skips the calling test with `why`, or fails it where Node.js is required.
fn skip(why: &str) {
    assert!(std::env::var_os("VOLLEY_REQUIRE_NODE").is_none(), "{why}");
    eprintln!("SKIPPED: {why}");
}

#[test]
fn browser_client_round_trips_every_protocol_vector() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let script = format!("{root}/framework/js/test/vectors.cjs");
    let doc = format!("{root}/docs/protocol.md");
    let output = match Command::new("node").arg(&script).arg(&doc).output() {
        Ok(output) => output,
        Err(e) => {
            return skip(&format!(
                "node is not available ({e}); the browser client was not checked"
            ))
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

#[test]
fn typescript_declarations_fit_a_typed_use_of_the_api() {
    let js = concat!(env!("CARGO_MANIFEST_DIR"), "/js");
    let tsc = format!("{js}/node_modules/typescript/bin/tsc");
    if !Path::new(&tsc).exists() {
        return skip(
            "TypeScript is not installed (npm ci in framework/js); volley.d.ts was not checked",
        );
    }
    // test/tsconfig.json says the same; on the command line so that no config can drop them.
    let output = match Command::new("node")
        .arg(&tsc)
        .args(["-p", &format!("{js}/test"), "--noEmit", "--strict"])
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            return skip(&format!(
                "node is not available ({e}); volley.d.ts was not checked"
            ))
        }
    };
    assert!(
        output.status.success(),
        "tsc refused js/test/typed.ts against volley.d.ts:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
