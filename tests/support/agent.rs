//! The `rollbackd` binary: `run` as an [`Agent`] (restartable, its log
//! kept), any other subcommand, and the lines it prints.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::broker::Broker;
use super::http::{http_get, metric};
use super::procs::unique_dir;

const RESTART_MARK: &str = "---- restart ----\n";

/// The environment variable the test configs name in
/// `kafka.instance_id_env`: an agent started with it set is a static group
/// member with a stable transactional id.
pub const INSTANCE_ENV: &str = "ROLLBACKD_INSTANCE";

/// The `[slo]` of [`agent_config`]: fast windows, so a bad canary is caught
/// in seconds of wall time.
pub const FAST_SLO: &str = r#"[slo]
warmup = "2s"
evaluation_interval = "1s"
min_requests = 50
windows = [ { short = "5s", long = "20s", burn_rate = 14.4 } ]
"#;

/// A config for a test agent with [`FAST_SLO`] and `extra` tables.
pub fn agent_config(broker: &Broker, group: &str, extra: &str) -> PathBuf {
    agent_config_with_slo(broker, group, FAST_SLO, extra)
}

/// A config for a test agent: transactions on with noida-db, off with
/// tansu (which answers the transactional API without keeping its
/// promises).
pub fn agent_config_with_slo(broker: &Broker, group: &str, slo: &str, extra: &str) -> PathBuf {
    let dir = unique_dir("agent");
    let p = dir.join("config.toml");
    let transactions = if broker.noida { "on" } else { "off" };
    std::fs::write(
        &p,
        format!(
            r#"[kafka]
brokers = "{}"
group_id = "{group}"
transactions = "{transactions}"
instance_id_env = "{INSTANCE_ENV}"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[http]
listen = "127.0.0.1:0"
allow_unauthenticated = true

{slo}
{extra}
"#,
            broker.brokers()
        ),
    )
    .unwrap();
    p
}

/// A running `rollbackd run`.
pub struct Agent {
    child: Option<Child>,
    pub log: Arc<Mutex<String>>,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl Agent {
    pub fn start(config: &Path) -> Agent {
        Agent::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Agent {
        let mut a = Agent {
            child: None,
            log: Arc::new(Mutex::new(String::new())),
            config: config.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("ROLLBACKD_LOG", "info")
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rollbackd");
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        self.child = Some(child);
    }

    /// The process id of the current process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits for `needle` in the log of the current process (since the
    /// last restart).
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.current_log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn count_log(&self, needle: &str) -> usize {
        self.log.lock().unwrap().matches(needle).count()
    }

    pub fn wait_ready(&self) {
        assert!(
            self.wait_log("rollbackd ready", Duration::from_secs(90)),
            "agent never became ready:\n{}",
            self.log.lock().unwrap()
        );
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.log.lock().unwrap().push_str(RESTART_MARK);
        self.spawn();
    }

    /// Starts the agent again (it must have exited or been killed) with
    /// `env` instead of the environment it was started with.
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.restart();
    }

    /// Sends a signal (`STOP`, `CONT`, …) to the agent's process.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-s", sig, &c.id().to_string()])
                .status();
        }
    }

    /// Waits up to `timeout` for the process to exit by itself; how it
    /// ended (`None`: still running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return Some(status);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log since the last restart.
    fn current_log(&self) -> String {
        let log = self.log.lock().unwrap();
        let from = log
            .rfind(RESTART_MARK)
            .map_or(0, |i| i + RESTART_MARK.len());
        log[from..].to_string()
    }

    /// The address the agent's HTTP listener bound (the last start's).
    pub fn http_addr(&self) -> String {
        assert!(
            self.wait_log("http listening", Duration::from_secs(30)),
            "{}",
            self.log_text()
        );
        self.current_log()
            .lines()
            .rev()
            .find(|l| l.contains("http listening"))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .expect("http listening addr=")
            .to_string()
    }

    /// GET `path` from the agent: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.http_addr(), path)
    }

    /// Waits until the agent's `/metrics` shows `sample` = `want`.
    pub fn wait_metric(&self, sample: &str, want: f64, timeout: Duration) {
        let until = Instant::now() + timeout;
        loop {
            let (_, text) = self.get("/metrics");
            if metric(&text, sample) == want {
                return;
            }
            assert!(
                Instant::now() < until,
                "{sample} != {want}\n{text}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The logs of `agents`, one after the other (for a failing assertion).
pub fn logs<'a>(agents: impl IntoIterator<Item = &'a Agent>) -> String {
    agents
        .into_iter()
        .map(|a| a.log_text())
        .collect::<Vec<_>>()
        .join("\n----\n")
}

/// Runs `rollbackd ARGS` to its end; asserts that it succeeded and
/// returns what it printed on stdout.
pub fn rollbackd_ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(args)
        .output()
        .expect("run rollbackd");
    assert!(
        out.status.success(),
        "rollbackd {:?}: {}",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 on stdout")
}

/// Starts `rollbackd ARGS --config CFG` with the given stdout and stderr.
pub fn spawn_rollbackd(
    args: &[&str],
    cfg: &Path,
    stdout: std::process::Stdio,
    stderr: std::process::Stdio,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(args)
        .arg("--config")
        .arg(cfg)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start rollbackd")
}

/// The lines a child writes on stdout, as they come (its stdout must be piped).
pub fn stdout_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    lines_of(child.stdout.take().expect("stdout piped"))
}

/// The lines a child writes on stderr, as they come (its stderr must be piped).
pub fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    lines_of(child.stderr.take().expect("stderr piped"))
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

/// Waits for a line containing `needle`.
pub fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str, timeout: Duration) -> bool {
    let until = std::time::Instant::now() + timeout;
    while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// Reads a `rollbackd run` child's stderr (piped) until it logs the HTTP
/// address it bound; the rest of its stderr is drained in the background.
pub fn http_addr_from_stderr(child: &mut Child) -> String {
    let mut err = BufReader::new(child.stderr.take().expect("stderr piped"));
    let addr = loop {
        let mut l = String::new();
        assert!(
            err.read_line(&mut l).unwrap() > 0,
            "rollbackd exited before listening"
        );
        if let Some(a) = l.split("addr=").nth(1) {
            break a.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in err.lines() {});
    addr
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn announce(broker_config: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .arg("announce")
        .args(args)
        .arg("--config")
        .arg(broker_config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "announce failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Announces `deploy.started` of `service` v2 (previous v1) as `deploy_id`.
pub fn announce_started(broker_config: &Path, deploy_id: &str, service: &str) {
    announce_started_with(broker_config, deploy_id, service, &[]);
}

/// [`announce_started`] with more `announce` arguments.
pub fn announce_started_with(broker_config: &Path, deploy_id: &str, service: &str, more: &[&str]) {
    let mut args = vec![
        "started",
        "--deploy-id",
        deploy_id,
        "--service",
        service,
        "--version",
        "v2",
        "--previous-version",
        "v1",
    ];
    args.extend_from_slice(more);
    announce(broker_config, &args);
}

/// `rollbackd run` without Kafka: HTTP in, commands on stdout, audit to a
/// file.
pub struct LocalAgent {
    pub child: Child,
    pub addr: String,
    pub stdout: std::sync::mpsc::Receiver<String>,
    pub audit: PathBuf,
}

impl Drop for LocalAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LocalAgent {
    /// Starts one listening on a free loopback port; `http` goes in its
    /// `[http]` table, `extra` after it (more tables). Without
    /// `ROLLBACKD_WEBHOOK_TOKEN` in `env` its webhook routes are open
    /// (`http.allow_unauthenticated`).
    pub fn start(http: &str, extra: &str, env: &[(&str, &str)]) -> LocalAgent {
        LocalAgent::start_in(&unique_dir("local"), http, extra, env)
    }

    /// As [`LocalAgent::start`], with its config and audit file in `dir`:
    /// started again there, it finds the audit file it left.
    pub fn start_in(dir: &Path, http: &str, extra: &str, env: &[(&str, &str)]) -> LocalAgent {
        let audit = dir.join("audit.jsonl");
        let cfg = dir.join("config.toml");
        let open = !env.iter().any(|(k, _)| *k == "ROLLBACKD_WEBHOOK_TOKEN");
        std::fs::write(
            &cfg,
            format!(
                "[http]\nlisten = \"127.0.0.1:0\"\nallow_unauthenticated = {open}\n{http}\n[audit]\npath = \"{}\"\n{extra}",
                audit.display()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
            .args(["run", "--config"])
            .arg(&cfg)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = stdout_lines(&mut child);
        let addr = http_addr_from_stderr(&mut child);
        LocalAgent {
            child,
            addr,
            stdout,
            audit,
        }
    }

    /// The next command it prints.
    pub fn command(&self, timeout: Duration) -> serde_json::Value {
        let line = self
            .stdout
            .recv_timeout(timeout)
            .expect("a command on stdout");
        serde_json::from_str(&line).unwrap()
    }
}
