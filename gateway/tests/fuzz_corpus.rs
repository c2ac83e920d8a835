//! Replays every saved fuzz input (`fuzz/corpus/<target>/*`) through the same entry points the
//! `cargo fuzz` targets use: a crash the fuzzer once found stays a regression test.

use std::path::Path;

#[test]
fn every_corpus_input_runs_without_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut inputs = 0;
    for target in llm_gateway::fuzzing::TARGETS {
        let dir = root.join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            llm_gateway::fuzzing::run(target, &data);
            inputs += 1;
        }
    }
    assert!(
        inputs >= 20,
        "only {inputs} corpus inputs found under {}",
        root.display()
    );
}
