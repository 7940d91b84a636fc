//! The stand-in for a port a function was built without.

use async_trait::async_trait;

use crate::domain::access::{Claims, Rule};
use crate::domain::scope::InstallationGrants;
use crate::error::Error;
use crate::ports::{
    AccessStore, AppRecord, AppStore, InstallationRecord, InstallationRow, InstallationStore, Lease, Leases, Mac,
    Metric, MetricSink, OidcVerifier, RowBound, Signer, TablePosition,
};

/// A port this function was built without: every call fails with its message (a lease is
/// granted instead: see [`Leases`]' impl).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unconfigured(pub &'static str);

#[async_trait]
impl Signer for Unconfigured {
    async fn sign(&self, _: &str, _: &[u8]) -> Result<Vec<u8>, Error> {
        Err(Error::Misconfigured(self.0))
    }
}

#[async_trait]
impl Mac for Unconfigured {
    async fn generate(&self, _: &[u8]) -> Result<Vec<u8>, Error> {
        Err(Error::Misconfigured(self.0))
    }
    async fn verify(&self, _: &[u8], _: &[u8]) -> Result<bool, Error> {
        Err(Error::Misconfigured(self.0))
    }
}

#[async_trait]
impl AppStore for Unconfigured {
    async fn get_app(&self, _: i64) -> Result<Option<AppRecord>, Error> {
        Err(Error::Misconfigured(self.0))
    }
    async fn list_apps(&self) -> Result<Vec<AppRecord>, Error> {
        Err(Error::Misconfigured(self.0))
    }
}

#[async_trait]
impl InstallationStore for Unconfigured {
    async fn get(&self, _: i64, _: &str) -> Result<Option<InstallationRow>, Error> {
        Err(Error::Misconfigured(self.0))
    }
    async fn by_node_id(&self, _: &str) -> Result<Vec<InstallationRecord>, Error> {
        Err(Error::Misconfigured(self.0))
    }
    async fn list_app(&self, _: i64, _: Option<RowBound>) -> Result<Option<Vec<InstallationRow>>, Error> {
        Err(Error::Misconfigured(self.0))
    }
    async fn page(
        &self,
        _: usize,
        _: Option<TablePosition>,
        _: &(dyn for<'r> Fn(&'r InstallationRecord) -> bool + Send + Sync),
    ) -> Result<(Vec<InstallationRecord>, Option<TablePosition>), Error> {
        Err(Error::Misconfigured(self.0))
    }
    async fn all(&self) -> Result<Vec<InstallationRecord>, Error> {
        Err(Error::Misconfigured(self.0))
    }
    async fn all_keys(&self) -> Result<Vec<TablePosition>, Error> {
        Err(Error::Misconfigured(self.0))
    }
    async fn write(&self, _: Vec<InstallationRow>, _: Vec<TablePosition>, _: &str) -> Result<(), Error> {
        Err(Error::Misconfigured(self.0))
    }
    async fn write_grants(&self, _: &TablePosition, _: i64, _: &InstallationGrants, _: &str) -> Result<bool, Error> {
        Err(Error::Misconfigured(self.0))
    }
}

/// Without a lease table nothing keeps runs apart: every lease is granted, and giving one back
/// does nothing (a function's tests and local runs; every deployed function has the table).
#[async_trait]
impl Leases for Unconfigured {
    async fn acquire(&self, _: &str, _: &str, _: i64, _: i64) -> Result<Lease, Error> {
        Ok(Lease::Acquired)
    }
    async fn release(&self, _: &str, _: &str) -> Result<(), Error> {
        Ok(())
    }
}

#[async_trait]
impl AccessStore for Unconfigured {
    async fn list_rules(&self) -> Result<Vec<Rule>, Error> {
        Err(Error::Misconfigured(self.0))
    }
}

#[async_trait]
impl OidcVerifier for Unconfigured {
    async fn verify(&self, _: &str) -> Result<Claims, Error> {
        Err(Error::Misconfigured(self.0))
    }
}

#[async_trait]
impl MetricSink for Unconfigured {
    async fn put(&self, _: Vec<Metric>) -> Result<(), Error> {
        Err(Error::Misconfigured(self.0))
    }
}
