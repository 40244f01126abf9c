//! The `volley` crate as it would be published (`cargo package --list`): what a user
//! of the crate needs is in it, nothing else is, and nothing in it reads a file
//! outside the crate, a path that a downloaded crate does not have. The API docs
//! themselves are checked by CI (`cargo doc` with warnings as errors).

use std::path::Path;
use std::process::Command;

/// Files a crate may be published with besides its sources, tests and browser client.
const MANIFESTS: [&str; 5] = [
    "Cargo.toml",
    "Cargo.toml.orig",
    "Cargo.lock",
    "README.md",
    ".cargo_vcs_info.json",
];

/// A test fixture or script larger than this is a mistake, not a need.
const LARGEST_FILE: u64 = 256 * 1024;

fn framework() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../framework"))
}

/// The files `cargo package` would put in the crate, relative to framework/.
fn packaged() -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .args(["package", "-p", "volley", "--list", "--allow-dirty"])
        .current_dir(framework())
        .output()
        .expect("run cargo package");
    assert!(
        output.status.success(),
        "cargo package --list failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_published_crate_holds_the_library_and_its_tests_and_nothing_else() {
    let files = packaged();
    for needed in [
        "README.md",
        "src/lib.rs",
        "src/tls.rs",
        "tests/core/main.rs",
        "tests/fixtures/tls/cert.pem",
        "tests/fixtures/tls/key.pem",
        "tests/fixtures/tls/ca.pem",
        "js/volley.js",
    ] {
        assert!(
            files.iter().any(|f| f == needed),
            "{needed} is not packaged: {files:?}"
        );
    }
    let unexpected: Vec<_> = files
        .iter()
        .filter(|f| {
            !MANIFESTS.contains(&f.as_str())
                && !["src/", "tests/", "js/"]
                    .iter()
                    .any(|dir| f.starts_with(dir))
        })
        .collect();
    assert!(unexpected.is_empty(), "packaged by mistake: {unexpected:?}");
    for file in files.iter().filter(|f| !MANIFESTS.contains(&f.as_str())) {
        let size = std::fs::metadata(framework().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .len();
        assert!(size <= LARGEST_FILE, "{file} is {size} bytes");
    }
}

#[test]
fn nothing_in_the_published_crate_reads_outside_it() {
    for file in packaged().iter().filter(|f| f.ends_with(".rs")) {
        let path = framework().join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        for (n, line) in text.lines().enumerate() {
            let outside = ["\"../", "\"/../", "\"/..\""]
                .iter()
                .any(|up| line.contains(up));
            assert!(
                !outside,
                "framework/{file}:{}: reads outside the crate, which its published form \
                 does not have (move the file under framework/, or leave the test out of \
                 the package in framework/Cargo.toml):\n{line}",
                n + 1
            );
        }
    }
}
