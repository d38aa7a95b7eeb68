//! Running `git` in a strategy's clone: argv only, no shell, no prompt,
//! within the command's deadline.
//!
//! The clone has no remote: every fetch and push names the repository, so
//! a changed `repository` in the config takes effect at the next command.
//! A password or token reaches git through the environment of that one
//! process and a credential helper that prints it (`git credential`'s
//! protocol): never in an argument, a file, a URL or a log.

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::{Duration, Instant};

use crate::config::redact_userinfo;
use crate::executor::process;

/// The ref each fetch of the branch lands on.
const UPSTREAM: &str = "refs/rollbackd/upstream";

/// How git says a push lost to another one.
const MOVED: [&str; 3] = ["! [rejected]", "cannot lock ref", "(failed to update ref)"];

/// A credential helper that answers `get` with the user and password in
/// its environment (git runs a `!` helper with `sh`). The text is fixed:
/// no config value or secret is ever part of it.
const HELPER: &str = "!f() { test \"$1\" = get && printf 'username=%s\\npassword=%s\\n' \"$ROLLBACKD_GIT_USERNAME\" \"$ROLLBACKD_GIT_PASSWORD\"; }; f";

/// Who commits.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    pub(super) name: String,
    pub(super) email: String,
}

/// The user and password HTTPS asks for.
#[derive(Clone)]
pub(super) struct Credentials {
    pub(super) username: String,
    pub(super) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

/// A push that did not land.
#[derive(Debug)]
pub(super) enum PushError {
    /// The branch moved on (non-fast-forward): fetch, apply again, retry.
    Behind,
    Failed(String),
}

/// One clone, used by one command at a time.
pub(super) struct Repo<'a> {
    pub(super) dir: PathBuf,
    /// The repository as `git fetch` takes it.
    pub(super) url: &'a str,
    pub(super) branch: &'a str,
    pub(super) deadline: Instant,
    pub(super) identity: Identity,
    pub(super) credentials: Option<Credentials>,
}

impl Repo<'_> {
    /// Runs `git <args>` in the clone: its stdout, or what went wrong (with
    /// any URL's user and password hidden).
    fn git(&self, args: &[&str]) -> Result<String, String> {
        let mut p = Process::new("git");
        p.current_dir(&self.dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .env("GIT_AUTHOR_NAME", &self.identity.name)
            .env("GIT_AUTHOR_EMAIL", &self.identity.email)
            .env("GIT_COMMITTER_NAME", &self.identity.name)
            .env("GIT_COMMITTER_EMAIL", &self.identity.email);
        if let Some(c) = &self.credentials {
            // An empty helper first: only this one answers.
            p.args(["-c", "credential.helper=", "-c"])
                .arg(format!("credential.helper={HELPER}"))
                .env("ROLLBACKD_GIT_USERNAME", &c.username)
                .env("ROLLBACKD_GIT_PASSWORD", &c.password);
        }
        p.args(args);
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("out of time (executor.timeout)".into());
        }
        let what = args.first().copied().unwrap_or("");
        let f = process::capture(p, left).map_err(|e| format!("git {what}: {e}"))?;
        if f.status.success() {
            Ok(String::from_utf8_lossy(&f.stdout).into_owned())
        } else {
            Err(redact_userinfo(&format!(
                "git {what} exited {}: {}",
                f.status,
                f.stderr.trim()
            )))
        }
    }

    /// A clone to work in: created empty the first time. A lock left by a
    /// git killed at the deadline is removed: the clone is this
    /// executor's alone (one per `executor.work_dir`).
    pub(super) fn open(&self) -> Result<(), String> {
        let git_dir = self.dir.join(".git");
        if git_dir.is_dir() {
            let lock = git_dir.join("index.lock");
            if lock.exists() {
                std::fs::remove_file(&lock)
                    .map_err(|e| format!("cannot remove {}: {e}", lock.display()))?;
            }
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        self.git(&["init", "--quiet"]).map(|_| ())
    }

    /// Fetches the branch and checks its tip out, whatever the clone held:
    /// the tip's commit id.
    pub(super) fn fetch(&self) -> Result<String, String> {
        let refspec = format!("+refs/heads/{}:{UPSTREAM}", self.branch);
        self.git(&["fetch", "--quiet", "--no-tags", self.url, &refspec])?;
        self.git(&[
            "checkout",
            "--quiet",
            "--force",
            "-B",
            "rollbackd",
            UPSTREAM,
        ])?;
        self.git(&["clean", "--quiet", "-ffdx"])?;
        self.head()
    }

    pub(super) fn head(&self) -> Result<String, String> {
        Ok(self.git(&["rev-parse", "HEAD"])?.trim().to_string())
    }

    /// The commit on the branch carrying trailer `key: value`, if any.
    pub(super) fn find_trailer(&self, key: &str, value: &str) -> Result<Option<String>, String> {
        let format = format!("--format=%H%x00%(trailers:key={key},valueonly,separator=%x00)%x01");
        let grep = format!("--grep={key}: {value}");
        let out = self.git(&["log", "--fixed-strings", &grep, &format, "HEAD"])?;
        Ok(out.split('\x01').find_map(|rec| {
            let mut fields = rec.trim_start_matches('\n').split('\0');
            let sha = fields.next()?;
            fields.any(|v| v.trim() == value).then(|| sha.to_string())
        }))
    }

    /// The absolute path of `file` in the clone.
    pub(super) fn path(&self, file: &str) -> PathBuf {
        self.dir.join(Path::new(file))
    }

    /// The change in the work tree, as a unified diff.
    pub(super) fn diff(&self) -> Result<String, String> {
        self.git(&["diff", "--no-color", "--no-ext-diff"])
    }

    /// Commits `file` with `message` (paragraphs; the last its trailers):
    /// the new commit's id.
    pub(super) fn commit(&self, file: &str, message: &[String]) -> Result<String, String> {
        let mut args = vec!["commit", "--quiet", "--no-verify"];
        for m in message {
            args.extend(["-m", m]);
        }
        args.extend(["--", file]);
        self.git(&args)?;
        self.head()
    }

    /// Pushes HEAD to the branch, fast-forward only.
    pub(super) fn push(&self) -> Result<(), PushError> {
        let refspec = format!("HEAD:refs/heads/{}", self.branch);
        match self.git(&["push", "--quiet", self.url, &refspec]) {
            Ok(_) => Ok(()),
            // The branch moved: before the push read it (` ! [rejected] …
            // (fetch first)` or `(non-fast-forward)`), or after (the
            // server's update of the ref lost a race: `cannot lock ref`).
            // Another `[remote rejected]` (a hook, a protected branch) is
            // final.
            Err(e) if MOVED.iter().any(|m| e.contains(m)) => Err(PushError::Behind),
            Err(e) => Err(PushError::Failed(e)),
        }
    }

    /// Waits `d`, or until the deadline.
    pub(super) fn pause(&self, d: Duration) {
        std::thread::sleep(d.min(self.deadline.saturating_duration_since(Instant::now())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Stdio;

    /// The helper answers git's `get` with the user and password from its
    /// environment; the config holds neither.
    #[test]
    fn the_credential_helper_prints_the_token_from_its_environment() {
        let mut child = Process::new("git")
            .args(["-c", "credential.helper=", "-c"])
            .arg(format!("credential.helper={HELPER}"))
            .args(["credential", "fill"])
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("ROLLBACKD_GIT_USERNAME", "x-access-token")
            .env("ROLLBACKD_GIT_PASSWORD", "s3cret 'quoted' $HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"protocol=https\nhost=git.example\n\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let out = String::from_utf8(out.stdout).unwrap();
        assert!(out.contains("username=x-access-token\n"), "{out}");
        assert!(out.contains("password=s3cret 'quoted' $HOME\n"), "{out}");
        assert!(!HELPER.contains("s3cret"));
    }
}
