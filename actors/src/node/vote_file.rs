//! The node's term and vote on disk: one small JSON file per node, replaced atomically
//! (written to a temporary file, fsynced, renamed over the old one, the directory
//! fsynced) every time the protocol core asks for it, before anything that depends on it
//! leaves the node. A restarted node reads it back, so it never votes twice in one term.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::election::PersistedVote;

/// Where one node keeps its term and vote.
#[derive(Clone, Debug)]
pub struct VoteFile {
    path: PathBuf,
}

impl VoteFile {
    /// The file of node `id` under cluster prefix `prefix` in `dir`.
    pub fn new(dir: &Path, prefix: &str, id: &str) -> VoteFile {
        VoteFile { path: dir.join(format!("{prefix}.{id}.vote.json")) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The persisted term and vote; the default (term 0, no vote) when the file does not
    /// exist yet. A file that exists but cannot be read or parsed is an error: the node
    /// must not guess its vote.
    pub fn load(&self) -> Result<PersistedVote, String> {
        match fs::read(&self.path) {
            Ok(bytes) => {
                let vote: PersistedVote =
                    serde_json::from_slice(&bytes).map_err(|e| format!("vote file {}: {e}", self.path.display()))?;
                if vote.term > crate::election::MAX_TERM {
                    return Err(format!(
                        "vote file {}: term {} is above the highest a node takes",
                        self.path.display(),
                        vote.term
                    ));
                }
                Ok(vote)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PersistedVote::default()),
            Err(e) => Err(format!("vote file {}: {e}", self.path.display())),
        }
    }

    /// Replaces the file with `vote`, durably.
    pub fn save(&self, vote: &PersistedVote) -> Result<(), String> {
        let fail = |what: &str, e: std::io::Error| format!("vote file {}: {what}: {e}", self.path.display());
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| fail("creating its directory", e))?;
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec(vote).map_err(|e| format!("vote file: {e}"))?;
        let mut f = fs::File::create(&tmp).map_err(|e| fail("creating", e))?;
        f.write_all(&body).map_err(|e| fail("writing", e))?;
        f.sync_all().map_err(|e| fail("syncing", e))?;
        fs::rename(&tmp, &self.path).map_err(|e| fail("renaming", e))?;
        // The rename is durable once the directory is.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vote_survives_a_reload_and_a_missing_file_is_a_first_start() {
        let dir = std::env::temp_dir().join(format!("instaface-vote-{}", rand::random::<u32>()));
        let file = VoteFile::new(&dir, "p", "n1");
        assert_eq!(file.load(), Ok(PersistedVote::default()));
        let vote = PersistedVote { term: 7, voted_for: Some("n2".into()), barred: false };
        file.save(&vote).unwrap();
        assert_eq!(VoteFile::new(&dir, "p", "n1").load(), Ok(vote));
        fs::write(file.path(), b"{not json").unwrap();
        assert!(file.load().unwrap_err().contains("vote file"));
        let _ = fs::remove_dir_all(&dir);
    }
}
