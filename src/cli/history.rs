//! The interactive shell's command history, kept in a file so it outlives the session:
//! `history` lists it, `redo N` re-runs entry N, the line editor offers it with the arrow keys.
//!
//! Entries are numbered from the start of the file, so a number seen in `history` stays valid
//! across sessions (and the prompt's command number continues where the last session stopped).
//! The file is plain text, one command per line, appended to as commands run, and trimmed to
//! the newest [`MAX_ENTRIES`] when loaded.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

/// Entries kept in the file.
pub const MAX_ENTRIES: usize = 1000;

/// File name under the home directory.
pub const FILE_NAME: &str = ".corral_cli_history";

/// The history file: `$CORRAL_CLI_HISTORY` if set (empty: no file), else
/// `$HOME/.corral_cli_history`, else none (history kept in memory only).
pub fn default_path() -> Option<PathBuf> {
    match std::env::var_os("CORRAL_CLI_HISTORY") {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(PathBuf::from(p)),
        None => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(FILE_NAME)),
    }
}

/// The numbered command history; see the module docs.
#[derive(Debug, Default)]
pub struct History {
    entries: Vec<String>,
    file: Option<PathBuf>,
    /// Set once writing failed, so the warning is printed once.
    write_failed: bool,
}

impl History {
    /// Loads `file` (a missing or unreadable file is an empty history).
    pub fn load(file: Option<PathBuf>) -> Self {
        let mut entries: Vec<String> = file
            .as_ref()
            .and_then(|f| fs::read(f).ok())
            .map(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut h = History {
            entries: Vec::new(),
            file,
            write_failed: false,
        };
        if entries.len() > MAX_ENTRIES {
            entries.drain(..entries.len() - MAX_ENTRIES);
            h.entries = entries;
            h.rewrite();
        } else {
            h.entries = entries;
        }
        h
    }

    /// The number the next command gets.
    pub fn next_index(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, index: usize) -> Option<&str> {
        self.entries.get(index).map(String::as_str)
    }

    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// Records a command (appending it to the file).
    pub fn push(&mut self, line: &str) {
        let line = line.replace(['\n', '\r'], " ");
        self.entries.push(line.clone());
        let Some(file) = &self.file else {
            return;
        };
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        self.note(written);
    }

    /// zkCli's `history`: the last ten entries before `current` and `current` itself, as
    /// `N - command` lines.
    pub fn listing(&self, current: usize) -> String {
        let mut out = String::new();
        let last = current.min(self.entries.len().saturating_sub(1));
        for i in current.saturating_sub(10)..=last {
            if let Some(e) = self.entries.get(i) {
                out += &format!("{i} - {e}\n");
            }
        }
        out
    }

    fn rewrite(&mut self) {
        let Some(file) = &self.file else {
            return;
        };
        let mut text = self.entries.join("\n");
        text.push('\n');
        let tmp = file.with_extension("tmp");
        let written = fs::write(&tmp, text).and_then(|()| fs::rename(&tmp, file));
        self.note(written);
    }

    fn note(&mut self, written: std::io::Result<()>) {
        if let Err(e) = written {
            if !self.write_failed {
                self.write_failed = true;
                if let Some(f) = &self.file {
                    eprintln!("history file {}: {e}", f.display());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_numbers_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        let mut h = History::load(Some(path.clone()));
        assert_eq!(h.next_index(), 0);
        h.push("ls /");
        h.push("get /a");
        let h2 = History::load(Some(path.clone()));
        assert_eq!(h2.entries(), ["ls /", "get /a"]);
        assert_eq!(h2.next_index(), 2);
        assert_eq!(h2.listing(1), "0 - ls /\n1 - get /a\n");
    }

    #[test]
    fn trims_to_the_newest_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        let text: String = (0..MAX_ENTRIES + 5).map(|i| format!("cmd {i}\n")).collect();
        fs::write(&path, text).unwrap();
        let h = History::load(Some(path.clone()));
        assert_eq!(h.next_index(), MAX_ENTRIES);
        assert_eq!(h.get(0), Some("cmd 5"));
        assert_eq!(
            fs::read_to_string(&path).unwrap().lines().count(),
            MAX_ENTRIES
        );
    }

    #[test]
    fn listing_shows_the_last_eleven() {
        let mut h = History::load(None);
        for i in 0..15 {
            h.push(&format!("c{i}"));
        }
        let l = h.listing(14);
        assert_eq!(l.lines().count(), 11);
        assert!(l.starts_with("4 - c4\n"));
        assert!(l.ends_with("14 - c14\n"));
    }
}
