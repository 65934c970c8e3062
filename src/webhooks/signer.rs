//! plaid-vcr's own webhook signing key: an ES256 (P-256) key made at start, the
//! `Plaid-Verification` JWT for each replayed webhook, and the JWK that
//! `/webhook_verification_key/get` answers for its key id.
//!
//! Recorded signatures cannot be replayed (Plaid's `iat` must be under 5 minutes old and the
//! private key is Plaid's), so replay signs every delivery afresh, exactly as Plaid does: JOSE
//! header `{"alg":"ES256","kid":…,"typ":"JWT"}`, claims `{"iat":…,"request_body_sha256":…}`.
//! An app's unmodified verification code then fetches this key and passes. The crypto is
//! `ring`'s; this module only encodes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Why the signing key could not be made (the system's random source failed).
#[derive(Debug, thiserror::Error)]
#[error("could not create the webhook signing key: {0}")]
pub struct SignerError(String);

/// An ES256 key pair and its key id.
pub struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    kid: String,
    created_at: u64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Signer {
    /// A fresh key; its id is `plaid-vcr-` and 16 hex characters of the public key's SHA-256,
    /// so it can never collide with a recorded Plaid key id.
    pub fn generate() -> Result<Signer, SignerError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|e| SignerError(e.to_string()))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| SignerError(e.to_string()))?;
        let digest = Sha256::digest(key.public_key().as_ref());
        let kid = format!(
            "plaid-vcr-{}",
            crate::store::key::prefix(&crate::store::key::hex(&digest))
        );
        Ok(Signer {
            key,
            rng,
            kid,
            created_at: unix_now(),
        })
    }

    /// The key id in every JWT header and the JWK.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The `Plaid-Verification` header value for delivering `body` now.
    pub fn sign(&self, body: &[u8]) -> Result<String, SignerError> {
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let claims = json!({
            "iat": unix_now(),
            "request_body_sha256": crate::store::key::hex(&Sha256::digest(body)),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // FIXED signing gives r || s (64 bytes): the JWS encoding of an ES256 signature.
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|e| SignerError(e.to_string()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// The public key as Plaid's `/webhook_verification_key/get` answers it (`key`).
    pub fn jwk(&self) -> Value {
        // An uncompressed P-256 point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = self.key.public_key().as_ref();
        json!({
            "alg": "ES256",
            "created_at": self.created_at,
            "crv": "P-256",
            "expired_at": null,
            "kid": self.kid,
            "kty": "EC",
            "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }
}

fn unix_now() -> u64 {
    // A clock before 1970 is a broken machine; 0 makes every JWT visibly stale rather than
    // crashing the delivery.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    #[test]
    fn a_signature_verifies_with_the_published_jwk_and_names_the_body_hash() {
        let signer = Signer::generate().unwrap();
        let body = br#"{"webhook_code":"DEFAULT_UPDATE"}"#;
        let jwt = signer.sign(body).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": signer.kid(), "typ": "JWT"}));
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims["request_body_sha256"],
            crate::store::key::hex(&Sha256::digest(body))
        );
        assert!(claims["iat"].as_u64().unwrap() + 5 >= unix_now());

        let jwk = signer.jwk();
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
        let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        key.verify(signed.as_bytes(), &signature)
            .expect("the JWK verifies the JWT");
        assert!(key.verify(b"other", &signature).is_err());
        assert!(jwk["kid"].as_str().unwrap().starts_with("plaid-vcr-"));
    }
}
