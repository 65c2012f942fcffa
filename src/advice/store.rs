//! Durable file operations shared by the outbox and the digest state.
//!
//! Advice must survive a crash at any instant, so every file is written the classic
//! way: into a staging directory, `fsync`, `rename` into place, `fsync` the directory.
//! A reader therefore sees either no file or the whole file, never a torn one, and a
//! file that `write_atomic` returned for is on disk.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind, Result};

/// Milliseconds since the Unix epoch: the clock persisted state is kept in.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A process-unique, time-ordered id such as `1712345678901-4242-7`:
/// creation time in ms, process id, and a counter. Sorting ids sorts by age, and the
/// creation time can be read back with [`created_ms`] after a restart.
pub fn unique_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:013}-{}-{}",
        now_ms(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The creation time encoded in an id from [`unique_id`].
pub fn created_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(ErrorKind::Advice, what, path, e)
}

/// Creates `dir` (and parents) if needed. Every directory here lives under
/// `[advice] outbox_dir`, so a failure says how to fix that setting.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| {
        let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Error::with_source(
            ErrorKind::Advice,
            format!(
                "cannot create advice outbox directory {}: {e} (make it writable by the user \
                 bouncelens runs as, or set [advice] outbox_dir)",
                shown.display()
            ),
            e,
        )
    })
}

/// Flushes a directory's entries (a rename or unlink inside it) to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("cannot sync directory", dir, e))
}

/// Writes `bytes` to `dest` atomically and durably, staging in `tmp_dir` (which must be
/// on the same file system).
pub fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let name = dest
        .file_name()
        .ok_or_else(|| Error::new(ErrorKind::Advice, format!("bad file name {dest:?}")))?;
    let tmp = tmp_dir.join(format!("{}.{}", name.to_string_lossy(), unique_id()));
    let written = File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(|e| io_err("cannot write", &tmp, e));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, dest).map_err(|e| io_err("cannot move into place", dest, e))?;
    sync_dir(parent(dest))
}

/// Moves `from` to `to` durably (both directories synced).
pub fn move_durable(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| io_err("cannot move", from, e))?;
    sync_dir(parent(to))?;
    sync_dir(parent(from))
}

/// Removes `path` durably; a file that is already gone is fine.
pub fn remove_durable(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot remove", path, e)),
    }
}

/// The `*.eml` files directly in `dir`, sorted by name (oldest first for our ids).
pub fn list_eml(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = fs::read_dir(dir).map_err(|e| io_err("cannot list", dir, e))?;
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml") && p.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

fn parent(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_carry_their_time() {
        let a = unique_id();
        let b = unique_id();
        assert_ne!(a, b);
        let t = created_ms(&a).unwrap();
        assert!(t > 1_600_000_000_000 && t <= now_ms());
    }

    #[test]
    fn atomic_write_leaves_no_staging_file() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join("tmp");
        ensure_dir(&tmp).unwrap();
        let dest = d.path().join("a.eml");
        write_atomic(&tmp, &dest, b"hello").unwrap();
        write_atomic(&tmp, &dest, b"again").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"again");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(list_eml(d.path()).unwrap(), vec![dest.clone()]);
        remove_durable(&dest).unwrap();
        remove_durable(&dest).unwrap();
        assert!(list_eml(d.path()).unwrap().is_empty());
    }
}
