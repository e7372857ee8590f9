//! The store over TLS to a real PostgreSQL (Debian's server, built with OpenSSL;
//! `scripts/lib.sh` installs it): a server on loopback that accepts only TLS
//! (`hostnossl … reject`), with a certificate for `localhost` from a test CA, and
//! libpq's `sslmode` / `sslrootcert` / `sslcert` / `sslkey` meaning what they mean in
//! libpq. Set `BASALT_PG_BIN` to another server's `bin` directory to use that one.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use basalt_store::pg::{PoolConfig, PostgresStore};
use basalt_store::pg_connect::PgConnect;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("BASALT_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| d.ok())
                .map(|d| d.path().join("bin"))
                .filter(|bin| bin.join("postgres").is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "the TLS tests need a PostgreSQL server built with TLS: Debian's postgresql \
             (scripts/lib.sh install_system_packages installs it), or BASALT_PG_BIN"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// PostgreSQL refuses to run as root: as root, the server runs as `postgres`.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn chown_to_server_user(path: &Path) {
    if !is_root() {
        return;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id postgres");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the postgres user (Debian's postgresql package creates it)")
    };
    std::os::unix::fs::chown(path, Some(id("-u")), Some(id("-g"))).expect("chown");
}

fn run(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write a key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// A CA and certificates it signed, as PEM files.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    let ca_params = {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.distinguished_name
            .push(DnType::CommonName, "Basalt test CA");
        p
    };
    let ca = CertifiedIssuer::self_signed(ca_params.clone(), KeyPair::generate().expect("key"))
        .expect("CA");
    let mut other_params = ca_params;
    other_params.distinguished_name = rcgen::DistinguishedName::new();
    other_params
        .distinguished_name
        .push(DnType::CommonName, "Another CA");
    let other = CertifiedIssuer::self_signed(other_params, KeyPair::generate().expect("key"))
        .expect("another CA");
    let leaf = |names: Vec<String>, common_name: &str| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(names).expect("params");
        p.distinguished_name.push(DnType::CommonName, common_name);
        let cert = p.signed_by(&key, &ca).expect("signed");
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf(vec!["localhost".into()], "localhost");
    let (client_pem, client_key) = leaf(Vec::new(), "certuser");
    let pki = Pki {
        ca: dir.join("ca.crt"),
        other_ca: dir.join("other-ca.crt"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    };
    std::fs::write(&pki.ca, ca.pem()).expect("write");
    std::fs::write(&pki.other_ca, other.pem()).expect("write");
    std::fs::write(&pki.client_cert, client_pem).expect("write");
    write_private(&pki.client_key, &client_key);
    std::fs::write(&pki.server_cert, server_pem).expect("write");
    write_private(&pki.server_key, &server_key);
    chown_to_server_user(&pki.server_key);
    pki
}

/// A running server; stopped when dropped.
struct Server {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
    pki: Pki,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = as_server_user(&self.bin.join("pg_ctl"))
            .args(["-D"])
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_server() -> Server {
    use std::os::unix::fs::PermissionsExt;
    let bin = pg_bin();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    chown_to_server_user(dir.path());
    let pki = make_pki(dir.path());
    let data = dir.path().join("data");
    run(
        as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"]),
        "initdb",
    );
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\n\
         hostssl all certuser 127.0.0.1/32 cert\n\
         hostssl all all 127.0.0.1/32 trust\n\
         hostnossl all all 127.0.0.1/32 reject\n",
    )
    .expect("pg_hba.conf");
    let port = free_port();
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} -c ssl=on \
         -c ssl_cert_file={} -c ssl_key_file={} -c ssl_ca_file={} -c fsync=off",
        dir.path().display(),
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display()
    );
    run(
        as_server_user(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-w", "-t", "60", "-l"])
            .arg(dir.path().join("server.log"))
            .args(["-o", &options, "start"]),
        "pg_ctl start",
    );
    Server {
        bin,
        data,
        port,
        _dir: dir,
        pki,
    }
}

/// Whether the connection is encrypted, as the server sees it.
fn uses_tls(connect: &PgConnect) -> Result<bool, String> {
    let mut client = connect.connect().map_err(|e| describe(&e))?;
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .map(|row| row.get::<_, bool>(0))
        .map_err(|e| describe(&e))
}

/// The driver's message and its causes ("error performing TLS handshake: …").
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[test]
fn the_store_connects_over_tls_as_libpq_sslmode_says() {
    let server = start_server();
    let port = server.port;
    let ca = server.pki.ca.display().to_string();
    let url =
        |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/postgres?{query}");
    let connect = |host: &str, query: &str| {
        PgConnect::parse(&url(host, query)).unwrap_or_else(|e| panic!("{query}: {e}"))
    };

    // verify-full with the right CA and name: the whole store (migrations, key
    // watcher) runs over TLS.
    let full = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let store = PostgresStore::open(&full, PoolConfig::default())
        .unwrap_or_else(|e| panic!("the store over verify-full: {e}"));
    drop(store);
    assert_eq!(
        uses_tls(&connect(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}")
        )),
        Ok(true)
    );

    // The server refuses plaintext: disable cannot get in, so what got in above was TLS.
    let refused = uses_tls(&connect("localhost", "sslmode=disable")).expect_err("plaintext");
    eprintln!("sslmode=disable: {refused}");
    assert!(
        refused.contains("no encryption") || refused.contains("pg_hba.conf"),
        "{refused}"
    );

    // libpq's default (prefer) and require take TLS without checking the certificate.
    assert_eq!(uses_tls(&connect("localhost", "")), Ok(true), "prefer");
    assert_eq!(
        uses_tls(&connect("127.0.0.1", "sslmode=require")),
        Ok(true),
        "require"
    );

    // A certificate from another CA is refused by verify-ca and verify-full, and by
    // require once sslrootcert names a CA (as in libpq).
    let other = server.pki.other_ca.display().to_string();
    for mode in ["verify-full", "verify-ca", "require"] {
        let err = uses_tls(&connect(
            "localhost",
            &format!("sslmode={mode}&sslrootcert={other}"),
        ))
        .expect_err("another CA's certificate");
        eprintln!("{mode} with another CA: {err}");
        assert!(
            err.contains("invalid peer certificate: UnknownIssuer"),
            "{mode}: {err}"
        );
    }
    // The certificate names localhost, not 127.0.0.1: verify-full refuses the
    // address, verify-ca (chain only) accepts it.
    let err = uses_tls(&connect(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .expect_err("a certificate for another name");
    eprintln!("verify-full to 127.0.0.1: {err}");
    assert!(
        err.contains("NotValidForName") || err.contains("not valid for"),
        "{err}"
    );
    assert_eq!(
        uses_tls(&connect(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={ca}")
        )),
        Ok(true)
    );

    // A role that must log in with a client certificate (pg_hba `cert`).
    let mut admin = connect(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    )
    .connect()
    .expect("admin");
    admin
        .batch_execute("CREATE ROLE certuser LOGIN")
        .expect("create certuser");
    let as_certuser = |query: String| {
        PgConnect::parse(&format!(
            "postgres://certuser@localhost:{port}/postgres?{query}"
        ))
        .expect("parses")
    };
    let err = uses_tls(&as_certuser(format!(
        "sslmode=verify-full&sslrootcert={ca}"
    )))
    .expect_err("no client certificate");
    eprintln!("certuser without a certificate: {err}");
    assert!(err.contains("certificate"), "{err}");
    assert_eq!(
        uses_tls(&as_certuser(format!(
            "sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
            server.pki.client_cert.display(),
            server.pki.client_key.display()
        ))),
        Ok(true),
        "certuser with its certificate"
    );
}
