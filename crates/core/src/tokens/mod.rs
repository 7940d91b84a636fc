//! The credentials appcreds hands out, each with its in-process cache: App JWTs signed by KMS
//! ([`app_jwt`]) and installation access tokens minted at GitHub ([`installation`]).

pub mod app_jwt;
pub mod installation;
