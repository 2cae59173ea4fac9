//! The hostile-input corpus (`tests/data/bad/`, made by `tools/make_bad_corpus.py`): every file
//! makes `attnviz render` exit with code 2 and one `error:` line naming the file and the
//! problem, and leaves no output or temp file behind.

use std::path::Path;
use std::process::Command;

#[test]
fn every_corpus_file_fails_cleanly() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad");
    let table = std::fs::read_to_string(corpus.join("EXPECTED.tsv")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.png");
    let mut checked = 0;
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, needle) = line.split_once('\t').unwrap();
        let input = corpus.join(name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_attnviz"));
        cmd.args([
            "render",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--backend",
            "cpu",
        ]);
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        let lines: Vec<_> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: {err}");
        assert!(
            lines[0].starts_with("error: ") && lines[0].contains(name),
            "{name}: {err}"
        );
        assert!(
            lines[0].contains(needle),
            "{name}: expected '{needle}' in: {err}"
        );
        assert!(!out.exists(), "{name}: an output file was written");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{name}: temp files left"
        );
        checked += 1;
    }
    assert!(checked >= 30, "the corpus has only {checked} files");
}

/// The parsers alone, on every corpus file, through the public entry points the fuzz targets
/// use: they return errors, never panic.
#[test]
fn parsers_reject_every_corpus_file() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad");
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".npy") {
            assert!(
                attnviz::source::npy::parse(&bytes, bytes.len() as u64).is_err(),
                "{name}"
            );
        } else if name.ends_with(".safetensors") {
            assert!(
                attnviz::source::safetensors::parse(&bytes, None).is_err(),
                "{name}"
            );
        }
    }
}
