//! The executor's Git strategies against real `git` and a bare repository
//! on disk: the happy path, a branch other clones keep pushing to,
//! idempotency, a missing file or pattern, a newer version, the dry run.
//! No broker: these call the executor's plan and Git change directly.

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rollbackd::config::Config;
use rollbackd::executor::git::{self, Change, Outcome};
use rollbackd::executor::{plan, Plan};
use rollbackd::model::Command;
use support::unique_dir;

const KUSTOMIZATION: &str = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../../base\nimages:\n- name: shop/checkout\n  newTag: v2\n";

/// `git <args>` in `dir` as a person would run it; its stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository (`origin.git`, branch `main`) holding `files`, and a
/// person's clone of it (`dev`).
struct Origin {
    root: PathBuf,
    bare: PathBuf,
    dev: PathBuf,
}

impl Origin {
    fn new(tag: &str, files: &[(&str, &str)]) -> Origin {
        let root = unique_dir(tag);
        let bare = root.join("origin.git");
        git(
            &root,
            &["init", "--quiet", "--bare", "-b", "main", "origin.git"],
        );
        git(&root, &["clone", "--quiet", "origin.git", "dev"]);
        let dev = root.join("dev");
        git(&dev, &["checkout", "--quiet", "-b", "main"]);
        let o = Origin { root, bare, dev };
        o.push(files, "initial");
        o
    }

    /// Commits `files` from the person's clone, up to date, and pushes.
    fn commit(&self, files: &[(&str, &str)], message: &str) {
        git(
            &self.dev,
            &["pull", "--quiet", "--ff-only", "origin", "main"],
        );
        self.push(files, message);
    }

    fn push(&self, files: &[(&str, &str)], message: &str) {
        for (path, text) in files {
            let p = self.dev.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
            git(&self.dev, &["add", path]);
        }
        git(&self.dev, &["commit", "--quiet", "-m", message]);
        git(&self.dev, &["push", "--quiet", "origin", "main"]);
    }

    /// A file on `main` in the bare repository.
    fn show(&self, path: &str) -> String {
        git(&self.bare, &["show", &format!("main:{path}")])
    }

    fn main(&self) -> String {
        git(&self.bare, &["rev-parse", "main"])
    }

    fn commits(&self) -> usize {
        git(&self.bare, &["rev-list", "--count", "main"])
            .parse()
            .unwrap()
    }

    fn config(&self, extra: &str) -> Config {
        Config::from_toml(&format!(
            "[executor]\ntimeout = \"30s\"\nwork_dir = \"{}\"\n[executor.git.gitops]\nrepository = \"{}\"\nfile = \"apps/{{service}}/prod/kustomization.yaml\"\npattern = \"newTag: {{version}}\"\nauthor = \"rollbackd bot <bot@example.com>\"\n{extra}",
            self.root.join("work").display(),
            self.bare.display()
        ))
        .unwrap()
    }
}

fn command(id: &str, service: &str, from: &str, to: &str) -> Command {
    serde_json::from_value(serde_json::json!({
        "schema": "rollbackd.command/v1", "command_id": id, "action": "rollback", "trigger": "burn_rate",
        "deploy_id": "d-42", "release_id": null, "service": service, "environment": "prod",
        "from_version": from, "to_version": to, "strategy": "gitops", "labels": {}, "evidence": {},
        "decided_at": "2026-11-26T12:00:00Z", "issued_at": "2026-11-26T12:00:00Z"
    }))
    .unwrap()
}

/// The change the executor plans for `cmd`.
fn change(config: &Config, cmd: &Command) -> Change {
    match plan(config, &HashSet::new(), cmd) {
        Plan::Git(c) => *c,
        other => panic!("not a Git plan: {other:?}"),
    }
}

fn apply(config: &Config, cmd: &Command, dry_run: bool) -> Result<Outcome, String> {
    let c = change(config, cmd);
    let dir = git::clone_dir(&config.executor, &c.strategy, dry_run);
    git::apply(&c, cmd, &dir, Duration::from_secs(30), dry_run)
}

fn seeded(tag: &str) -> Origin {
    Origin::new(
        tag,
        &[
            ("apps/checkout/prod/kustomization.yaml", KUSTOMIZATION),
            ("README.md", "shop\n"),
        ],
    )
}

#[test]
fn a_rollback_is_one_commit_carrying_the_command_id_and_is_never_made_twice() {
    let o = seeded("git-happy");
    let config = o.config("");
    let cmd = command("c-1", "checkout", "v2", "v1");
    let before = o.commits();
    let outcome = apply(&config, &cmd, false).unwrap();
    let Outcome::Pushed { commit, attempts } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(*attempts, 1);
    assert_eq!(*commit, o.main(), "the result names the commit on main");
    assert_eq!(o.commits(), before + 1);
    assert_eq!(
        o.show("apps/checkout/prod/kustomization.yaml"),
        KUSTOMIZATION.replace("newTag: v2", "newTag: v1").trim()
    );
    let message = outcome.message(&change(&config, &cmd));
    assert!(
        message.starts_with(&format!("commit {commit} pushed to main")),
        "{message}"
    );
    // The commit: the bot's, with the trailers, one file changed.
    let log = git(&o.bare, &["log", "-1", "--format=%an <%ae>%n%B", "main"]);
    assert!(
        log.starts_with("rollbackd bot <bot@example.com>\nRoll back checkout in prod to v1\n"),
        "{log}"
    );
    assert_eq!(
        git(
            &o.bare,
            &[
                "log",
                "-1",
                "--format=%(trailers:key=Rollbackd-Command-Id,valueonly)",
                "main"
            ]
        ),
        "c-1"
    );
    assert_eq!(
        git(&o.bare, &["diff", "--name-only", "main~1", "main"]),
        "apps/checkout/prod/kustomization.yaml"
    );

    // The same command again — this executor, or another one with a clone
    // of its own — finds its commit: succeeded, nothing committed.
    let again = apply(&config, &cmd, false).unwrap();
    assert_eq!(
        again,
        Outcome::AlreadyCommitted {
            commit: commit.clone()
        }
    );
    let elsewhere = Config::from_toml(&format!(
        "{}\n",
        toml_with_work_dir(&o, &o.root.join("other-work"))
    ))
    .unwrap();
    assert_eq!(
        apply(&elsewhere, &cmd, false).unwrap(),
        Outcome::AlreadyCommitted {
            commit: commit.clone()
        }
    );
    // A later person's commit does not hide it.
    o.commit(&[("README.md", "shop, the online one\n")], "docs");
    assert_eq!(
        apply(&config, &cmd, false).unwrap(),
        Outcome::AlreadyCommitted {
            commit: commit.clone()
        }
    );
    // Another command to the version already there: nothing to do (and a
    // lock a git killed at the deadline left is no obstacle).
    let work = git::clone_dir(&config.executor, "gitops", false);
    std::fs::write(work.join(".git/index.lock"), "").unwrap();
    let head = o.main();
    let other = command("c-2", "checkout", "v2", "v1");
    let nothing = apply(&config, &other, false).unwrap();
    assert_eq!(nothing, Outcome::NothingToDo { head: head.clone() });
    assert!(nothing
        .message(&change(&config, &other))
        .starts_with("nothing to do: apps/checkout/prod/kustomization.yaml already at v1"));
    assert_eq!(o.main(), head);
}

fn toml_with_work_dir(o: &Origin, work: &Path) -> String {
    format!(
        "[executor]\nwork_dir = \"{}\"\n[executor.git.gitops]\nrepository = \"{}\"\nfile = \"apps/{{service}}/prod/kustomization.yaml\"\npattern = \"newTag: {{version}}\"\n",
        work.display(),
        o.bare.display()
    )
}

/// Another clone pushes to main between each of the executor's fetches and
/// its push (a `pre-push` hook in the executor's clone does it, so the
/// race happens every time, twice): each rejected push is fetched,
/// applied again on the new tip and retried, and every commit survives.
#[test]
fn a_branch_another_clone_pushes_to_meanwhile_is_fetched_and_the_change_applied_again() {
    let o = seeded("git-race");
    let config = o.config("");
    let cmd = command("c-race", "checkout", "v2", "v1");
    let work = git::clone_dir(&config.executor, "gitops", false);
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet"]);
    // Race 1: right after the executor's first fetch (its checkout), so
    // that its push finds main moved; race 2: as its second push starts,
    // after it read main, so that the server's update of main fails.
    let race = o.root.join("race.sh");
    std::fs::write(
        &race,
        format!(
            "#!/bin/sh\nset -e\ncd {dev}\nc=$(cat ../checkouts 2>/dev/null || echo 0)\n\
             if [ \"$1\" = checkout ]; then c=$((c + 1)); echo $c > ../checkouts; [ $c -eq 1 ] || exit 0; n=1\n\
             else [ $c -eq 2 ] && [ ! -e ../pushed ] || exit 0; touch ../pushed; n=2; fi\n\
             export GIT_AUTHOR_NAME=dev GIT_AUTHOR_EMAIL=dev@example.com GIT_COMMITTER_NAME=dev GIT_COMMITTER_EMAIL=dev@example.com\n\
             unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE\n\
             git pull --quiet --ff-only origin main\necho \"race $n\" >> README.md\ngit commit --quiet -am \"race $n\"\ngit push --quiet origin main\n",
            dev = o.dev.display()
        ),
    )
    .unwrap();
    for (hook, arg) in [("post-checkout", "checkout"), ("pre-push", "push")] {
        let hook = work.join(".git/hooks").join(hook);
        std::fs::write(
            &hook,
            format!("#!/bin/sh\nexec sh {} {arg} >&2\n", race.display()),
        )
        .unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&hook)
            .status()
            .unwrap();
    }
    let before = o.commits();
    let outcome = apply(&config, &cmd, false).unwrap();
    let Outcome::Pushed { commit, attempts } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(attempts, 3, "two races lost, the third push landed");
    assert_eq!(commit, o.main());
    assert_eq!(
        o.commits(),
        before + 3,
        "both other commits and the rollback"
    );
    assert_eq!(o.show("README.md"), "shop\nrace 1\nrace 2");
    assert!(o
        .show("apps/checkout/prod/kustomization.yaml")
        .contains("newTag: v1"));
    assert_eq!(
        git(&o.bare, &["log", "--format=%s", "main"]),
        "Roll back checkout in prod to v1\nrace 2\nrace 1\ninitial"
    );
}

/// A deploy newer than the one rolled back reaches the branch while the
/// executor works: the rollback must not undo it.
#[test]
fn a_newer_version_on_the_branch_is_left_alone() {
    let o = seeded("git-newer");
    o.commit(
        &[(
            "apps/checkout/prod/kustomization.yaml",
            &KUSTOMIZATION.replace("v2", "v3"),
        )],
        "deploy v3",
    );
    let head = o.main();
    let err = apply(
        &o.config(""),
        &command("c-3", "checkout", "v2", "v1"),
        false,
    )
    .unwrap_err();
    assert!(
        err.contains("found version \"v3\", neither from_version \"v2\" nor to_version \"v1\""),
        "{err}"
    );
    assert!(err.contains(&head), "{err}");
    assert_eq!(o.main(), head);
}

#[test]
fn a_missing_file_or_pattern_fails_with_the_reason_and_commits_nothing() {
    let o = seeded("git-missing");
    let head = o.main();
    let err = apply(&o.config(""), &command("c-4", "cart", "v2", "v1"), false).unwrap_err();
    assert!(
        err.starts_with("apps/cart/prod/kustomization.yaml: no such file on main (commit "),
        "{err}"
    );
    let config = Config::from_toml(
        &toml_with_work_dir(&o, &o.root.join("work"))
            .replace("newTag: {version}", "tag: \\\"{version}\\\""),
    )
    .unwrap();
    let err = apply(&config, &command("c-5", "checkout", "v2", "v1"), false).unwrap_err();
    assert!(
        err.contains("pattern tag: \"{version}\" matches nothing"),
        "{err}"
    );
    // A branch that is not there.
    let config = o.config("branch = \"release\"\n");
    let err = apply(&config, &command("c-6", "checkout", "v2", "v1"), false).unwrap_err();
    assert!(err.contains("git fetch exited"), "{err}");
    assert!(err.contains("release"), "{err}");
    assert_eq!(o.main(), head);
    // Credentials named but absent: nothing runs.
    let config = o.config("token_env = \"ROLLBACKD_TEST_GIT_TOKEN_NOT_SET\"\n");
    let err = apply(&config, &command("c-7", "checkout", "v2", "v1"), false).unwrap_err();
    assert_eq!(
        err,
        "credentials: environment variable ROLLBACKD_TEST_GIT_TOKEN_NOT_SET is not set"
    );
}

#[test]
fn a_dry_run_shows_the_diff_and_pushes_nothing() {
    let o = seeded("git-dry");
    let config = o.config("");
    let cmd = command("c-dry", "checkout", "v2", "v1");
    let head = o.main();
    let Outcome::WouldCommit { head: parent, diff } = apply(&config, &cmd, true).unwrap() else {
        panic!()
    };
    assert_eq!(parent, head);
    assert!(diff.contains("--- a/apps/checkout/prod/kustomization.yaml\n+++ b/apps/checkout/prod/kustomization.yaml\n"), "{diff}");
    assert!(diff.contains("\n-  newTag: v2\n+  newTag: v1\n"), "{diff}");
    assert_eq!(o.main(), head);
    // Its own clone: the executor's is not even created.
    assert!(!git::clone_dir(&config.executor, "gitops", false).exists());
    // Twice the same.
    assert!(matches!(
        apply(&config, &cmd, true),
        Ok(Outcome::WouldCommit { .. })
    ));
    // Then the real one commits that diff.
    assert!(matches!(
        apply(&config, &cmd, false),
        Ok(Outcome::Pushed { .. })
    ));
    assert_eq!(git(&o.bare, &["diff", "main~1", "main"]), diff.trim());
}

/// The README's Git strategy is a valid config.
#[test]
fn the_readme_git_strategy_is_a_valid_config() {
    let readme = include_str!("../README.md");
    let section = &readme[readme
        .find("### Rollbacks that stick under GitOps")
        .unwrap()..];
    let toml = &section[section.find("```toml\n").unwrap() + 8..];
    let toml = &toml[..toml.find("```").unwrap()];
    let config = Config::from_toml(toml).unwrap();
    let g = &config.executor.git["gitops"];
    assert_eq!(g.token_env, "GIT_TOKEN");
    let c = change(&config, &command("c", "checkout", "v2", "v1"));
    assert_eq!(c.file, "apps/checkout/prod/kustomization.yaml");
}

/// End to end through `rollbackd execute` and the test broker: the dry
/// run prints the diff and pushes nothing; the executor commits, pushes
/// and publishes a `succeeded` result naming the commit.
#[test]
fn execute_commits_a_gitops_rollback_and_reports_the_commit() {
    let _serial = support::serial();
    let broker = support::Broker::start();
    let o = seeded("git-e2e");
    let cfg = support::agent_config(
        &broker,
        "g-git",
        &format!(
            "[executor]\ntimeout = \"30s\"\nwork_dir = \"{}\"\n[executor.git.gitops]\nrepository = \"{}\"\nfile = \"apps/{{service}}/{{environment}}/kustomization.yaml\"\npattern = \"newTag: {{version}}\"\n",
            o.root.join("work").display(),
            o.bare.display()
        ),
    );
    let p = support::producer(&broker);
    let cmd = command("c-e2e", "checkout", "v2", "v1");
    support::produce(
        &p,
        "rollback-commands",
        Some("checkout"),
        &serde_json::to_vec(&cmd).unwrap(),
    );
    support::flush(&p);
    let head = o.main();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(["execute", "--dry-run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let would = &line["would_commit"];
    assert_eq!(line["command_id"], "c-e2e", "{line}");
    assert_eq!(would["parent"], head.as_str());
    assert_eq!(would["file"], "apps/checkout/prod/kustomization.yaml");
    assert!(would["diff"]
        .as_str()
        .unwrap()
        .contains("\n-  newTag: v2\n+  newTag: v1\n"));
    assert_eq!(o.main(), head, "a dry run pushes nothing");

    let mut executor = support::spawn_rollbackd(
        &["execute"],
        &cfg,
        std::process::Stdio::null(),
        std::process::Stdio::null(),
    );
    let results = support::wait_topic(&broker, "rollback-results", Duration::from_secs(60), |g| {
        !g.is_empty()
    });
    let _ = executor.kill();
    let _ = executor.wait();
    assert_eq!(results.len(), 1);
    let r = &results[0].payload;
    assert_eq!(r["command_id"], "c-e2e");
    assert_eq!(r["status"], "succeeded", "{r}");
    let commit = o.main();
    assert_ne!(commit, head);
    assert_eq!(
        r["message"],
        format!("commit {commit} pushed to main: apps/checkout/prod/kustomization.yaml v2 -> v1")
    );
    assert!(o
        .show("apps/checkout/prod/kustomization.yaml")
        .contains("newTag: v1"));
}

/// Over HTTP with basic authentication: the token in `credentials_file`,
/// read for each command (so a rotated one is used at once), is what git
/// sends; a wrong one fails with git's reason, and no token, from the
/// file or from a URL, shows in any message.
#[test]
fn the_token_from_a_credentials_file_authenticates_and_never_shows() {
    let o = seeded("git-http");
    let server = support::git_http::GitHttp::start(&o.root, "x-access-token", "t0ken-right");
    let token = o.root.join("token");
    std::fs::write(&token, "t0ken-wrong\n").unwrap();
    let with_file = |repository: &str, file: &str| {
        Config::from_toml(&format!(
            "[executor]\ntimeout = \"30s\"\nwork_dir = \"{}\"\n[executor.git.gitops]\nrepository = \"{repository}\"\nfile = \"apps/{{service}}/prod/kustomization.yaml\"\npattern = \"newTag: {{version}}\"\n{file}",
            o.root.join("work").display()
        ))
        .unwrap()
    };
    let url = format!("{}/origin.git", server.url);
    let config = with_file(
        &url,
        &format!("credentials_file = \"{}\"\n", token.display()),
    );
    let cmd = command("c-http", "checkout", "v2", "v1");
    let err = apply(&config, &cmd, false).unwrap_err();
    assert!(err.starts_with("git fetch exited"), "{err}");
    assert!(err.contains("Authentication failed"), "{err}");
    assert!(!err.contains("t0ken"), "{err}");
    let in_url = url.replace("http://", "http://x-access-token:t0ken-in-url@");
    let err = apply(&with_file(&in_url, ""), &cmd, false).unwrap_err();
    assert!(!err.contains("t0ken"), "{err}");

    std::fs::write(&token, "t0ken-right\n").unwrap();
    let head = o.main();
    let Outcome::Pushed { commit, .. } = apply(&config, &cmd, false).unwrap() else {
        panic!()
    };
    assert_eq!(commit, o.main());
    assert_ne!(commit, head);
    let seen = server.authorizations.lock().unwrap().clone();
    // "x-access-token:t0ken-right", the default user name and the token.
    assert!(
        seen.contains(&"Basic eC1hY2Nlc3MtdG9rZW46dDBrZW4tcmlnaHQ=".to_string()),
        "{seen:?}"
    );
}
