//! Webhook signatures: Standard Webhooks and Stripe style, with several secrets per scheme
//! so that a secret can be rotated without downtime.

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const STANDARD_ID: &str = "webhook-id";
pub const STANDARD_TIMESTAMP: &str = "webhook-timestamp";
pub const STANDARD_SIGNATURE: &str = "webhook-signature";
pub const STRIPE_SIGNATURE: &str = "stripe-signature";

/// Why a request's signature was refused. The messages go back to the caller, so they
/// describe the request and never the secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("request is not signed; expected webhook-signature or Stripe-Signature headers")]
    Missing,
    #[error("request is signed with the {0} scheme, which has no secret configured")]
    SchemeNotConfigured(&'static str),
    #[error("malformed {0} header")]
    Malformed(&'static str),
    #[error("timestamp outside the tolerance of {0} s")]
    Expired(u64),
    #[error("no signature matches")]
    Mismatch,
}

impl SignatureError {
    /// A stable name for counting refusals by reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::SchemeNotConfigured(_) => "scheme_not_configured",
            Self::Malformed(_) => "malformed",
            Self::Expired(_) => "expired",
            Self::Mismatch => "mismatch",
        }
    }

    /// Every `reason`, for reporting counts per reason.
    pub fn reasons() -> [&'static str; 5] {
        [Self::Missing, Self::SchemeNotConfigured(""), Self::Malformed(""), Self::Expired(0), Self::Mismatch].map(|e| e.reason())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("Standard Webhooks secret must look like whsec_<base64>")]
    BadStandardSecret,
}

/// Verifies requests against the configured secrets.
#[derive(Clone, Default)]
pub struct Verifier {
    /// Decoded keys for Standard Webhooks (the base64 part after `whsec_`).
    standard: Vec<Vec<u8>>,
    /// Stripe signs with the secret string's own bytes, `whsec_` prefix included.
    stripe: Vec<Vec<u8>>,
    tolerance_secs: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("standard_secrets", &self.standard.len())
            .field("stripe_secrets", &self.stripe.len())
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

/// The header values a signed request carried, for the caller to trust after verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The Standard Webhooks message id, when that scheme was used: the event's identity.
    pub message_id: Option<String>,
}

impl Verifier {
    /// `standard` and `stripe` are comma-separated lists of secrets (empty for none).
    pub fn new(standard: &str, stripe: &str, tolerance_secs: u64) -> Result<Self, SecretError> {
        let standard = split(standard)
            .map(|s| {
                let b64 = s.strip_prefix("whsec_").unwrap_or(s);
                B64.decode(b64).map_err(|_| SecretError::BadStandardSecret)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stripe = split(stripe).map(|s| s.as_bytes().to_vec()).collect();
        Ok(Self { standard, stripe, tolerance_secs })
    }

    pub fn enabled(&self) -> bool {
        !self.standard.is_empty() || !self.stripe.is_empty()
    }

    /// Checks the scheme whose headers the request carries; with no secret configured
    /// every request passes.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now_secs: i64) -> Result<Verified, SignatureError> {
        let transport_id = header(headers, STANDARD_ID).map(str::to_owned);
        if !self.enabled() {
            return Ok(Verified { message_id: transport_id });
        }
        if let Some(sig) = header(headers, STANDARD_SIGNATURE) {
            if self.standard.is_empty() {
                return Err(SignatureError::SchemeNotConfigured("Standard Webhooks"));
            }
            let id = transport_id.ok_or(SignatureError::Malformed(STANDARD_ID))?;
            let ts = header(headers, STANDARD_TIMESTAMP).ok_or(SignatureError::Malformed(STANDARD_TIMESTAMP))?;
            self.verify_standard(&id, ts, sig, body, now_secs)?;
            return Ok(Verified { message_id: Some(id) });
        }
        if let Some(sig) = header(headers, STRIPE_SIGNATURE) {
            if self.stripe.is_empty() {
                return Err(SignatureError::SchemeNotConfigured("Stripe"));
            }
            self.verify_stripe(sig, body, now_secs)?;
            return Ok(Verified { message_id: None });
        }
        Err(SignatureError::Missing)
    }

    /// For Stripe's own route: only `Stripe-Signature` counts. With no secret configured at
    /// all, every request passes, as on the other route (a loopback-only setup).
    pub fn verify_stripe_request(&self, headers: &HeaderMap, body: &[u8], now_secs: i64) -> Result<(), SignatureError> {
        if !self.enabled() {
            return Ok(());
        }
        if self.stripe.is_empty() {
            return Err(SignatureError::SchemeNotConfigured("Stripe"));
        }
        let sig = header(headers, STRIPE_SIGNATURE).ok_or(SignatureError::Missing)?;
        self.verify_stripe(sig, body, now_secs)
    }

    fn verify_standard(&self, id: &str, ts: &str, header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
        let t: i64 = ts.parse().map_err(|_| SignatureError::Malformed(STANDARD_TIMESTAMP))?;
        self.check_time(t, now)?;
        let signatures: Vec<Vec<u8>> = header
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|b| B64.decode(b).ok())
            .collect();
        if signatures.is_empty() {
            return Err(SignatureError::Malformed(STANDARD_SIGNATURE));
        }
        let prefix = format!("{id}.{ts}.");
        any_key_matches(&self.standard, &prefix, body, &signatures)
    }

    fn verify_stripe(&self, header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
        let mut t = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = Some(v),
                Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
                _ => {}
            }
        }
        let t_str = t.ok_or(SignatureError::Malformed("Stripe-Signature"))?;
        let t_num: i64 = t_str.parse().map_err(|_| SignatureError::Malformed("Stripe-Signature"))?;
        if signatures.is_empty() {
            return Err(SignatureError::Malformed("Stripe-Signature"));
        }
        self.check_time(t_num, now)?;
        any_key_matches(&self.stripe, &format!("{t_str}."), body, &signatures)
    }

    fn check_time(&self, t: i64, now: i64) -> Result<(), SignatureError> {
        if now.abs_diff(t) > self.tolerance_secs {
            return Err(SignatureError::Expired(self.tolerance_secs));
        }
        Ok(())
    }
}

/// Tries every key against every offered signature; `verify_slice` compares in constant time.
fn any_key_matches(keys: &[Vec<u8>], prefix: &str, body: &[u8], signatures: &[Vec<u8>]) -> Result<(), SignatureError> {
    for key in keys {
        let Ok(mut mac) = HmacSha256::new_from_slice(key) else { continue };
        mac.update(prefix.as_bytes());
        mac.update(body);
        if signatures.iter().any(|sig| mac.clone().verify_slice(sig).is_ok()) {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

/// The secrets of a comma-separated list; blanks are no secret.
pub(crate) fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Signing, for tests, benches and load generators that must produce what we verify.
pub mod sign {
    use super::*;

    /// `v1,<base64>` for Standard Webhooks; `secret` is `whsec_<base64 key>`.
    pub fn standard(secret: &str, id: &str, ts: i64, body: &[u8]) -> Option<String> {
        let key = B64.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).ok()?;
        let mut mac = HmacSha256::new_from_slice(&key).ok()?;
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        Some(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
    }

    /// `t=<ts>,v1=<hex>` for Stripe; the key is the secret string itself.
    pub fn stripe(secret: &str, ts: i64, body: &[u8]) -> Option<String> {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
        mac.update(format!("{ts}.").as_bytes());
        mac.update(body);
        Some(format!("t={ts},v1={}", hex::encode(mac.finalize().into_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const STRIPE: &str = "whsec_stripe_test_secret";
    const NOW: i64 = 1_614_265_330;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    fn standard_headers(secret: &str, id: &str, ts: i64, body: &[u8]) -> HeaderMap {
        let sig = sign::standard(secret, id, ts, body).expect("sign");
        headers(&[(STANDARD_ID, id.into()), (STANDARD_TIMESTAMP, ts.to_string()), (STANDARD_SIGNATURE, sig)])
    }

    /// The test vector published with the Standard Webhooks specification.
    #[test]
    fn standard_webhooks_published_vector() {
        let body = br#"{"test": 2432232314}"#;
        let sig = sign::standard(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", NOW, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let v = Verifier::new(SECRET, "", 300).unwrap();
        let h = standard_headers(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", NOW, body);
        assert_eq!(v.verify(&h, body, NOW).unwrap().message_id.as_deref(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
    }

    #[test]
    fn standard_rejects_tampering_wrong_secret_and_old_timestamps() {
        let v = Verifier::new(SECRET, "", 300).unwrap();
        let h = standard_headers(SECRET, "msg_1", NOW, b"{}");
        assert_eq!(v.verify(&h, b"{ }", NOW), Err(SignatureError::Mismatch));
        assert_eq!(v.verify(&h, b"{}", NOW + 301), Err(SignatureError::Expired(300)));
        assert_eq!(v.verify(&h, b"{}", NOW - 301), Err(SignatureError::Expired(300)));
        let other = standard_headers("whsec_c2VjcmV0Mg==", "msg_1", NOW, b"{}");
        assert_eq!(v.verify(&other, b"{}", NOW), Err(SignatureError::Mismatch));
    }

    #[test]
    fn standard_accepts_any_of_several_signatures_and_rotated_secrets() {
        let old = "whsec_b2xkLXNlY3JldA==";
        let v = Verifier::new(&format!("{SECRET}, {old}"), "", 300).unwrap();
        let good = sign::standard(old, "msg_1", NOW, b"{}").unwrap();
        let h = headers(&[
            (STANDARD_ID, "msg_1".into()),
            (STANDARD_TIMESTAMP, NOW.to_string()),
            (STANDARD_SIGNATURE, format!("v1,AAAA v2,xyz {good}")),
        ]);
        assert!(v.verify(&h, b"{}", NOW).is_ok());
    }

    #[test]
    fn stripe_scheme_uses_the_raw_secret_and_accepts_several_v1() {
        let v = Verifier::new("", &format!("whsec_old,{STRIPE}"), 300).unwrap();
        let sig = sign::stripe(STRIPE, NOW, b"{}").unwrap();
        let v1 = sig.split_once(",v1=").unwrap().1;
        let h = headers(&[(STRIPE_SIGNATURE, format!("t={NOW},v1=00ff,v1={v1},v0=abc"))]);
        assert!(v.verify(&h, b"{}", NOW).is_ok());
        assert_eq!(v.verify(&h, b"{\"x\":1}", NOW), Err(SignatureError::Mismatch));
        assert_eq!(v.verify(&h, b"{}", NOW + 1000), Err(SignatureError::Expired(300)));
        let bad = headers(&[(STRIPE_SIGNATURE, "v1=abcd".into())]);
        assert_eq!(v.verify(&bad, b"{}", NOW), Err(SignatureError::Malformed("Stripe-Signature")));
    }

    #[test]
    fn unsigned_requests_pass_only_without_secrets() {
        assert!(Verifier::new("", "", 300).unwrap().verify(&HeaderMap::new(), b"{}", NOW).is_ok());
        let v = Verifier::new(SECRET, "", 300).unwrap();
        assert_eq!(v.verify(&HeaderMap::new(), b"{}", NOW), Err(SignatureError::Missing));
        let stripe_signed = headers(&[(STRIPE_SIGNATURE, sign::stripe(STRIPE, NOW, b"{}").unwrap())]);
        assert_eq!(v.verify(&stripe_signed, b"{}", NOW), Err(SignatureError::SchemeNotConfigured("Stripe")));
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let v = Verifier::new(SECRET, STRIPE, 300).unwrap();
        let shown = format!("{v:?}");
        assert!(!shown.contains("MfKQ") && !shown.contains("stripe_test"));
    }
}
