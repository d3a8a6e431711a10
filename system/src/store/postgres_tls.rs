//! TLS to PostgreSQL, as libpq spells it in the URL: `sslmode` (disable, allow, prefer,
//! require, verify-ca, verify-full) and `sslrootcert` (the CA file a managed service hands
//! out). tokio-postgres knows neither verify mode nor the CA file, so both are taken out of the
//! URL here and become the TLS connector's settings.

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use tokio_postgres::config::SslMode;

use super::StoreError;

/// What the client checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// Encrypted if the mode asks, but anyone may answer (libpq's `require` without a CA file).
    Nothing,
    /// Signed by the CA.
    Chain,
    /// Signed by the CA and naming the host connected to.
    ChainAndHost,
}

/// The connection settings of a PostgreSQL URL, with its TLS connector.
pub fn config(url: &str) -> Result<(tokio_postgres::Config, MakeTlsConnector), StoreError> {
    let (rest, mode, root) = split_tls_params(url);
    let mut config: tokio_postgres::Config = rest.parse().map_err(|_| StoreError::Permanent("invalid postgres URL".into()))?;
    let (ssl_mode, verify) = match mode.as_deref() {
        None | Some("prefer") | Some("allow") => (SslMode::Prefer, Verify::Nothing),
        Some("disable") => (SslMode::Disable, Verify::Nothing),
        // As libpq: `require` with a CA file verifies the chain.
        Some("require") if root.is_some() => (SslMode::Require, Verify::Chain),
        Some("require") => (SslMode::Require, Verify::Nothing),
        Some("verify-ca") => (SslMode::Require, Verify::Chain),
        Some("verify-full") => (SslMode::Require, Verify::ChainAndHost),
        Some(other) => return Err(StoreError::Permanent(format!("unknown sslmode {other:?} in the database URL"))),
    };
    config.ssl_mode(ssl_mode);
    Ok((config, connector(verify, root.as_deref())?))
}

fn connector(verify: Verify, root: Option<&str>) -> Result<MakeTlsConnector, StoreError> {
    let tls = |e: openssl::error::ErrorStack| StoreError::Permanent(format!("TLS settings for the database: {e}"));
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(tls)?;
    match root {
        Some(path) => builder.set_ca_file(path).map_err(|e| StoreError::Permanent(format!("sslrootcert {path}: {e}")))?,
        None => builder.set_default_verify_paths().map_err(tls)?,
    }
    builder.set_verify(if verify == Verify::Nothing { SslVerifyMode::NONE } else { SslVerifyMode::PEER });
    let mut connector = MakeTlsConnector::new(builder.build());
    if verify != Verify::ChainAndHost {
        connector.set_callback(|c, _| {
            c.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(connector)
}

/// The URL without `sslmode` and `sslrootcert`, and their values.
fn split_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), None, None) };
    let (mut mode, mut root, mut kept) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.to_owned()),
            Some(("sslrootcert", v)) => root = Some(v.to_owned()),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    (rest, mode, root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_parameters_are_taken_out_and_the_rest_kept() {
        let (rest, mode, root) = split_tls_params("postgres://u:p@db:5432/x?application_name=w&sslmode=verify-full&sslrootcert=/ca.pem");
        assert_eq!((rest.as_str(), mode.as_deref(), root.as_deref()), ("postgres://u:p@db:5432/x?application_name=w", Some("verify-full"), Some("/ca.pem")));
        assert_eq!(split_tls_params("postgres://db/x"), ("postgres://db/x".to_owned(), None, None));
    }

    #[test]
    fn an_unknown_mode_is_refused_by_name() {
        let Err(why) = config("postgres://db/x?sslmode=verify-some") else { panic!("accepted") };
        assert!(why.to_string().contains("verify-some"), "{why}");
        assert!(config("postgres://db/x?sslmode=verify-full&sslrootcert=/no/such/ca.pem").is_err(), "a CA file that cannot be read");
    }
}
