//! PostgreSQL over TLS, as managed services require it: `sslmode` and `sslrootcert` in the
//! database URL, against the local server with a certificate from a CA of our own
//! (scripts/services.sh makes both; scripts/env.sh names the CA in TEST_DATABASE_CA).

mod common;

use common::*;
use webhooks::store::postgres::PostgresStore;
use webhooks::store::Store;

fn ca() -> Option<String> {
    postgres_url()?;
    match std::env::var("TEST_DATABASE_CA") {
        Ok(p) if std::path::Path::new(&p).exists() => Some(p),
        _ if std::env::var("REQUIRE_SERVICES").as_deref() == Ok("1") => panic!("TEST_DATABASE_CA is not a file but REQUIRE_SERVICES=1"),
        _ => {
            eprintln!("skipped: TEST_DATABASE_CA not set (run scripts/services.sh up postgres and source scripts/env.sh)");
            None
        }
    }
}

/// A CA that signed nothing the server presents.
fn other_ca(dir: &std::path::Path) -> String {
    let path = dir.join("other-ca.crt");
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=someone else"])
        .args(["-keyout", dir.join("other-ca.key").to_str().expect("utf-8"), "-out", path.to_str().expect("utf-8")])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success());
    path.to_str().expect("utf-8").to_owned()
}

#[tokio::test]
async fn verify_full_with_the_services_ca_connects_encrypted_and_another_ca_is_refused() {
    let (Some(admin), Some(ca)) = (postgres_url(), ca()) else { return };
    let db = FreshDatabase::create(&admin).await;
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("{}?sslmode=verify-full&sslrootcert={ca}", db.url.replace("127.0.0.1", host));
        let store = PostgresStore::connect(&url, 1).await.unwrap_or_else(|e| panic!("{host}: {e}"));
        store.ping().await.expect("ping");
        let version = store.tls_version().await.expect("read pg_stat_ssl");
        assert!(version.as_deref().is_some_and(|v| v.starts_with("TLS")), "{host}: {version:?}");
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let wrong = format!("{}?sslmode=verify-ca&sslrootcert={}", db.url, other_ca(dir.path()));
    let Err(refused) = PostgresStore::connect(&wrong, 1).await else { panic!("a server certificate from another CA was accepted") };
    assert!(refused.to_string().contains("certificate"), "{refused}");

    let plain = PostgresStore::connect(&format!("{}?sslmode=disable", db.url), 1).await.expect("sslmode=disable");
    assert_eq!(plain.tls_version().await.expect("read pg_stat_ssl"), None, "disable means plain text");
    drop(plain);
    db.drop_now().await;
}
