//! Notices when the state database's file is deleted or replaced while the writer holds it
//! open: SQLite goes on writing to the open (now nameless) file without an error, so without
//! this check everything looks healthy until the restart finds the state gone.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the file is looked at: one `stat` per interval, off the data plane.
const CHECK_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct FileWatch {
    path: PathBuf,
    /// Device and inode of the file opened at start; `None` if it could not be read then.
    identity: Option<(u64, u64)>,
    last_check: Instant,
}

impl FileWatch {
    pub(crate) fn new(path: &Path) -> Self {
        FileWatch { path: path.to_owned(), identity: identity(path), last_check: Instant::now() }
    }

    /// What happened to the file, if it is no longer the one opened at start. Looks at most
    /// once per [`CHECK_EVERY`].
    pub(crate) fn lost(&mut self, now: Instant) -> Option<String> {
        if now.duration_since(self.last_check) < CHECK_EVERY {
            return None;
        }
        self.last_check = now;
        let opened = self.identity?;
        let shown = self.path.display();
        match identity(&self.path) {
            None => Some(format!("the state database {shown} was deleted while the proxy ran: what it writes now is lost at the next restart; restart the proxy to start a new one")),
            Some(now) if now != opened => Some(format!("the state database {shown} was replaced while the proxy ran: it writes to the old file, which is lost at the next restart; restart the proxy to use the new one")),
            Some(_) => None,
        }
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_or_replaced_file_is_noticed_and_an_untouched_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        std::fs::write(&path, b"x").unwrap();
        let mut watch = FileWatch::new(&path);
        let later = Instant::now() + CHECK_EVERY;
        assert_eq!(watch.lost(later), None);
        assert_eq!(watch.lost(Instant::now()), None, "not looked at again within the interval");

        // Replaced: another file renamed over the path.
        let other = dir.path().join("other.db");
        std::fs::write(&other, b"y").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(watch.lost(later + CHECK_EVERY).is_some_and(|m| m.contains("replaced")));

        std::fs::remove_file(&path).unwrap();
        assert!(watch.lost(later + CHECK_EVERY * 2).is_some_and(|m| m.contains("deleted")));
    }
}
