//! Starts the Firestore emulator once per test process, on a free loopback
//! port, and stops it when the process exits. With `FIRESTORE_EMULATOR_HOST`
//! set, that emulator is used instead.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How to get the emulator, for the failure message.
pub const INSTALL_HINT: &str = "the Firestore tests need the Firestore emulator: install the Google Cloud CLI \
(https://cloud.google.com/sdk/docs/install) and Java 11+, then `gcloud components install cloud-firestore-emulator` \
(or the Debian/RPM package google-cloud-cli-firestore-emulator); or start one yourself and set FIRESTORE_EMULATOR_HOST=host:port";

struct Emulator {
    host: String,
    // Held so the watchdog's stdin stays open for the life of the process.
    _watchdog: Option<Child>,
}

static EMULATOR: OnceLock<Emulator> = OnceLock::new();

/// The `host:port` of a running Firestore emulator, starting one if needed.
///
/// Panics with [`INSTALL_HINT`] when the emulator cannot be started: the
/// Firestore tests fail, they never skip.
pub fn firestore_emulator_host() -> &'static str {
    &EMULATOR.get_or_init(start).host
}

fn start() -> Emulator {
    if let Ok(host) = std::env::var("FIRESTORE_EMULATOR_HOST")
        && !host.is_empty()
    {
        wait_until_up(&host, Duration::from_secs(30), None);
        return Emulator { host, _watchdog: None };
    }
    let found = Command::new("gcloud")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "gcloud was not found on PATH; {INSTALL_HINT}");

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let host = format!("127.0.0.1:{port}");
    let log = std::env::temp_dir().join(format!("kp-firestore-emulator-{port}.log"));
    // The emulator runs in its own process group under a watchdog shell that
    // waits for this process's end (its stdin closes) and then stops the
    // whole group, Java included.
    let script = format!(
        "setsid gcloud emulators firestore start --host-port={host} --quiet >'{log}' 2>&1 & pid=$!; \
         cat >/dev/null; kill -TERM -- -$pid 2>/dev/null; sleep 2; kill -KILL -- -$pid 2>/dev/null",
        log = log.display()
    );
    let watchdog = Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start bash for the emulator: {e}; {INSTALL_HINT}"));
    wait_until_up(&host, Duration::from_secs(90), Some(&log));
    eprintln!("Firestore emulator running on {host} (log: {})", log.display());
    Emulator {
        host,
        _watchdog: Some(watchdog),
    }
}

/// Waits for the emulator's HTTP root to answer "Ok".
fn wait_until_up(host: &str, timeout: Duration, log: Option<&std::path::Path>) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect(host) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            let mut answer = [0u8; 256];
            if stream.write_all(request.as_bytes()).is_ok()
                && let Ok(read) = stream.read(&mut answer)
                && answer[..read].starts_with(b"HTTP/1.1 200")
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = log
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default();
    panic!("the Firestore emulator on {host} did not come up within {timeout:?}; {INSTALL_HINT}\nemulator log:\n{log}");
}
