//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) and kept regressions
//! (`fuzz/regressions/<target>/`) through the target bodies: a regression test of every
//! input the fuzzers found interesting, run by `cargo nextest run --workspace` in CI.
//! No fuzzing happens here; see docs/fuzzing.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use tollgate_fuzz_targets::{TARGETS, seeds};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Runs every file of `dir` through `target`; returns how many, and the failures.
fn replay_dir(dir: &Path, target: fn(&[u8])) -> (usize, Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return (0, Vec::new());
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        let data = fs::read(file).unwrap();
        if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
            failures.push(file.display().to_string());
        }
    }
    (files.len(), failures)
}

fn replay(name: &str) {
    let target = TARGETS.iter().find(|(n, _)| *n == name).unwrap().1;
    let (corpus, mut failures) = replay_dir(&fuzz_dir().join("corpus").join(name), target);
    let (kept, more) = replay_dir(&fuzz_dir().join("regressions").join(name), target);
    failures.extend(more);
    assert!(corpus > 0, "no corpus for {name}");
    assert!(failures.is_empty(), "{name} fails on {failures:#?}");
    println!("{name}: {corpus} corpus inputs and {kept} regressions replayed");
}

#[test]
fn compact_jws() {
    replay("compact_jws");
}

#[test]
fn jwe() {
    replay("jwe");
}

#[test]
fn dpop_proof() {
    replay("dpop_proof");
}

#[test]
fn strict_json() {
    replay("strict_json");
}

#[test]
fn channel_grammar() {
    replay("channel_grammar");
}

#[test]
fn centrifugo_frame() {
    replay("centrifugo_frame");
}

#[test]
fn signalwire_frame() {
    replay("signalwire_frame");
}

#[test]
fn every_target_has_a_fuzz_binary() {
    for (name, _) in TARGETS {
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{name}.rs missing"
        );
    }
}

#[test]
fn seeds_pass() {
    for (target, name, data) in seeds() {
        let run = TARGETS.iter().find(|(n, _)| *n == target).unwrap().1;
        assert!(
            catch_unwind(AssertUnwindSafe(|| run(&data))).is_ok(),
            "seed {target}/{name} fails"
        );
    }
}

/// Writes the seeds into the corpora (run by hand, then `cargo fuzz cmin`).
#[test]
#[ignore = "writes into fuzz/corpus"]
fn write_seeds() {
    for (target, name, data) in seeds() {
        let dir = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    }
}
