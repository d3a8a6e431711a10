//! loadgen's own request signing, written apart from the system's verifier so that a bug
//! in either is caught by the other. The key is decoded and the HMAC keyed once; each
//! request clones the keyed state and writes its header values into reused strings.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::scenario::Scheme;

type HmacSha256 = Hmac<Sha256>;

/// A secret that is not the system's: what a forger signs with.
const FORGED_SECRET: &str = "whsec_Zm9yZ2VkLWtleS1mb3ItdGVzdHM=";

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the signing secret is not `whsec_` followed by base64: {0}")]
    Secret(#[from] base64::DecodeError),
    #[error("the signing key is not usable for HMAC-SHA256")]
    Key,
}

/// The signature header values of one request, rewritten in place for each send.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SigHeaders {
    /// `webhook-timestamp` (Standard) or unused (Stripe).
    pub timestamp: String,
    /// `webhook-signature` (Standard) or `stripe-signature` (Stripe).
    pub signature: String,
}

#[derive(Clone)]
pub struct Signer {
    scheme: Scheme,
    genuine: HmacSha256,
    forged: HmacSha256,
}

fn keyed(scheme: Scheme, secret: &str) -> Result<HmacSha256, SignError> {
    // Standard Webhooks keys are the base64 after `whsec_`; Stripe keys are the string itself.
    let key = match scheme {
        Scheme::Standard => B64.decode(secret.strip_prefix("whsec_").unwrap_or(secret))?,
        Scheme::Stripe | Scheme::None => secret.as_bytes().to_vec(),
    };
    HmacSha256::new_from_slice(&key).map_err(|_| SignError::Key)
}

impl Signer {
    pub fn new(scheme: Scheme, secret: &str) -> Result<Self, SignError> {
        Ok(Self { scheme, genuine: keyed(scheme, secret)?, forged: keyed(scheme, FORGED_SECRET)? })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Writes the signature of `body` sent as message `id` at unix second `ts` into `out`;
    /// `forge` signs with a key the system does not know.
    pub fn sign(&self, id: &str, ts: i64, body: &[u8], forge: bool, out: &mut SigHeaders) {
        let mut mac = if forge { self.forged.clone() } else { self.genuine.clone() };
        let mut ts_buf = itoa::Buffer::new();
        // Timestamps are positive unix seconds; a negative one is clamped rather than signed.
        let ts_buf = ts_buf.format(ts.max(0));
        out.timestamp.clear();
        out.timestamp.push_str(ts_buf);
        out.signature.clear();
        match self.scheme {
            Scheme::None => {}
            Scheme::Standard => {
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(ts_buf.as_bytes());
                mac.update(b".");
                mac.update(body);
                out.signature.push_str("v1,");
                B64.encode_string(mac.finalize().into_bytes(), &mut out.signature);
            }
            Scheme::Stripe => {
                mac.update(ts_buf.as_bytes());
                mac.update(b".");
                mac.update(body);
                out.signature.push_str("t=");
                out.signature.push_str(ts_buf);
                out.signature.push_str(",v1=");
                let mut hex = [0u8; 64];
                // 32 bytes always fit 64 hex digits.
                if hex::encode_to_slice(mac.finalize().into_bytes(), &mut hex).is_ok() {
                    out.signature.extend(hex.iter().map(|b| *b as char));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks specification.
    #[test]
    fn standard_webhooks_published_vector() {
        let s = Signer::new(Scheme::Standard, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let mut out = SigHeaders::default();
        s.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#, false, &mut out);
        assert_eq!(out.signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(out.timestamp, "1614265330");
    }

    /// Stripe's scheme: HMAC-SHA256 over `{t}.{body}`, hex; checked against `openssl dgst`.
    #[test]
    fn stripe_header_shape_and_known_digest() {
        let s = Signer::new(Scheme::Stripe, "whsec_stripe_test_secret").unwrap();
        let mut out = SigHeaders::default();
        s.sign("", 1_614_265_330, b"{}", false, &mut out);
        assert_eq!(out.signature, format!("t=1614265330,v1={}", STRIPE_DIGEST));
    }

    const STRIPE_DIGEST: &str = include_str!("../../tests/data/stripe_digest.txt");

    #[test]
    fn forged_signatures_differ_and_buffers_are_rewritten() {
        let s = Signer::new(Scheme::Standard, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (mut a, mut b) = (SigHeaders::default(), SigHeaders::default());
        s.sign("m", 5, b"x", false, &mut a);
        s.sign("m", 5, b"x", true, &mut b);
        assert_ne!(a.signature, b.signature);
        s.sign("m", 7, b"x", false, &mut b);
        assert_eq!(b.timestamp, "7");
        assert_ne!(a.signature, b.signature);
    }

    #[test]
    fn a_bad_secret_is_an_error() {
        assert!(matches!(Signer::new(Scheme::Standard, "whsec_***"), Err(SignError::Secret(_))));
    }
}
