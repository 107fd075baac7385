//! Starts a real PostgreSQL server once per test process (Debian's server
//! binaries: an `initdb` into a temporary folder, `postgres` on a free
//! loopback port), stops it and removes its folder when the process exits,
//! and hands each test a database of its own. With `KP_TEST_POSTGRES_URL`
//! set, that server is used instead.

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How to get a server, for the failure message.
pub const INSTALL_HINT: &str = "the PostgreSQL tests need the PostgreSQL server binaries: \
`apt-get install postgresql` (Debian/Ubuntu; they land in /usr/lib/postgresql/<version>/bin), \
or start a server yourself and set KP_TEST_POSTGRES_URL=postgres://user:pass@host:port/postgres \
(a role that may CREATE DATABASE)";

/// The variable naming a server to use instead of starting one.
pub const URL_VARIABLE: &str = "KP_TEST_POSTGRES_URL";

/// The system user the server runs as when the tests run as root, which
/// PostgreSQL refuses to run as.
const SERVER_USER: &str = "postgres";

/// Names of test databases: `kp_test_<pid>_<n>`.
const DATABASE_PREFIX: &str = "kp_test_";

struct Server {
    /// A URL of the server's maintenance database, for `CREATE DATABASE`.
    admin_url: String,
    /// Whether the server is someone else's (then old test databases are
    /// swept from it, since nothing removes its data directory).
    external: bool,
    // Held so the watchdog's stdin stays open for the life of the process.
    _watchdog: Option<Child>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// The URL of a running server's maintenance database, starting a server
/// if needed. Blocks (call it from `spawn_blocking` in async code).
///
/// Panics with [`INSTALL_HINT`] when no server can be started: the
/// PostgreSQL tests fail, they never skip.
pub fn postgres_server_url() -> &'static str {
    &SERVER.get_or_init(start).admin_url
}

/// Creates an empty database for one test on the shared server and answers
/// its `postgres://` URL, so tests never see each other's rows.
pub async fn fresh_postgres_database() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SWEPT: AtomicBool = AtomicBool::new(false);
    let admin_url = tokio::task::spawn_blocking(|| postgres_server_url().to_owned())
        .await
        .expect("the postgres harness");
    let external = SERVER.get().is_some_and(|s| s.external);
    let client = connect_admin(&admin_url).await;
    if external && !SWEPT.swap(true, Ordering::SeqCst) {
        sweep_databases_of_ended_runs(&client).await;
    }
    let name = format!(
        "{DATABASE_PREFIX}{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    // A crashed run with the same pid could have left it behind.
    // Two calls: several statements in one are one transaction, which
    // neither statement may run in.
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        client
            .batch_execute(&statement)
            .await
            .unwrap_or_else(|e| panic!("{statement} on {}: {}", redact(&admin_url), describe(&e)));
    }
    with_database(&admin_url, &name)
}

/// Connects to the maintenance database, waiting while the server starts.
async fn connect_admin(url: &str) -> tokio_postgres::Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                return client;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!(
                "cannot connect to PostgreSQL at {}: {}; {INSTALL_HINT}",
                redact(url),
                describe(&e)
            ),
        }
    }
}

/// Drops test databases of runs whose process has ended (an external
/// server keeps them; a server this harness started goes with its folder).
async fn sweep_databases_of_ended_runs(client: &tokio_postgres::Client) {
    let Ok(rows) = client
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            &[&DATABASE_PREFIX],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name[DATABASE_PREFIX.len()..].split('_').next().unwrap_or("");
        let running = pid
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !running {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..].find('/').map_or(base.len(), |i| authority + i);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}/{name}{query}", &base[..path])
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    let authority = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority..];
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..authority], &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The error with what the server said (tokio-postgres prints "db error").
fn describe(error: &tokio_postgres::Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

fn start() -> Server {
    if let Ok(url) = std::env::var(URL_VARIABLE)
        && !url.is_empty()
    {
        return Server {
            admin_url: url,
            external: true,
            _watchdog: None,
        };
    }
    let bin = server_binaries().unwrap_or_else(|| {
        panic!("no PostgreSQL server binaries (initdb and postgres) in /usr/lib/postgresql/*/bin or on PATH; {INSTALL_HINT}")
    });
    let as_user = running_as_root().then(ensure_server_user);
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let dir = std::env::temp_dir().join(format!("kp-postgres-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    if let Some(user) = &as_user {
        run(
            Command::new("chown").arg(format!("{user}:")).arg(&dir),
            "chown the server folder",
        );
    }
    let data = dir.join("data");
    let log = dir.join("server.log");

    // Trust authentication is safe here: the server listens on loopback and
    // in its own folder only, and lives as long as this test process.
    let mut initdb = as_user.as_deref().map_or_else(
        || Command::new(bin.join("initdb")),
        |user| {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(bin.join("initdb"));
            c
        },
    );
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        .current_dir(&dir);
    run(&mut initdb, "initdb");

    let server = format!(
        "{runas}'{postgres}' -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        runas = as_user
            .as_deref()
            .map(|u| format!("runuser -u {u} -- "))
            .unwrap_or_default(),
        postgres = bin.join("postgres").display(),
        data = data.display(),
        dir = dir.display(),
    );
    // The server runs in its own process group under a watchdog shell that
    // waits for this process's end (its stdin closes), then asks for a fast
    // shutdown, kills what is left after 5 s, and removes the folder.
    let script = format!(
        "setsid {server} >'{log}' 2>&1 </dev/null & pid=$!; \
         cat >/dev/null; kill -INT -- -$pid 2>/dev/null; \
         for _ in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; \
         kill -KILL -- -$pid 2>/dev/null; wait; rm -rf '{dir}'",
        log = log.display(),
        dir = dir.display(),
    );
    let watchdog = Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start bash for the PostgreSQL server: {e}"));
    wait_until_up(port, &log, Duration::from_secs(60));
    eprintln!("PostgreSQL running on 127.0.0.1:{port} (folder: {})", dir.display());
    Server {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        external: false,
        _watchdog: Some(watchdog),
    }
}

/// The folder holding `initdb` and `postgres`: the newest Debian version
/// under /usr/lib/postgresql, else the first folder on PATH with both.
fn server_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).find(|dir| has_both(dir))
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The system user to run the server as, created when missing (Debian's
/// package creates it; a server built by hand may not have).
fn ensure_server_user() -> String {
    let exists = |user: &str| {
        Command::new("id")
            .arg("-u")
            .arg(user)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !exists(SERVER_USER) {
        run(
            Command::new("useradd").args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ]),
            "create the postgres system user",
        );
    }
    SERVER_USER.to_owned()
}

/// Runs a setup command, panicking with its output when it fails.
fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot {what}: {e}; {INSTALL_HINT}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits until the server says it accepts connections and its port does.
fn wait_until_up(port: u16, log: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let read_log = || {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    };
    while Instant::now() < deadline {
        if read_log().contains("ready to accept connections") && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "PostgreSQL on 127.0.0.1:{port} did not come up within {timeout:?}; {INSTALL_HINT}\nserver log:\n{}",
        read_log()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_test_database() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "kp_test_1_0"),
            "postgres://u:p@h:5432/kp_test_1_0"
        );
        assert_eq!(
            with_database("postgresql://u@h/postgres?sslmode=disable", "d"),
            "postgresql://u@h/d?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "d"), "postgres://h:1/d");
    }

    #[test]
    fn messages_hide_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
