//! The scheduled work: the installation sync ([`sync`], also run on demand by refresh-cache) and
//! the rate-limit scanner ([`rate_limit`]).

pub mod rate_limit;
pub mod sync;
