//! The crypto of a function's TLS handshakes and token checks, timed in the release profile: what
//! aws-lc's optimisation level (`[profile.release.package.aws-lc-sys]`) costs in speed.
//! docs/benchmarks.md has the figures and the command:
//!
//! ```sh
//! cargo run --release -p appcreds-core --example tls_crypto
//! ```
//!
//! Per operation, the median of 15 rounds, each the mean of a batch (µs). A client handshake
//! (TLS 1.3 with X25519MLKEM768, rustls's default) costs one of each key-exchange line and two or
//! three signature verifications (the server's chain: RSA or ECDSA), then AES-GCM and SHA-2.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::kem::{DecapsulationKey, ML_KEM_768};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};

/// The median over 15 rounds of the mean time (µs) of `batch` calls of `op`.
fn time(name: &str, batch: u32, mut op: impl FnMut()) {
    let mut rounds: Vec<f64> = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                op();
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(batch)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    println!("| {name} | {:.1} |", rounds[rounds.len() / 2]);
}

fn main() {
    let rng = SystemRandom::new();
    println!("| operation | µs |");
    println!("|---|---|");
    let peer = EphemeralPrivateKey::generate(&X25519, &rng).unwrap().compute_public_key().unwrap();
    time("X25519: key pair and agreement", 200, || {
        let key = EphemeralPrivateKey::generate(&X25519, &rng).unwrap();
        let _ = key.compute_public_key().unwrap();
        agreement::agree_ephemeral(key, UnparsedPublicKey::new(&X25519, peer.as_ref()), (), |_| Ok(())).unwrap();
    });
    time("ML-KEM-768: key pair and decapsulation", 200, || {
        let key = DecapsulationKey::generate(&ML_KEM_768).unwrap();
        let (ciphertext, _) = key.encapsulation_key().unwrap().encapsulate().unwrap();
        let _ = key.decapsulate(ciphertext.as_ref().into()).unwrap();
    });
    let message = b"the handshake transcript hash, or a JWT's signing input";
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let mut rsa_signature = vec![0; rsa.public_modulus_len()];
    rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut rsa_signature).unwrap();
    let rsa_public = rsa.public_key().as_ref().to_vec();
    time("RSA-2048 PKCS#1 verify (a certificate; a GitHub OIDC token)", 500, || {
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &rsa_public)
            .verify(message, &rsa_signature)
            .unwrap();
    });
    for (name, signing, verifying) in [
        ("ECDSA P-256 verify", &signature::ECDSA_P256_SHA256_ASN1_SIGNING, &signature::ECDSA_P256_SHA256_ASN1),
        ("ECDSA P-384 verify", &signature::ECDSA_P384_SHA384_ASN1_SIGNING, &signature::ECDSA_P384_SHA384_ASN1),
    ] {
        let key = EcdsaKeyPair::generate(signing).unwrap();
        let sig = key.sign(&rng, message).unwrap();
        let public = key.public_key().as_ref().to_vec();
        time(name, 500, || {
            signature::UnparsedPublicKey::new(verifying, &public).verify(message, sig.as_ref()).unwrap();
        });
    }
    let data = vec![7u8; 64 << 10];
    time("SHA-256 of 64 KiB", 200, || {
        let _ = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data);
    });
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[9; 32]).unwrap());
    time("AES-256-GCM seal of 64 KiB", 200, || {
        let mut buffer = data.clone();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key([0; 12]), Aad::empty(), &mut buffer).unwrap();
    });
}
