//! `[executor.git.<strategy>]`: the checks of one Git strategy. Each
//! value reaches `git` as one argument or one environment variable, never
//! through a shell, so these checks keep it from being read as an option
//! or from leaving the repository, and catch typos early.

use super::schema::{GitStrategy, PLACEHOLDERS};
use super::{invalid, ConfigError};

/// What `pattern` must hold once: the version's place.
pub const VERSION: &str = "{version}";

/// Checks `g`, the strategy `strategy`; errors name `executor.git.<strategy>.<key>`.
pub(super) fn check(strategy: &str, g: &GitStrategy) -> Result<(), ConfigError> {
    let key = |k: &str| format!("executor.git.{strategy}.{k}");
    // The strategy names the directory of its clone.
    if strategy.starts_with('.')
        || !strategy
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(invalid(
            format!("executor.git.{strategy}"),
            "a strategy name here is letters, digits, '.', '_' and '-', not starting with '.'",
        ));
    }
    plain(&key("repository"), &g.repository)?;
    plain(&key("branch"), &g.branch)?;
    if g.branch.contains("..")
        || g.branch.contains("@{")
        || g.branch.ends_with('/')
        || g.branch.ends_with(".lock")
        || g.branch
            .chars()
            .any(|c| c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return Err(invalid(key("branch"), "not a valid branch name"));
    }
    plain(&key("file"), &g.file)?;
    placeholders(&key("file"), &g.file, false)?;
    if g.file.starts_with('/')
        || g.file
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == ".." || part == ".git")
    {
        return Err(invalid(
            key("file"),
            "a path relative to the repository's root, without empty, '.', '..' or '.git' parts",
        ));
    }
    check_pattern(&key("pattern"), &g.pattern)?;
    check_author(&key("author"), &g.author)?;
    if !g.token_env.is_empty() && !g.credentials_file.is_empty() {
        return Err(invalid(
            key("token_env"),
            "set token_env or credentials_file, not both",
        ));
    }
    plain(&key("username"), &g.username)?;
    Ok(())
}

/// Not empty, not an option, no control characters.
fn plain(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.trim().is_empty() {
        Err(invalid(key, "must not be empty"))
    } else if v.starts_with('-') {
        Err(invalid(key, "must not start with '-'"))
    } else if v.chars().any(char::is_control) {
        Err(invalid(key, "must not hold control characters"))
    } else {
        Ok(())
    }
}

/// Every `{word}` in `v` is a placeholder (or, in a pattern, `{version}`).
fn placeholders(key: &str, v: &str, version: bool) -> Result<(), ConfigError> {
    let mut rest = v;
    while let Some(i) = rest.find('{') {
        rest = &rest[i..];
        let word = rest[1..].find('}').map(|j| &rest[..j + 2]).filter(|w| {
            w[1..w.len() - 1]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if let Some(w) = word {
            if !(PLACEHOLDERS.contains(&w) || (version && w == VERSION)) {
                return Err(invalid(
                    key,
                    format!(
                        "unknown placeholder {w}: one of {PLACEHOLDERS:?}{}",
                        if version { " or {version}" } else { "" }
                    ),
                ));
            }
        }
        rest = &rest[1..];
    }
    Ok(())
}

/// One `{version}`, with text before it to find it by.
fn check_pattern(key: &str, p: &str) -> Result<(), ConfigError> {
    plain(key, p)?;
    placeholders(key, p, true)?;
    if p.matches(VERSION).count() != 1 {
        return Err(invalid(key, "must hold {version} exactly once"));
    }
    if p.starts_with(VERSION) {
        return Err(invalid(
            key,
            "needs text before {version} (e.g. \"newTag: {version}\"): it is how the version is found",
        ));
    }
    Ok(())
}

/// `Name <email>`.
fn check_author(key: &str, a: &str) -> Result<(), ConfigError> {
    plain(key, a)?;
    let ok = a
        .strip_suffix('>')
        .and_then(|a| a.split_once(" <"))
        .is_some_and(|(name, email)| {
            !name.trim().is_empty() && !email.is_empty() && !email.contains(['<', '>'])
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(key, "must be \"Name <email>\""))
    }
}

/// `text` with the user and password of every URL in it (`https://user:token@host`)
/// replaced by `***`: a repository URL may carry them, and it is shown in
/// logs, results and `check-config`.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority = tail
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..authority].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const OK: &str = "repository = \"https://git.example/shop/deploy.git\"\nfile = \"apps/{service}/{environment}/kustomization.yaml\"\npattern = \"newTag: {version}\"\n";

    /// The error for strategy `canary` with `OK` changed by `edit`.
    fn err(edit: &str) -> String {
        let key = edit.split_once(" = ").map_or(edit, |(k, _)| k);
        let mut text: String = OK
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} =")))
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(&format!("{edit}\n"));
        Config::from_toml(&format!("[executor.git.canary]\n{text}"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_git_strategy_is_checked_and_its_errors_name_the_key() {
        let c = Config::from_toml(&format!("[executor.git.canary]\n{OK}")).unwrap();
        let g = &c.executor.git["canary"];
        assert_eq!(g.branch, "main");
        assert_eq!(g.author, "rollbackd <rollbackd@localhost>");
        for (edit, key) in [
            ("repository = \"--upload-pack=x\"", "repository"),
            ("branch = \"a..b\"", "branch"),
            ("branch = \"\"", "branch"),
            ("file = \"/etc/passwd\"", "file"),
            ("file = \"apps/../../x\"", "file"),
            ("file = \".git/config\"", "file"),
            ("file = \"apps/{servce}/k.yaml\"", "file"),
            ("file = \"apps/{version}/k.yaml\"", "file"),
            ("pattern = \"newTag: v1\"", "pattern"),
            ("pattern = \"{version}\"", "pattern"),
            ("pattern = \"a {version} b {version}\"", "pattern"),
            ("author = \"rollbackd\"", "author"),
            ("author = \" <a@b>\"", "author"),
        ] {
            let e = err(edit);
            assert!(
                e.contains(&format!("executor.git.canary.{key}")),
                "{edit}: {e}"
            );
        }
        assert!(err("token_env = \"T\"\ncredentials_file = \"/f\"").contains("not both"));
        assert!(err("zz = 1").contains("zz"));
        let both =
            format!("[executor.templates]\ncanary = [\"true\"]\n[executor.git.canary]\n{OK}");
        assert!(Config::from_toml(&both)
            .unwrap_err()
            .to_string()
            .contains("not both"));
        let name = format!("[executor.git.\"a/b\"]\n{OK}");
        assert!(Config::from_toml(&name)
            .unwrap_err()
            .to_string()
            .contains("strategy name"));
        // Literal braces in a pattern are text.
        let json = OK.replace("newTag: {version}", "{\\\"tag\\\": \\\"{version}\\\"");
        Config::from_toml(&format!("[executor.git.canary]\n{json}")).unwrap();
    }

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            redact_userinfo(
                "fatal: https://bot:s3cret@git.example/shop.git not found; see ssh://git@h/x"
            ),
            "fatal: https://***@git.example/shop.git not found; see ssh://***@h/x"
        );
        assert_eq!(redact_userinfo("/srv/git/shop.git"), "/srv/git/shop.git");
        assert_eq!(redact_userinfo("https://h/a@b"), "https://h/a@b");
    }
}
