//! ECDSA P-256 with SHA-256 as Fabric uses it: DER signatures, and low-S only.
//!
//! Fabric's BCCSP refuses a signature whose S lies in the upper half of the curve order (the
//! other of the two valid encodings of the same signature), so we sign low-S and refuse high-S.
//! The curve arithmetic is ring's (assembly P-256, several times faster than pure Rust: this is
//! the endorser's hot path); p256 parses keys and normalises S.
use p256::ecdsa::signature::MultipartSigner;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::scalar::IsHigh;
use p256::pkcs8::EncodePrivateKey;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, UnparsedPublicKey,
};

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature is not a DER-encoded ECDSA P-256 signature")]
    Malformed,
    #[error("the signature's S value is not low-S (Fabric refuses malleable high-S signatures)")]
    HighS,
    #[error("the signature does not verify against the signer's public key")]
    Invalid,
}

/// A P-256 private key ready to sign.
pub struct EcdsaSigner {
    key: SigningKey,
    /// ring's form of the same key; `None` only if ring refused it (then p256 signs).
    ring_key: Option<EcdsaKeyPair>,
    rng: SystemRandom,
}

impl Clone for EcdsaSigner {
    fn clone(&self) -> Self {
        Self::new(self.key.clone())
    }
}

impl EcdsaSigner {
    pub fn new(key: SigningKey) -> Self {
        let rng = SystemRandom::new();
        let ring_key = key.to_pkcs8_der().ok().and_then(|der| {
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der.as_bytes(), &rng).ok()
        });
        Self { key, ring_key, rng }
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs the concatenation of `parts` (SHA-256) and returns a low-S DER signature.
    pub fn sign_parts(&self, parts: &[&[u8]]) -> Vec<u8> {
        if let Some(ring_key) = &self.ring_key {
            let message = joined(parts);
            if let Ok(signature) = ring_key.sign(&self.rng, &message)
                && let Ok(parsed) = Signature::from_der(signature.as_ref())
            {
                return parsed.normalize_s().to_der().as_bytes().to_vec();
            }
        }
        // Only when ring is unavailable for this key or its random source failed.
        let signature: Signature = self.key.multipart_sign(parts);
        signature.normalize_s().to_der().as_bytes().to_vec()
    }

    /// Signs `message`; see [`EcdsaSigner::sign_parts`].
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.sign_parts(&[message])
    }
}

/// The message `parts` stand for; borrowed when there is one part (a proposal's signature),
/// which saves copying the proposal on the endorser's hot path.
fn joined<'a>(parts: &[&'a [u8]]) -> std::borrow::Cow<'a, [u8]> {
    match parts {
        [one] => std::borrow::Cow::Borrowed(one),
        _ => std::borrow::Cow::Owned(parts.concat()),
    }
}

/// Signs `message` with `key` (low-S DER). For repeated signing keep an [`EcdsaSigner`].
pub fn sign(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    EcdsaSigner::new(key.clone()).sign(message)
}

/// Uncompressed SEC1 bytes of a public key, the form [`verify_parts`] takes.
pub fn public_key_bytes(key: &VerifyingKey) -> Vec<u8> {
    key.to_sec1_point(false).as_bytes().to_vec()
}

/// Verifies a DER signature over the concatenation of `parts` by the key with uncompressed SEC1
/// bytes `public_key`, refusing high-S like Fabric.
pub fn verify_parts(
    public_key: &[u8],
    parts: &[&[u8]],
    der_signature: &[u8],
) -> Result<(), SignatureError> {
    let signature = Signature::from_der(der_signature).map_err(|_| SignatureError::Malformed)?;
    if bool::from(signature.s().is_high()) {
        return Err(SignatureError::HighS);
    }
    let message = joined(parts);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key)
        .verify(&message, der_signature)
        .map_err(|_| SignatureError::Invalid)
}

/// Verifies a DER signature over `message`; see [`verify_parts`].
pub fn verify(
    key: &VerifyingKey,
    message: &[u8],
    der_signature: &[u8],
) -> Result<(), SignatureError> {
    verify_parts(&public_key_bytes(key), &[message], der_signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    /// The other valid encoding of the same signature: (r, n - s).
    fn flip_s(der: &[u8]) -> Vec<u8> {
        let signature = Signature::from_der(der).unwrap();
        let (r, s) = signature.split_scalars();
        let flipped = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        flipped.to_der().as_bytes().to_vec()
    }

    #[test]
    fn signatures_are_low_s_der_and_verify_here_and_with_p256() {
        let signer = EcdsaSigner::new(key(7));
        for i in 0..64u8 {
            let message = [i; 40];
            let der = signer.sign(&message);
            let parsed = Signature::from_der(&der).unwrap();
            assert!(
                !bool::from(parsed.s().is_high()),
                "message {i} signed high-S"
            );
            assert_eq!(verify(signer.verifying_key(), &message, &der), Ok(()));
            // An independent implementation agrees.
            signer.verifying_key().verify(&message, &parsed).unwrap();
        }
    }

    #[test]
    fn multipart_signing_equals_signing_the_concatenation() {
        let signer = EcdsaSigner::new(key(9));
        let der = signer.sign_parts(&[b"payload", b"endorser"]);
        assert_eq!(
            verify(signer.verifying_key(), b"payloadendorser", &der),
            Ok(())
        );
    }

    #[test]
    fn high_s_twin_of_a_valid_signature_is_refused() {
        let signer = key(3);
        let der = sign(&signer, b"message");
        let twin = flip_s(&der);
        assert_ne!(twin, der);
        assert_eq!(
            verify(signer.verifying_key(), b"message", &twin),
            Err(SignatureError::HighS)
        );
    }

    #[test]
    fn wrong_message_wrong_key_and_garbage_are_refused() {
        let signer = key(5);
        let der = sign(&signer, b"message");
        assert_eq!(
            verify(signer.verifying_key(), b"messagE", &der),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify(key(6).verifying_key(), b"message", &der),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify(signer.verifying_key(), b"message", b"\x30\x02\x01"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(signer.verifying_key(), b"message", &[]),
            Err(SignatureError::Malformed)
        );
    }
}
