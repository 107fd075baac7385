//! Runs a function binary as its own process against the Firestore emulator,
//! the way it runs in production, and talks to it over HTTP.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::emulator::firestore_emulator_host;

/// A running function process, killed when dropped.
pub struct FunctionProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    client: reqwest::blocking::Client,
}

impl FunctionProcess {
    /// Starts `binary` with `KP_STORE=firestore` on the emulator, a fresh
    /// collection prefix and a free port, and waits for `/healthz`.
    pub fn start_on_firestore(binary: &str) -> Self {
        let host = firestore_emulator_host();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KP_STORE", "firestore")
            .env("FIRESTORE_EMULATOR_HOST", host)
            .env("FIRESTORE_PROJECT_ID", "kp-functions")
            .env("KP_COLLECTION_PREFIX", format!("f{}_{port}_", std::process::id()))
            .env("KP_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let process = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::blocking::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if process.get("/healthz").0 == 200 {
                return process;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{binary} did not answer /healthz within 30 s");
    }

    /// `GET path`: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        match self.client.get(format!("{}{path}", self.base)).send() {
            Ok(response) => (response.status().as_u16(), response.text().unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    /// `POST path` with a body: status and body.
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .body(body.to_owned())
            .send()
            .expect("the function answers");
        (response.status().as_u16(), response.text().unwrap_or_default())
    }
}

impl FunctionProcess {
    /// Sends SIGTERM (as Cloud Run does) and waits up to 10 s for the exit.
    pub fn terminate(mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
