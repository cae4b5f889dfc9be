//! ECDSA P-256 with SHA-256 as Fabric uses it: DER signatures, and low-S only.
//!
//! Fabric's BCCSP refuses a signature whose S lies in the upper half of the curve order (the
//! other of the two valid encodings of the same signature), so we sign low-S and refuse high-S.
use p256::ecdsa::signature::{MultipartSigner, MultipartVerifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::scalar::IsHigh;

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

/// Signs the concatenation of `parts` (SHA-256, RFC 6979) and returns a low-S DER signature.
pub fn sign_parts(key: &SigningKey, parts: &[&[u8]]) -> Vec<u8> {
    let signature: Signature = key.multipart_sign(parts);
    signature.normalize_s().to_der().as_bytes().to_vec()
}

/// Signs `message`; see [`sign_parts`].
pub fn sign(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    sign_parts(key, &[message])
}

/// Verifies a DER signature over the concatenation of `parts`, refusing high-S like Fabric.
pub fn verify_parts(
    key: &VerifyingKey,
    parts: &[&[u8]],
    der_signature: &[u8],
) -> Result<(), SignatureError> {
    let signature = Signature::from_der(der_signature).map_err(|_| SignatureError::Malformed)?;
    if bool::from(signature.s().is_high()) {
        return Err(SignatureError::HighS);
    }
    key.multipart_verify(parts, &signature)
        .map_err(|_| SignatureError::Invalid)
}

/// Verifies a DER signature over `message`; see [`verify_parts`].
pub fn verify(
    key: &VerifyingKey,
    message: &[u8],
    der_signature: &[u8],
) -> Result<(), SignatureError> {
    verify_parts(key, &[message], der_signature)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn signatures_are_low_s_der_and_verify() {
        let signer = key(7);
        for i in 0..64u8 {
            let message = [i; 40];
            let der = sign(&signer, &message);
            let parsed = Signature::from_der(&der).unwrap();
            assert!(
                !bool::from(parsed.s().is_high()),
                "message {i} signed high-S"
            );
            assert_eq!(verify(signer.verifying_key(), &message, &der), Ok(()));
        }
    }

    #[test]
    fn multipart_signing_equals_signing_the_concatenation() {
        let signer = key(9);
        let der = sign_parts(&signer, &[b"payload", b"endorser"]);
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
