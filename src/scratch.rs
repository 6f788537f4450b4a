//! A directory for a unit test's files, removed when the test ends, passed or failed (the
//! integration tests have `tests/common`'s `TempDir`, which unit tests cannot reach).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A fresh, empty directory named after `name`, this process and a counter (tests run in
    /// parallel threads of one process, and several may use one name).
    pub(crate) fn new(name: &str) -> Self {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("wschat-unit-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
