//! The domain: what appcreds knows without doing I/O. GitHub App JWT claims ([`jwt`]),
//! installation-token scopes ([`scope`]), credentials that never print ([`secret`]), time
//! ([`clock`]), access-key rotation targets ([`rotation`]) and the opaque, caller-bound page tokens of the installation listing ([`page_token`]).

pub mod access;
pub mod clock;
pub mod jwt;
pub mod page_token;
pub mod rotation;
pub mod scope;
pub mod secret;
