//! JWT client tokens: verified with an HS256 secret, or RS256/ES256 public keys (a PEM file or a
//! JWKS file), checking `exp`, `nbf`, `iss` and `aud`. Each key is bound to its algorithm, so a
//! token can never choose how it is checked: `alg: none` and algorithm confusion (an HS256 token
//! "signed" with an RSA public key) are refused. Also mints tokens for `gemini-proxy token`.

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the verification keys come from.
#[derive(Clone, Default)]
pub struct JwtKeySources {
    pub hs256_secret: Option<Vec<u8>>,
    /// PEM text of an RSA or EC public key.
    pub public_key_pem: Option<String>,
    /// JSON text of a JWK set.
    pub jwks: Option<String>,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtIdentity {
    /// The client name, from the configured claim.
    pub client: String,
    /// The policy object carried by the token, if the configuration names a policy claim.
    pub policy: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("no verification key for this token")]
    NoKey,
    #[error("token signature is invalid")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    Issuer,
    #[error("token audience is not accepted")]
    Audience,
    #[error("token has no {0:?} claim naming the client")]
    NoClient(String),
    #[error("token is invalid: {0}")]
    Other(String),
}

/// Why [`JwtVerifier::new`] refuses its keys, by the key source at fault, so that the config
/// can point at the field that set it. Messages name sources, never key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtKeyError {
    #[error("the HS256 secret must be at least {} bytes", MIN_HS256_SECRET)]
    ShortSecret,
    #[error("the public key file is not an RSA or EC public key in PEM")]
    PublicKey,
    /// The JWKS text is not a JWK set (the parser's reason, values left out).
    #[error("the JWKS file is not a JWK set: {0}")]
    Jwks(String),
    #[error("a JWKS key cannot be used: {0}")]
    JwksKey(String),
    /// Every key was left out by the accepted algorithms, or there was none to begin with.
    #[error("no usable verification key: set secret (HS256), public_key_file or jwks_file (RS256/ES256) matching the accepted algorithms")]
    NoUsableKey,
}

struct Key {
    alg: Algorithm,
    kid: Option<String>,
    key: DecodingKey,
}

/// Verifies JWT bearer tokens against configured keys and claims.
pub struct JwtVerifier {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Vec<String>,
    client_claim: String,
    policy_claim: Option<String>,
    leeway: Duration,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.keys.iter().map(|k| k.alg).collect::<Vec<_>>())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("client_claim", &self.client_claim)
            .finish_non_exhaustive()
    }
}

fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "other",
    }
}

/// Parses an accepted algorithm name.
pub fn parse_algorithm(s: &str) -> Option<Algorithm> {
    match s {
        "HS256" => Some(Algorithm::HS256),
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        _ => None,
    }
}

impl JwtVerifier {
    /// Builds a verifier. `algorithms` restricts what is accepted (empty: whatever the keys
    /// support). The error names the key source that is wrong (the first one found, checked
    /// in the order secret, public key, JWKS), or that no key is left.
    pub fn new(
        sources: &JwtKeySources,
        algorithms: &[Algorithm],
        issuer: Option<String>,
        audience: Vec<String>,
        client_claim: String,
        policy_claim: Option<String>,
        leeway: Duration,
    ) -> Result<JwtVerifier, JwtKeyError> {
        let allowed = |a: Algorithm| algorithms.is_empty() || algorithms.contains(&a);
        let mut keys = Vec::new();
        if let Some(secret) = &sources.hs256_secret {
            if secret.len() < MIN_HS256_SECRET {
                return Err(JwtKeyError::ShortSecret);
            }
            if allowed(Algorithm::HS256) {
                keys.push(Key { alg: Algorithm::HS256, kid: None, key: DecodingKey::from_secret(secret) });
            }
        }
        if let Some(pem) = &sources.public_key_pem {
            let (alg, key) = if let Ok(k) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
                (Algorithm::RS256, k)
            } else if let Ok(k) = DecodingKey::from_ec_pem(pem.as_bytes()) {
                (Algorithm::ES256, k)
            } else {
                return Err(JwtKeyError::PublicKey);
            };
            if allowed(alg) {
                keys.push(Key { alg, kid: None, key });
            }
        }
        if let Some(jwks) = &sources.jwks {
            // serde quotes the values it could not use, and a JWK set may hold a symmetric key.
            let set: JwkSet = serde_json::from_str(jwks).map_err(|e| JwtKeyError::Jwks(crate::config::redact::problem_message(&e.to_string())))?;
            for jwk in &set.keys {
                let alg = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    // Symmetric or unsupported keys in a JWKS are ignored: a shared secret is
                    // configured as `secret`, never published.
                    _ => continue,
                };
                let key = DecodingKey::from_jwk(jwk).map_err(|e| JwtKeyError::JwksKey(e.to_string()))?;
                if allowed(alg) {
                    keys.push(Key { alg, kid: jwk.common.key_id.clone(), key });
                }
            }
        }
        if keys.is_empty() {
            return Err(JwtKeyError::NoUsableKey);
        }
        Ok(JwtVerifier { keys, issuer, audience, client_claim, policy_claim, leeway })
    }

    /// Whether `token` looks like a JWT (three base64url parts, JSON header), as opposed to a
    /// static proxy token.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.starts_with("eyJ") && token.matches('.').count() == 2
    }

    /// Verifies a token and returns who it names.
    pub fn verify(&self, token: &str) -> Result<JwtIdentity, JwtError> {
        let header = decode_header(token).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithmName => JwtError::Algorithm("unknown".into()),
            _ => JwtError::Malformed(e.to_string()),
        })?;
        // The key decides the algorithm; the token's header only selects among our keys.
        let candidates: Vec<&Key> =
            self.keys.iter().filter(|k| k.alg == header.alg && (header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)).collect();
        if candidates.is_empty() {
            return Err(if self.keys.iter().any(|k| k.alg == header.alg) { JwtError::NoKey } else { JwtError::Algorithm(format!("{:?}", header.alg)) });
        }
        let mut last = JwtError::Signature;
        for k in candidates {
            let mut v = Validation::new(k.alg);
            v.algorithms = vec![k.alg];
            v.leeway = self.leeway.as_secs();
            v.validate_nbf = true;
            v.set_required_spec_claims(&["exp"]);
            match &self.issuer {
                Some(iss) => v.set_issuer(&[iss]),
                None => v.iss = None,
            }
            if self.audience.is_empty() {
                v.validate_aud = false;
            } else {
                v.set_audience(&self.audience);
            }
            match decode::<Map<String, Value>>(token, &k.key, &v) {
                Ok(data) => return self.identity(data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = match e.kind() {
                        K::InvalidSignature => JwtError::Signature,
                        K::ExpiredSignature => return Err(JwtError::Expired),
                        K::ImmatureSignature => return Err(JwtError::NotYetValid),
                        K::InvalidIssuer => return Err(JwtError::Issuer),
                        K::InvalidAudience => return Err(JwtError::Audience),
                        K::MissingRequiredClaim(c) => return Err(JwtError::Other(format!("missing claim {c}"))),
                        K::InvalidAlgorithm => JwtError::Algorithm(alg_name(k.alg).into()),
                        _ => JwtError::Other(e.to_string()),
                    };
                }
            }
        }
        Err(last)
    }

    fn identity(&self, claims: Map<String, Value>) -> Result<JwtIdentity, JwtError> {
        let client =
            claims.get(&self.client_claim).and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| JwtError::NoClient(self.client_claim.clone()))?;
        let policy = self.policy_claim.as_ref().and_then(|c| claims.get(c)).cloned();
        Ok(JwtIdentity { client: client.to_owned(), policy })
    }
}

/// Shortest HS256 secret accepted: 256 bits, the size of the HMAC's output (RFC 7518 3.2).
pub const MIN_HS256_SECRET: usize = 32;

/// What `gemini-proxy token` puts in a token.
pub struct MintRequest {
    pub alg: Algorithm,
    /// HS256 secret, or the PEM of an RSA/EC private key.
    pub key: Vec<u8>,
    pub kid: Option<String>,
    pub subject: String,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Seconds from now until `exp` (negative: already expired).
    pub expires_in: i64,
    /// Seconds before now when the token becomes valid (negative: in the future).
    pub not_before_offset: i64,
    pub extra: Map<String, Value>,
}

/// Creates a signed token.
pub fn mint(req: &MintRequest) -> Result<String, String> {
    // The verifier refuses shorter secrets; a token made with one could never be accepted.
    if req.alg == Algorithm::HS256 && req.key.len() < MIN_HS256_SECRET {
        return Err(format!("the HS256 secret must be at least {MIN_HS256_SECRET} bytes (it is {})", req.key.len()));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs() as i64;
    let mut claims = req.extra.clone();
    claims.insert("sub".into(), Value::from(req.subject.clone()));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("nbf".into(), Value::from(now - req.not_before_offset));
    claims.insert("exp".into(), Value::from(now + req.expires_in));
    if let Some(i) = &req.issuer {
        claims.insert("iss".into(), Value::from(i.clone()));
    }
    if let Some(a) = &req.audience {
        claims.insert("aud".into(), Value::from(a.clone()));
    }
    let key = match req.alg {
        Algorithm::HS256 => EncodingKey::from_secret(&req.key),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&req.key).map_err(|e| format!("not an RSA private key in PEM: {e}"))?,
        Algorithm::ES256 => EncodingKey::from_ec_pem(&req.key).map_err(|e| format!("not an EC (P-256) private key in PEM (PKCS#8): {e}"))?,
        other => return Err(format!("{other:?} is not supported")),
    };
    let mut header = Header::new(req.alg);
    header.kid = req.kid.clone();
    encode(&header, &claims, &key).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verifier() -> JwtVerifier {
        let src = JwtKeySources { hs256_secret: Some(SECRET.to_vec()), ..Default::default() };
        JwtVerifier::new(&src, &[], Some("https://auth.test".into()), vec!["gemini-proxy".into()], "sub".into(), Some("gp".into()), Duration::from_secs(0))
            .unwrap()
    }

    fn token(f: impl FnOnce(&mut MintRequest)) -> String {
        let mut r = MintRequest {
            alg: Algorithm::HS256,
            key: SECRET.to_vec(),
            kid: None,
            subject: "alice".into(),
            issuer: Some("https://auth.test".into()),
            audience: Some("gemini-proxy".into()),
            expires_in: 600,
            not_before_offset: 0,
            extra: Map::new(),
        };
        f(&mut r);
        mint(&r).unwrap()
    }

    #[test]
    fn a_secret_the_verifier_would_refuse_mints_nothing() {
        let short = MintRequest {
            alg: Algorithm::HS256,
            key: b"abc".to_vec(),
            kid: None,
            subject: "alice".into(),
            issuer: None,
            audience: None,
            expires_in: 600,
            not_before_offset: 0,
            extra: Map::new(),
        };
        assert!(mint(&short).unwrap_err().contains("at least 32 bytes"));
    }

    #[test]
    fn a_good_token_names_its_client_and_policy() {
        let t = token(|r| {
            r.extra.insert("gp".into(), serde_json::json!({"rpm": 5}));
        });
        assert!(JwtVerifier::looks_like_jwt(&t));
        let id = verifier().verify(&t).unwrap();
        assert_eq!(id.client, "alice");
        assert_eq!(id.policy, Some(serde_json::json!({"rpm": 5})));
    }

    #[test]
    fn bad_tokens_are_refused_for_the_right_reason() {
        let v = verifier();
        assert_eq!(v.verify(&token(|r| r.expires_in = -60)).unwrap_err(), JwtError::Expired);
        assert_eq!(v.verify(&token(|r| r.not_before_offset = -3600)).unwrap_err(), JwtError::NotYetValid);
        assert_eq!(v.verify(&token(|r| r.audience = Some("someone-else".into()))).unwrap_err(), JwtError::Audience);
        assert_eq!(v.verify(&token(|r| r.issuer = Some("https://evil.test".into()))).unwrap_err(), JwtError::Issuer);
        assert_eq!(v.verify(&token(|r| r.key = b"another-secret-another-secret-xx".to_vec())).unwrap_err(), JwtError::Signature);
        // alg none: header {"alg":"none"} and an empty signature.
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let none =
            format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(r#"{"sub":"alice","exp":9999999999,"iss":"https://auth.test","aud":"gemini-proxy"}"#));
        assert!(v.verify(&none).is_err());
        assert!(v.verify("eyJ.not.ajwt").is_err());
    }
}
