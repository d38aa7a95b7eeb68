//! A Git server over HTTP on loopback: `git http-backend` (Git's smart
//! HTTP, as CGI) behind HTTP basic authentication, for the tests of the
//! executor's credentials. Each request gets its answer and the
//! connection is closed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine;

pub struct GitHttp {
    /// `http://127.0.0.1:PORT`; repositories under it by their directory
    /// name in the root.
    pub url: String,
    /// Every request's `Authorization` header (empty when it had none).
    pub authorizations: Arc<Mutex<Vec<String>>>,
}

impl GitHttp {
    /// Serves the repositories in `root` to `user` with `password`.
    pub fn start(root: &Path, user: &str, password: &str) -> GitHttp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (root, seen, user) = (root.to_path_buf(), authorizations.clone(), user.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (root, seen, want, user) =
                    (root.clone(), seen.clone(), want.clone(), user.clone());
                std::thread::spawn(move || serve(conn, &root, &seen, &want, &user));
            }
        });
        GitHttp {
            url,
            authorizations,
        }
    }
}

/// One request, answered.
fn serve(conn: TcpStream, root: &PathBuf, seen: &Mutex<Vec<String>>, want: &str, user: &str) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let body = read_body(
        &mut reader,
        &header("content-length"),
        &header("transfer-encoding"),
    );
    let authorization = header("authorization").unwrap_or_default();
    seen.lock().unwrap().push(authorization.clone());
    let mut out = conn;
    if authorization != want {
        let _ = out.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", user)
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type").unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            header("content-encoding").unwrap_or_default(),
        )
        .env(
            "HTTP_GIT_PROTOCOL",
            header("git-protocol").unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cgi.spawn().unwrap();
    child.stdin.take().unwrap().write_all(&body).unwrap();
    let reply = child.wait_with_output().unwrap().stdout;
    // CGI: headers (a `Status:` among them, or 200), a blank line, the body.
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let split = split.or_else(|| {
        reply
            .windows(2)
            .position(|w| w == b"\n\n")
            .map(|i| (i, i + 2))
    });
    let (end, start) = split.unwrap_or((0, 0));
    let head = String::from_utf8_lossy(&reply[..end]).into_owned();
    let mut status = "200 OK".to_string();
    let mut response = String::new();
    for h in head.lines() {
        match h.strip_prefix("Status:") {
            Some(s) => status = s.trim().to_string(),
            None => response.push_str(&format!("{h}\r\n")),
        }
    }
    let body = &reply[start..];
    let _ = out.write_all(
        format!(
            "HTTP/1.1 {status}\r\n{response}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let _ = out.write_all(body);
}

fn read_body(r: &mut impl BufRead, length: &Option<String>, encoding: &Option<String>) -> Vec<u8> {
    let mut body = Vec::new();
    if encoding.as_deref() == Some("chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length.as_deref().and_then(|n| n.parse().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body).unwrap();
    }
    body
}
