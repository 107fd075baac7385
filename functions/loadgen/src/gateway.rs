//! The service under load: a gateway binary started as its own process (what
//! the figures measure), or the gateway's router served in this process
//! (what the end-to-end test uses, so it needs no built binary).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Where a gateway keeps its data.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// The Firestore emulator at `host`, under a collection prefix.
    Firestore {
        /// `host:port` of the emulator.
        host: String,
        /// Collection prefix of this run.
        prefix: String,
    },
}

impl Backend {
    /// The environment that points a function binary at this store, with
    /// rate limits raised out of the way of a load test and no periodic
    /// cleanup.
    pub fn env(&self, port: u16) -> Vec<(String, String)> {
        let mut env = vec![
            ("KP_LISTEN", format!("127.0.0.1:{port}")),
            ("KP_CLAIM_RATE", "1000000000/1".into()),
            ("KP_OWNER_CLAIM_RATE", "1000000000/1".into()),
            ("KP_ANON_CLAIM_RATE", "1000000000/1".into()),
            ("KP_INGEST_RATE", "1000000000/1".into()),
            ("KP_CLEANUP_INTERVAL_SECS", "0".into()),
            ("KP_MAX_PER_OWNER", "100".into()),
            ("RUST_LOG", "warn".into()),
        ];
        match self {
            Self::Sqlite(path) => env.push(("KP_STORE", format!("sqlite:{}", path.display()))),
            Self::Firestore { host, prefix } => {
                env.push(("KP_STORE", "firestore".into()));
                env.push(("FIRESTORE_EMULATOR_HOST", host.clone()));
                env.push(("FIRESTORE_PROJECT_ID", crate::FIRESTORE_PROJECT.into()));
                env.push(("KP_COLLECTION_PREFIX", prefix.clone()));
            }
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Whether `GET /healthz` on `port` answers 200 right now.
pub fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut answer = [0u8; 16];
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_ok()
        && stream
            .read(&mut answer)
            .is_ok_and(|n| answer[..n].starts_with(b"HTTP/1.1 200"))
}

/// A function binary running as its own process, killed when dropped.
pub struct Process {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Process {
    /// Starts `binary` on `backend` and waits for `/healthz`.
    pub fn start(binary: &Path, backend: &Backend) -> anyhow::Result<Self> {
        let port = free_port();
        let child = Command::new(binary)
            .env_clear()
            .envs(backend.env(port))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut process = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if healthy(port) {
                return Ok(process);
            }
            if let Some(status) = process.child.try_wait()? {
                bail!("{} exited with {status}", binary.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{} did not answer /healthz within 60 s", binary.display())
    }

    /// Resident memory now and at its peak, MiB.
    pub fn memory(&self) -> Memory {
        memory_of(self.child.id())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process, MiB.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_mib: f64,
    /// `VmHWM`: the most it was resident.
    pub peak_mib: f64,
}

/// Reads `/proc/<pid>/status`.
pub fn memory_of(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    Memory {
        rss_mib: field("VmRSS:"),
        peak_mib: field("VmHWM:"),
    }
}

/// Serves the gateway's router in this process on a free port (the same
/// routes the gateway binary mounts, over real HTTP), configured like
/// [`Process::start`]. Answers the base URL.
pub async fn serve_in_process(backend: &Backend) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let env = backend.env(port);
    let config = kp_http::Config::from_vars(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))?;
    let store = kp_http::open_store(&config).await?;
    let state = kp_http::AppState::new(store, config);
    let router = kp_http::router(state, kp_http::Function::Gateway);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://127.0.0.1:{port}"))
}
