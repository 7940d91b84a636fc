//! The domain: what appcreds knows without doing I/O. The access rules and how they judge a
//! request ([`access`]), GitHub App JWT claims ([`jwt`]), installation-token scopes ([`scope`]),
//! credentials that never print ([`secret`]), time ([`clock`]) and access-key rotation targets,
//! with GitHub's rules for secret names ([`rotation`]).
//!
//! It imports nothing of the crate but [`crate::error`]: the layer test (`layers.rs`) holds it
//! to that.

pub mod access;
pub mod clock;
pub mod jwt;
pub mod rotation;
pub mod scope;
pub mod secret;
