//! A real PostgreSQL server for tests, from the machine's Debian packages
//! (`make deps` installs them): `initdb` into a temporary directory, a free port,
//! a unix socket in that directory, `pg_ctl start -w`, one database. Stopped and
//! removed when the handle is dropped.
//!
//! PostgreSQL refuses to run as root; tests (and CI) run as root, so the server then
//! runs as the `postgres` system user the package creates.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tokio_postgres::{Client, NoTls, Row};

/// The database every [`PgServer`] creates.
pub const DATABASE: &str = "storefold_test";
const SUPERUSER: &str = "postgres";

/// A PostgreSQL server of its own: see the module documentation.
#[derive(Debug)]
pub struct PgServer {
    bindir: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
    settings: Vec<(String, String)>,
    /// TCP takes only TLS: helpers connect through the unix socket.
    tls_only: bool,
}

impl PgServer {
    /// Initialises a cluster, starts it and creates [`DATABASE`]. Panics with the
    /// server's own words when any step fails. Durability is off (`fsync`,
    /// `synchronous_commit`, `full_page_writes`): tests do not survive power loss.
    pub fn start() -> PgServer {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start), with server settings that override the
    /// defaults, e.g. `&[("fsync", "on"), ("synchronous_commit", "on")]` for a
    /// benchmark that should pay for durability like a production server.
    pub fn start_with(settings: &[(&str, &str)]) -> PgServer {
        Self::start_inner(settings, None)
    }

    /// A server whose TCP listener accepts only TLS connections (`hostssl` in
    /// its `pg_hba.conf`; plain TCP is refused with "no encryption"), with this
    /// certificate chain and key (PEM). Its unix socket stays open without TLS
    /// for [`client`](Self::client) and [`query`](Self::query).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> PgServer {
        Self::start_inner(&[], Some((cert_pem, key_pem)))
    }

    fn start_inner(settings: &[(&str, &str)], tls: Option<(&str, &str)>) -> PgServer {
        let bindir = bindir();
        let dir = tempfile::Builder::new()
            .prefix("storefold-pg-")
            .tempdir()
            .expect("temp dir for PostgreSQL");
        let port = crate::free_port();
        let mut settings: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some((cert, key)) = tls {
            let p = |name: &str| dir.path().join(name);
            std::fs::write(p("server.crt"), cert).expect("write server.crt");
            std::fs::write(p("server.key"), key).expect("write server.key");
            // PostgreSQL refuses a key others may read.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p("server.key"), std::fs::Permissions::from_mode(0o600))
                .expect("chmod server.key");
            std::fs::write(
                p("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .expect("write pg_hba.conf");
            for (k, v) in [
                ("ssl", "on".to_string()),
                ("ssl_cert_file", p("server.crt").display().to_string()),
                ("ssl_key_file", p("server.key").display().to_string()),
                ("hba_file", p("pg_hba.conf").display().to_string()),
            ] {
                settings.push((k.to_string(), v));
            }
        }
        let tls_only = tls.is_some();
        let server = PgServer {
            bindir,
            dir,
            port,
            running: false,
            settings,
            tls_only,
        };
        if as_root() {
            // The cluster's files must belong to the user the server runs as.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(server.dir.path())
                .status()
                .expect("run chown");
            assert!(status.success(), "chown of the PostgreSQL temp dir failed");
        }
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let mut server = server;
        server.start_again();
        let host = if server.tls_only {
            server.dir.path().display().to_string()
        } else {
            "127.0.0.1".to_string()
        };
        server.run(
            "createdb",
            &[
                "-h",
                &host,
                "-p",
                &server.port.to_string(),
                "-U",
                SUPERUSER,
                DATABASE,
            ],
        );
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>/storefold_test` (trust authentication).
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (`pg_ctl stop -m fast`): clients lose their connections and
    /// new ones are refused until [`start_again`](Self::start_again).
    pub fn stop(&mut self) {
        if self.running {
            self.run(
                "pg_ctl",
                &[
                    "stop",
                    "-D",
                    &self.data_dir().display().to_string(),
                    "-m",
                    "fast",
                    "-w",
                ],
            );
            self.running = false;
        }
    }

    /// Starts the server on the same port and data (after [`stop`](Self::stop)).
    pub fn start_again(&mut self) {
        if self.running {
            return;
        }
        let mut opts = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        // The last setting of a name wins.
        for (k, v) in &self.settings {
            opts.push_str(&format!(" -c {k}={v}"));
        }
        self.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &self.data_dir().display().to_string(),
                "-l",
                &self.dir.path().join("server.log").display().to_string(),
                "-o",
                &opts,
            ],
        );
        self.running = true;
    }

    /// A new connection (its connection task runs on the current tokio runtime).
    pub async fn client(&self) -> Client {
        let url = if self.tls_only {
            format!(
                "host={} port={} user={SUPERUSER} dbname={DATABASE}",
                self.dir.path().display(),
                self.port
            )
        } else {
            self.url()
        };
        let (client, conn) = tokio_postgres::connect(&url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to the test PostgreSQL: {e}"));
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Runs `sql` (no parameters) on a new connection and returns the rows.
    pub async fn query(&self, sql: &str) -> Vec<Row> {
        self.client()
            .await
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bindir.join(program);
        if as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let out = self
            .command(program)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed ({}):\n{}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        out
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .command("pg_ctl")
                .args(["stop", "-D"])
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w"])
                .output();
        }
    }
}

fn as_root() -> bool {
    // `id -u` rather than libc: the workspace forbids unsafe code.
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

/// PostgreSQL's server binaries: `$STOREFOLD_PG_BINDIR`, `pg_config --bindir`, else
/// the newest `/usr/lib/postgresql/*/bin`.
pub fn bindir() -> PathBuf {
    if let Some(p) = std::env::var_os("STOREFOLD_PG_BINDIR") {
        return PathBuf::from(p);
    }
    let has_initdb = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&d) {
            return d;
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_initdb(&bin).then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, d)| d).unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries (initdb, pg_ctl) were not found: run `make deps` \
             (Debian package postgresql) or set STOREFOLD_PG_BINDIR"
        )
    })
}
