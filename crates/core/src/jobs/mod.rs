//! The scheduled work: the installation sync ([`sync`], also run on demand by refresh-cache), the
//! rate-limit scanner ([`rate_limit`]) and the access-key rotator ([`key_rotation`]).

pub mod key_rotation;
pub mod rate_limit;
pub mod sync;
