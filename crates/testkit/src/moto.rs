//! A moto server on loopback, started from the project's Python venv.
//!
//! The server runs in a small Python launcher that exits when its standard input closes, so it
//! dies with the process that started it, however that process ends.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

const LAUNCHER: &str = r#"
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print("PORT", server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # returns at EOF: when the parent process is gone
"#;

/// A running moto server. Dropping it stops the server.
pub struct Moto {
    child: Child,
    _stdin: ChildStdin,
    endpoint: String,
}

impl Moto {
    /// Starts a server on a free loopback port and waits until it listens.
    pub fn start() -> Result<Moto, String> {
        let python = python()?;
        let log = std::env::var_os("APPCREDS_MOTO_LOG")
            .and_then(|p| std::fs::File::create(p).ok())
            .map(Stdio::from)
            .unwrap_or_else(Stdio::null);
        let mut child = Command::new(&python)
            .args(["-c", LAUNCHER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse::<u16>().ok())
            .ok_or_else(|| format!("moto did not start (is moto[server] installed for {}?)", python.display()))?;
        Ok(Moto { child, _stdin: stdin, endpoint: format!("http://127.0.0.1:{port}") })
    }

    /// The server shared by all tests of one test binary, started on first use.
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(|| Moto::start().unwrap_or_else(|e| panic!("moto server: {e}. Run scripts/setup first.")))
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL` or an SDK config.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python with moto: `$APPCREDS_PYTHON`, else the workspace's `.venv`, else `python3`.
pub fn python() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("APPCREDS_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let venv = workspace_root().join(".venv/bin/python");
    if venv.exists() {
        return Ok(venv);
    }
    Ok(PathBuf::from("python3"))
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}
