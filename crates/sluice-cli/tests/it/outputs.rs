//! Output files are replaced only by a run that finished or was cleanly
//! interrupted: a failed run (bad data, a corrupt input, a full disk) leaves
//! the previous file as it was and says where its partial output is, and a
//! full disk is an I/O error (exit 3) naming the path.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{ok, sluice};

/// Writes `name` in `dir` with a header and `rows` rows of `id,v`.
fn csv(dir: &Path, name: &str, rows: u64) {
    let mut text = String::from("id,v\n");
    for i in 1..=rows {
        // Text that does not compress away: a full disk needs real bytes.
        let h = (i as u128 * 0x9E37_79B9_7F4A_7C15u128) ^ (i as u128 * 0xC2B2_AE3D_27D4_EB4F);
        text.push_str(&format!("{i},{h:032x}{:08x}\n", i * 2_654_435_761 % 4_294_967_291));
    }
    std::fs::write(dir.join(name), text).unwrap();
}

fn code_and_stderr(out: &std::process::Output) -> (Option<i32>, String) {
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_run_failing_on_bad_data_leaves_the_previous_output_and_names_the_partial_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    csv(d, "good.csv", 10);
    ok(&sluice(d, &["copy", "good.csv", "out.csv"]));
    let before = std::fs::read(d.join("out.csv")).unwrap();
    // A ragged row after several batches' worth of good ones.
    let mut ragged = std::fs::read_to_string(d.join("good.csv")).unwrap();
    for i in 11..=50_000 {
        ragged.push_str(&format!("{i},x{i}\n"));
    }
    ragged.push_str("50001,too,many,fields\n");
    for i in 50_002..=60_000 {
        ragged.push_str(&format!("{i},x{i}\n"));
    }
    std::fs::write(d.join("ragged.csv"), ragged).unwrap();
    for format in ["out.csv", "out.parquet", "out.ndjson"] {
        if format != "out.csv" {
            ok(&sluice(d, &["copy", "good.csv", format]));
        }
        let before_this = std::fs::read(d.join(format)).unwrap();
        let out = sluice(d, &["copy", "ragged.csv", format, "--batch-rows", "1000"]);
        let (code, err) = code_and_stderr(&out);
        assert_eq!(code, Some(4), "{err}");
        assert_eq!(
            std::fs::read(d.join(format)).unwrap(),
            before_this,
            "{format} is untouched by the failed run"
        );
        assert!(
            err.contains(&format!("{format}.part")) && err.contains("left as it was"),
            "the partial output is named:\n{err}"
        );
    }
    assert_eq!(std::fs::read(d.join("out.csv")).unwrap(), before);
}

#[test]
fn a_corrupt_compressed_input_does_not_publish_what_was_read_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    csv(d, "small.csv", 5);
    ok(&sluice(d, &["copy", "small.csv", "out.ndjson"]));
    let before = std::fs::read(d.join("out.ndjson")).unwrap();
    csv(d, "big.csv", 200_000);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &std::fs::read(d.join("big.csv")).unwrap()).unwrap();
    let mut bytes = gz.finish().unwrap();
    // Garbage in the middle of the deflate stream.
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5A;
    }
    std::fs::write(d.join("big.csv.gz"), bytes).unwrap();
    let out = sluice(d, &["copy", "big.csv.gz", "out.ndjson"]);
    let (code, err) = code_and_stderr(&out);
    assert!(matches!(code, Some(3 | 4)), "a failure, not success ({code:?}):\n{err}");
    assert_eq!(std::fs::read(d.join("out.ndjson")).unwrap(), before, "untouched");
    assert!(err.contains("out.ndjson.part"), "{err}");
}

/// A directory whose file system is full after 1 MiB: a tmpfs mounted for
/// the test when the test may mount, otherwise `PATH.part` linked to
/// `/dev/full`, which refuses every write with "no space left on device".
struct FullDisk {
    dir: PathBuf,
    mounted: bool,
}

impl FullDisk {
    fn new(base: &Path) -> Option<FullDisk> {
        let dir = base.join("small");
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if !mounted && !Path::new("/dev/full").exists() {
            let why = "cannot mount a tmpfs and there is no /dev/full";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{why}; CI needs one of them to test a full disk");
            }
            eprintln!("\n*** SKIPPED: {why} ***\n");
            return None;
        }
        Some(FullDisk { dir, mounted })
    }

    /// Prepares `name` to fail on a full disk (without a tmpfs: its part
    /// file is `/dev/full`).
    fn path(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        if !self.mounted {
            let part = self.dir.join(format!("{name}.part"));
            let _ = std::fs::remove_file(&part);
            std::os::unix::fs::symlink("/dev/full", &part).unwrap();
        }
        path
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.dir).status();
        }
    }
}

#[test]
fn a_full_disk_is_an_io_error_naming_the_path_and_the_previous_output_stays() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(disk) = FullDisk::new(d) else { return };
    csv(d, "small.csv", 3);
    csv(d, "big.csv", 200_000);
    for name in ["out.csv", "out.ndjson", "out.json", "out.parquet", "out.csv.gz"] {
        // The previous output, written while there is room.
        let target = disk.dir.join(name);
        ok(&sluice(d, &["copy", "small.csv", target.to_str().unwrap()]));
        let before = std::fs::read(&target).unwrap();
        let target = disk.path(name);
        let out = sluice(d, &["copy", "big.csv", target.to_str().unwrap()]);
        let (code, err) = code_and_stderr(&out);
        assert_eq!(code, Some(3), "{name}: an I/O error, exit 3:\n{err}");
        assert!(
            err.contains(target.to_str().unwrap()) && err.to_lowercase().contains("no space left"),
            "{name}: the error names the path and the cause:\n{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(
            std::fs::read(&target).unwrap(),
            before,
            "{name}: the previous output stays"
        );
        // Room for the next format.
        let _ = std::fs::remove_file(disk.dir.join(format!("{name}.part")));
    }
}
