//! The Git strategies (`[executor.git.<strategy>]`): a rollback is a
//! commit, so that a GitOps controller (Argo CD, Flux) syncing the
//! repository keeps it instead of reverting it.
//!
//! For one command: fetch the branch into the strategy's clone, look for a
//! commit carrying the trailer `Rollbackd-Command-Id: <command_id>` (found:
//! `succeeded`, nothing committed again), set the version the pattern finds
//! in the file back to `to_version` ([`pattern`]), commit, push. A push the
//! branch moved past is fetched, applied again on the new tip and retried
//! with backoff. Setting the version — rather than reverting the commit
//! that brought `from_version` — is a change of one value that applies to
//! any tip the same way, touches nothing else that commit may have changed,
//! and needs no search of the history; a version found that is neither
//! `from_version` nor `to_version` is a newer change, and is left alone.
//!
//! Every message of a result names a commit (`commit <40 hex digits>`):
//! the one pushed, the one that already carried the command, or the tip
//! that already held `to_version`.

pub mod pattern;
mod repo;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::template;
use crate::config::{redact_userinfo, ExecutorConfig, GitStrategy};
use crate::model::Command;
use pattern::{Edit, Pattern};
use repo::{Credentials, Identity, PushError, Repo};

/// The trailer naming the command a commit executes.
pub const TRAILER: &str = "Rollbackd-Command-Id";

/// Pushes tried before the command fails, the branch moving each time.
const PUSH_ATTEMPTS: u32 = 5;

/// The wait after the first rejected push; doubled after each.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// A Git strategy's change for one command, every placeholder filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The strategy whose config this is (the command's, or `default`).
    pub strategy: String,
    pub config: GitStrategy,
    pub file: String,
    pub pattern: Pattern,
    pub from_version: String,
    pub to_version: String,
}

/// What a command came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed and pushed, at the `attempts`-th push.
    Pushed { commit: String, attempts: u32 },
    /// A commit on the branch already carries the command's id.
    AlreadyCommitted { commit: String },
    /// The file already holds `to_version` at the branch's tip.
    NothingToDo { head: String },
    /// A dry run: the diff a commit on `head` would carry.
    WouldCommit { head: String, diff: String },
}

impl Outcome {
    /// The result's message.
    pub fn message(&self, c: &Change) -> String {
        let branch = &c.config.branch;
        match self {
            Outcome::Pushed { commit, attempts } => format!(
                "commit {commit} pushed to {branch}: {} {} -> {}{}",
                c.file,
                c.from_version,
                c.to_version,
                if *attempts > 1 {
                    format!(" ({attempts} attempts: the branch moved)")
                } else {
                    String::new()
                }
            ),
            Outcome::AlreadyCommitted { commit } => format!(
                "commit {commit} on {branch} already carries this command ({TRAILER}): nothing committed again"
            ),
            Outcome::NothingToDo { head } => format!(
                "nothing to do: {} already at {} on {branch} (commit {head})",
                c.file, c.to_version
            ),
            Outcome::WouldCommit { head, .. } => format!(
                "would commit on {branch} (commit {head}): {} {} -> {}",
                c.file, c.from_version, c.to_version
            ),
        }
    }
}

/// A version as it may be written into a file: one run without
/// whitespace, not an option.
fn version<'v>(name: &str, v: Option<&'v str>) -> Result<&'v str, String> {
    match v {
        None | Some("") => Err(format!("{name} is empty in this command")),
        Some(v) if v.starts_with('-') || v.chars().any(char::is_whitespace) => Err(format!(
            "{name} = {v:?} starts with '-' or holds whitespace"
        )),
        Some(v) => Ok(v),
    }
}

/// The change strategy `strategy` (config `g`) makes for `cmd`, or why it
/// cannot be made (the command is then `rejected`).
pub fn change(strategy: &str, g: &GitStrategy, cmd: &Command) -> Result<Change, String> {
    let to_version = version("{to_version}", cmd.to_version.as_deref())?.to_string();
    let from_version = version("from_version", Some(&cmd.from_version))?.to_string();
    for (name, v) in [
        ("command_id", &cmd.command_id),
        ("deploy_id", &cmd.deploy_id),
    ] {
        if v.is_empty() || v.chars().any(char::is_control) {
            return Err(format!("{name} is empty or holds control characters"));
        }
    }
    let file = template::fill(&g.file, cmd)?;
    if file
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == ".." || part == ".git")
    {
        return Err(format!(
            "file {file:?}: a placeholder's value leaves the repository or names no file"
        ));
    }
    let pattern = Pattern::new(&template::fill(&g.pattern, cmd)?);
    Ok(Change {
        strategy: strategy.to_string(),
        config: g.clone(),
        file,
        pattern,
        from_version,
        to_version,
    })
}

/// Where strategy `strategy` keeps its clone (a dry run: its own, so that
/// it never disturbs an executor at work).
pub fn clone_dir(e: &ExecutorConfig, strategy: &str, dry_run: bool) -> PathBuf {
    let base = if e.work_dir.is_empty() {
        std::env::temp_dir().join("rollbackd-executor")
    } else {
        PathBuf::from(&e.work_dir)
    };
    base.join(if dry_run {
        format!("{strategy}.dry-run")
    } else {
        strategy.to_string()
    })
}

/// The password or token of `g`, read now (a rotated one is used at once).
fn credentials(g: &GitStrategy) -> Result<Option<Credentials>, String> {
    let password = if !g.token_env.is_empty() {
        std::env::var(&g.token_env).map_err(|_| {
            format!(
                "credentials: environment variable {} is not set",
                g.token_env
            )
        })?
    } else if !g.credentials_file.is_empty() {
        std::fs::read_to_string(&g.credentials_file)
            .map_err(|e| format!("credentials: cannot read {}: {e}", g.credentials_file))?
    } else {
        return Ok(None);
    };
    let password = password.trim().to_string();
    if password.is_empty() {
        return Err("credentials: the token is empty".into());
    }
    Ok(Some(Credentials {
        username: g.username.clone(),
        password,
    }))
}

/// `Name <email>`, which the config checked.
fn identity(author: &str) -> Identity {
    let (name, email) = author
        .strip_suffix('>')
        .and_then(|a| a.split_once(" <"))
        .unwrap_or((author, ""));
    Identity {
        name: name.trim().to_string(),
        email: email.to_string(),
    }
}

/// The commit message: what was rolled back and why, then the trailers.
fn commit_message(c: &Change, cmd: &Command) -> Vec<String> {
    vec![
        format!(
            "Roll back {} in {} to {}",
            cmd.service, cmd.environment, c.to_version
        ),
        format!(
            "rollbackd rolled back deploy {} of {} (trigger {}): {} set to {}.",
            cmd.deploy_id,
            c.from_version,
            cmd.trigger.as_str(),
            c.file,
            c.to_version
        ),
        format!(
            "{TRAILER}: {}\nRollbackd-Deploy-Id: {}",
            cmd.command_id, cmd.deploy_id
        ),
    ]
}

/// Executes `c` for `cmd` in the clone at `dir` within `timeout` — with
/// `dry_run`, everything up to the commit, then the diff. The error is why
/// it failed, in words (no secret in them).
pub fn apply(
    c: &Change,
    cmd: &Command,
    dir: &Path,
    timeout: Duration,
    dry_run: bool,
) -> Result<Outcome, String> {
    let g = &c.config;
    let repo = Repo {
        dir: dir.to_path_buf(),
        url: &g.repository,
        branch: &g.branch,
        deadline: Instant::now() + timeout,
        identity: identity(&g.author),
        credentials: credentials(g)?,
    };
    repo.open()?;
    let mut backoff = FIRST_BACKOFF;
    for attempts in 1..=PUSH_ATTEMPTS {
        let head = repo.fetch()?;
        if let Some(commit) = repo.find_trailer(TRAILER, &cmd.command_id)? {
            return Ok(Outcome::AlreadyCommitted { commit });
        }
        let Some((path, text)) = edit(&repo, c, &head)? else {
            return Ok(Outcome::NothingToDo { head });
        };
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", c.file))?;
        if dry_run {
            return Ok(Outcome::WouldCommit {
                head,
                diff: repo.diff()?,
            });
        }
        let commit = repo.commit(&c.file, &commit_message(c, cmd))?;
        match repo.push() {
            Ok(()) => {
                info!(command_id = %cmd.command_id, commit = %commit, branch = %g.branch, "rollback committed and pushed");
                return Ok(Outcome::Pushed { commit, attempts });
            }
            Err(PushError::Failed(e)) => return Err(e),
            Err(PushError::Behind) => {
                warn!(command_id = %cmd.command_id, attempts, branch = %g.branch, "push rejected: the branch moved; fetching and applying again");
                repo.pause(backoff);
                backoff *= 2;
            }
        }
    }
    Err(format!(
        "push rejected {PUSH_ATTEMPTS} times: {} of {} kept moving; nothing pushed",
        g.branch,
        redact_userinfo(&g.repository)
    ))
}

/// The file's path and new text, or `None` when it already holds
/// `to_version`.
fn edit(repo: &Repo, c: &Change, head: &str) -> Result<Option<(PathBuf, String)>, String> {
    let path = regular_file(repo, &c.file)
        .map_err(|why| format!("{}: {why} on {} (commit {head})", c.file, c.config.branch))?;
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", c.file))?;
    match pattern::set_version(&text, &c.pattern, &c.from_version, &c.to_version) {
        Ok(Edit::Unchanged) => Ok(None),
        Ok(Edit::Changed { text, .. }) => Ok(Some((path, text))),
        Err(why) => Err(format!("{}: {why} (commit {head})", c.file)),
    }
}

/// The path of `file`, a regular file inside the clone (not through a
/// symbolic link that leads out of it).
fn regular_file(repo: &Repo, file: &str) -> Result<PathBuf, String> {
    let path = repo.path(file);
    let real = path
        .canonicalize()
        .map_err(|_| "no such file".to_string())?;
    let root = repo.dir.canonicalize().map_err(|e| e.to_string())?;
    if !real.starts_with(&root) || !real.is_file() {
        return Err("not a regular file in the repository".into());
    }
    Ok(real)
}
