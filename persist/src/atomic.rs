//! Atomic whole-file writes: after a crash the file holds the old content or the new, never
//! a mix, never nothing (unless it never existed).

use std::path::Path;

use crate::error::{Error, io_err};
use crate::fs::Fs;

/// Suffix of the temporary file [`write_atomic`] writes first; a leftover one (a crash
/// before the rename) holds nothing anyone relies on and may be deleted.
pub const TMP_SUFFIX: &str = ".tmp";

/// Replaces `dir/name` with `data`: write `dir/name.tmp`, `fdatasync` it, rename it over
/// `dir/name`, `fsync` the directory. Durable on return.
pub fn write_atomic(fs: &dyn Fs, dir: &Path, name: &str, data: &[u8]) -> Result<(), Error> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let mut f = fs.create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
    f.append(data)
        .and_then(|_| f.sync_data())
        .map_err(|e| io_err("write", &tmp, e))?;
    drop(f);
    fs.rename(&tmp, &path)
        .map_err(|e| io_err("rename", &tmp, e))?;
    fs.sync_dir(dir)
        .map_err(|e| io_err("sync directory", dir, e))
}
