//! Unit tests of the directory source: names, caps, symlinks and files being written.

#![allow(clippy::unwrap_used, reason = "tests panic on setup failures")]

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;

const PROVIDER: &str = "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: fake}\nspec: {type: fake}\n";

/// Writes `text` with a modification time in the past, so the file counts as settled.
fn write_settled(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(10))
        .unwrap();
}

fn errors(dir: &Path, limits: &DirLimits) -> Vec<String> {
    match read_once(dir, limits) {
        Err(ReadError::Invalid(errors)) => errors,
        other => panic!("expected errors, got {other:?}"),
    }
}

#[test]
fn reads_manifests_and_skips_hidden_and_editor_files() {
    let dir = tempfile::tempdir().unwrap();
    write_settled(&dir.path().join("a.yaml"), PROVIDER);
    for name in [
        ".a.yaml.tmp",
        "a.yaml.tmp",
        "a.yaml~",
        ".#a.yaml",
        "#a.yaml#",
        "a.yaml.swp",
        ".hidden.yaml",
    ] {
        write_settled(&dir.path().join(name), "kind: [broken");
    }
    let contents = read_once(dir.path(), &DirLimits::default()).unwrap();
    assert_eq!(contents.manifests.providers.len(), 1);
}

#[test]
fn each_cap_refuses_with_the_file_and_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    write_settled(&dir.path().join("a.yaml"), PROVIDER);
    write_settled(
        &dir.path().join("b.yaml"),
        &format!(
            "{PROVIDER}---\n{}",
            PROVIDER.replace("{name: fake}", "{name: other}")
        ),
    );
    let size = PROVIDER.len() as u64;
    let per_file = DirLimits {
        file_bytes: size,
        ..DirLimits::default()
    };
    let found = errors(dir.path(), &per_file);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("b.yaml: ") && found[0].contains("MAX_CONFIG_FILE_BYTES"),
        "{found:?}"
    );
    let total = DirLimits {
        total_bytes: size * 2,
        ..DirLimits::default()
    };
    let found = errors(dir.path(), &total);
    assert!(found[0].contains("MAX_CONFIG_TOTAL_BYTES"), "{found:?}");
    let documents = DirLimits {
        documents: 2,
        ..DirLimits::default()
    };
    let found = errors(dir.path(), &documents);
    assert!(found[0].contains("MAX_CONFIG_DOCUMENTS"), "{found:?}");
    let roomy = DirLimits {
        documents: 3,
        total_bytes: size * 3 + 8,
        file_bytes: size * 2 + 8,
    };
    assert_eq!(
        read_once(dir.path(), &roomy)
            .unwrap()
            .manifests
            .providers
            .len(),
        3
    );
}

#[test]
fn a_symlink_leading_outside_is_refused_and_a_dangling_one_skipped() {
    let outside = tempfile::tempdir().unwrap();
    write_settled(&outside.path().join("elsewhere.yaml"), PROVIDER);
    let dir = tempfile::tempdir().unwrap();
    symlink(
        outside.path().join("elsewhere.yaml"),
        dir.path().join("link.yaml"),
    )
    .unwrap();
    let found = errors(dir.path(), &DirLimits::default());
    assert!(
        found[0].starts_with("link.yaml: ") && found[0].contains("outside the config directory"),
        "{found:?}"
    );
    std::fs::remove_file(dir.path().join("link.yaml")).unwrap();
    symlink(
        outside.path().join("missing.yaml"),
        dir.path().join("dangling.yaml"),
    )
    .unwrap();
    let contents = read_once(dir.path(), &DirLimits::default()).unwrap();
    assert!(contents.manifests.is_empty());
}

/// The layout kubelet gives a ConfigMap volume: the files live in a hidden timestamped
/// directory, `..data` points at it and each visible name points through `..data`.
#[test]
fn a_configmap_mount_is_read_through_its_links() {
    let dir = tempfile::tempdir().unwrap();
    let version = dir.path().join("..2025_01_01_00_00_00.000000001");
    std::fs::create_dir(&version).unwrap();
    write_settled(&version.join("config.yaml"), PROVIDER);
    symlink("..2025_01_01_00_00_00.000000001", dir.path().join("..data")).unwrap();
    symlink("..data/config.yaml", dir.path().join("config.yaml")).unwrap();
    let contents = read_once(dir.path(), &DirLimits::default()).unwrap();
    assert_eq!(contents.manifests.providers.len(), 1);
}

#[test]
fn a_file_written_moments_ago_is_read_once_it_settles() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), PROVIDER).unwrap();
    assert!(matches!(
        read_once(dir.path(), &DirLimits::default()),
        Err(ReadError::Changing(name)) if name == "a.yaml"
    ));
    let contents =
        read_settled(dir.path(), &DirLimits::default(), &mut Default::default()).unwrap();
    assert_eq!(contents.manifests.providers.len(), 1);
}

#[test]
fn parse_errors_name_the_file_and_never_quote_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    write_settled(
        &dir.path().join("s.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: \"sk-live-SECRET123\"\n",
    );
    let found = errors(dir.path(), &DirLimits::default());
    assert!(
        found[0].starts_with("s.yaml: document 1: Secret s"),
        "{found:?}"
    );
    assert!(!found[0].contains("SECRET123"), "{found:?}");
}

#[test]
fn documents_are_counted_by_their_start_markers() {
    assert_eq!(count_documents("a: 1\n"), 1);
    assert_eq!(count_documents("a: 1\n---\nb: 2\n--- \nc: 3\n"), 3);
    assert_eq!(count_documents("a: |\n  ---x\n----\n"), 1);
    assert_eq!(count_documents("a: 1\r\n---\r\nb: 2\r\n"), 2);
}

#[test]
fn documents_are_counted_across_every_yaml_line_break() {
    let doc = "{apiVersion: v1, kind: Secret, metadata: {name: a}}";
    for separator in ["\n", "\r", "\r\n", "\u{85}", "\u{2028}", "\u{2029}"] {
        let text = format!("---{separator}{doc}{separator}---{separator}{doc}{separator}");
        assert_eq!(count_documents(&text), 3, "{separator:?}");
    }
    assert_eq!(count_documents("a: 1\n...\nb: 2\n"), 2);
}
