//! installation-token: `POST /tokens/installation` → an installation access token for the
//! installation the request names, scoped down as it asks; **(ext)** `POST /tokens/installations`
//! → one for each of several targets, all or none.

use appcreds_wire::{
    InstallationTokenRequest, InstallationTokenResponse, InstallationTokensResponse, ScopeDown, Token, paths,
};
use async_trait::async_trait;
use serde_json::Value;

use crate::access_control::{AccessControl, Judge};
use crate::deadline;
use crate::domain::access::InstallationRef;
use crate::domain::scope;
use crate::error::Error;
use crate::http::{Call, Caller, Operation, reply, request};
use crate::ops::audit;
use crate::ports::InstallationRecord;
use crate::services::Services;
use crate::tokens::installation::{InstallationTokens, Issued, Prepared, REVOKE_BUDGET};

/// The installation-token operation.
pub struct InstallationToken {
    access: AccessControl,
    tokens: InstallationTokens,
}

impl InstallationToken {
    /// The operation on `services`.
    pub fn new(services: &Services) -> Self {
        Self { access: AccessControl::new(services), tokens: InstallationTokens::new(services) }
    }
}

#[async_trait]
impl Operation for InstallationToken {
    const ROUTES: &'static [&'static str] = &[paths::INSTALLATION_TOKEN, paths::INSTALLATION_TOKENS];

    async fn settle(&self, by: tokio::time::Instant) {
        self.tokens.settle(by).await;
    }

    async fn call(&self, call: Call) -> Result<Value, Error> {
        if call.path == paths::INSTALLATION_TOKENS {
            return self.batch(&call).await;
        }
        let req = request::installation_token(&call.body)?;
        let judge = self.access.judge(&call).await?;
        // Naming one repository asks for a token of that repository only.
        let requested = scope::requested_scope(&req.target, req.scope_down.as_ref());
        let requested = requested.as_ref();
        // A caller no rule could serve (installation, repositories, permissions) learns nothing
        // about what it names, and costs GitHub nothing.
        judge.may_mint(req.app_id, &req.target, requested)?;
        let lookup = judge.lookup(req.app_id, &req.target);
        let grant = |record: &InstallationRecord| {
            let installation = InstallationRef::from(record);
            judge.installation_token(req.app_id, &req.target, installation, requested)
        };
        // The slug (best effort, bounded) is read while the token is minted; a failed mint does
        // not wait for it.
        let slug = async { Ok::<_, Error>(self.tokens.app_slug(req.app_id).await) };
        let (issued, slug) =
            match futures_util::future::try_join(self.tokens.issue(req.app_id, &req.target, lookup, grant), slug).await
            {
                Err(e) => return Err(single_error(&judge, &call.caller, &req, e)),
                Ok(done) => done,
            };
        audit_issued(&call.caller, req.app_id, &issued);
        reply(answer(req, issued, slug))
    }
}

impl InstallationToken {
    /// **(ext)** `POST /tokens/installations`: every target judged as its own request would be,
    /// and all of them resolved and pre-flight checked before the first mint. The first target
    /// refused answers for the request (its index with the error its own request would get), and
    /// nothing is minted. Rules that need no lookup are judged for every target before any lookup,
    /// and targets are prepared one after another, so a refusal costs GitHub no more than its own
    /// request's refusal, plus the lookups of the targets before it (kept, as any lookup is).
    async fn batch(&self, call: &Call) -> Result<Value, Error> {
        let req = request::installation_tokens(&call.body)?;
        let judge = self.access.judge(call).await?;
        let requested: Vec<Option<ScopeDown>> =
            req.targets.iter().map(|t| scope::requested_scope(&t.target, t.scope_down.as_ref())).collect();
        for (index, (t, requested)) in req.targets.iter().zip(&requested).enumerate() {
            judge.may_mint(t.app_id, &t.target, requested.as_ref()).map_err(|e| in_target(index, e))?;
        }
        let judge = &judge;
        let grant = |index: usize| {
            let (t, requested) = (&req.targets[index], requested[index].as_ref());
            move |record: &InstallationRecord| {
                judge.installation_token(t.app_id, &t.target, InstallationRef::from(record), requested)
            }
        };
        let mut prepared = Vec::with_capacity(req.targets.len());
        for (index, t) in req.targets.iter().enumerate() {
            let lookup = judge.lookup(t.app_id, &t.target);
            match self.tokens.prepare(t.app_id, &t.target, lookup, &grant(index)).await {
                Ok(ready) => prepared.push(ready),
                Err(e) => return Err(in_target(index, single_error(judge, &call.caller, t, e))),
            }
        }
        let mut apps: Vec<i64> = req.targets.iter().map(|t| t.app_id).collect();
        apps.sort_unstable();
        apps.dedup();
        // The slugs (best effort) are read while the tokens are minted, within the mints' time:
        // the revokes' budget is never theirs. A failed mint does not wait for them.
        let mint_by = deadline::current().map(|d| d.checked_sub(REVOKE_BUDGET).unwrap_or(d));
        let slugs = futures_util::future::join_all(apps.iter().map(|&app_id| self.tokens.app_slug(app_id)));
        let slugs = async {
            match mint_by {
                None => Ok(slugs.await),
                Some(by) => Ok(deadline::within(by, slugs).await),
            }
        };
        let minted = async {
            let minted = self.mint_all(&call.caller, prepared, &grant, mint_by).await;
            if minted.iter().all(|m| matches!(m, Some(Ok(_)))) { Ok(minted) } else { Err(minted) }
        };
        let minted = match futures_util::future::try_join(minted, slugs).await {
            Ok((minted, slugs)) => {
                let slug = |app_id| apps.iter().position(|&a| a == app_id).and_then(|i| slugs[i].clone());
                let mut tokens = Vec::with_capacity(minted.len());
                for (t, issued) in req.targets.into_iter().zip(minted.into_iter().flatten().flatten()) {
                    audit_issued(&call.caller, t.app_id, &issued);
                    let slug = slug(t.app_id);
                    tokens.push(answer(t, issued, slug));
                }
                return reply(InstallationTokensResponse { tokens });
            }
            Err(minted) => minted,
        };
        // All or nothing: a failed mint has the tokens minted beside it revoked, and the first
        // target (in the request's order) that failed answers for the request.
        let (index, error) = minted
            .iter()
            .enumerate()
            .find_map(|(i, m)| match m {
                Some(Err(e)) => Some((i, e.clone())),
                _ => None,
            })
            .unwrap_or((0, Error::OutOfTime));
        for (m, t) in minted.iter().zip(&req.targets) {
            // Every token minted too wide has its line, whichever error answers.
            if let Some(Err(wide @ Error::TokenTooWide { .. })) = m {
                audit::token_too_wide(&call.caller, t.app_id, wide);
            }
        }
        let revoke = minted.iter().zip(&req.targets).filter_map(|(m, t)| match m {
            Some(Ok(issued)) => Some((t.app_id, issued)),
            _ => None,
        });
        futures_util::future::join_all(revoke.map(|(app_id, issued)| async move {
            let id = issued.record.installation_id;
            let revoked = self.tokens.revoke(id, &issued.token.token, "a token of a batch that failed").await;
            audit::batch_token_revoked(&call.caller, app_id, id, &issued.token.token, revoked);
        }))
        .await;
        Err(in_target(index, not_found_as_refused(judge, &req.targets[index], error)))
    }

    /// Mints the prepared targets, at most [`MINT_CONCURRENCY`] at once, each by `mint_by` (the
    /// invocation's deadline less [`REVOKE_BUDGET`], kept back to revoke the others when one
    /// fails); in the targets' order. Once one has failed no more are begun (`None`), but those
    /// under way are waited for: every token GitHub answers with is seen, and can be revoked. A
    /// mint that ran out of time or had no answer may have minted all the same: it has its audit
    /// line.
    async fn mint_all<G, F>(
        &self,
        caller: &Caller,
        prepared: Vec<Prepared>,
        grant: &F,
        mint_by: Option<tokio::time::Instant>,
    ) -> Vec<Option<Result<Issued, Error>>>
    where
        F: Fn(usize) -> G,
        G: Fn(&InstallationRecord) -> Result<(Option<String>, ScopeDown), Error> + Send + Sync,
    {
        let mint = |index: usize, ready: Prepared| async move {
            let (app_id, installation_id) = (ready.app_id(), ready.installation_id());
            let grant = grant(index);
            let mint = self.tokens.mint_prepared(ready, &grant);
            let minted = match mint_by {
                None => mint.await,
                Some(by) => {
                    tokio::time::timeout_at(by, deadline::within(by, mint)).await.unwrap_or(Err(Error::OutOfTime))
                }
            };
            if let Err(e @ (Error::OutOfTime | Error::GitHubUnavailable(_))) = &minted {
                audit::batch_mint_unknown(caller, app_id, installation_id, e);
            }
            (index, minted)
        };
        let mut minted: Vec<Option<Result<Issued, Error>>> = prepared.iter().map(|_| None).collect();
        let mut waiting = prepared.into_iter().enumerate();
        let mut running = futures_util::stream::FuturesUnordered::new();
        let mut failed = false;
        loop {
            while !failed && running.len() < MINT_CONCURRENCY {
                let Some((index, ready)) = waiting.next() else { break };
                running.push(mint(index, ready));
            }
            let Some((index, result)) = futures_util::StreamExt::next(&mut running).await else { break };
            failed |= result.is_err();
            minted[index] = Some(result);
        }
        minted
    }
}

/// **(ext)** How many of one `POST /tokens/installations`' mints are at GitHub at once: GitHub
/// asks for requests that create something to be made one at a time, and a burst of them may
/// trip its secondary rate limit.
pub(crate) const MINT_CONCURRENCY: usize = 2;

/// The error a request for `req` answers with for `e` ([`not_found_as_refused`]); a token too wide
/// has its audit line.
fn single_error(judge: &Judge<'_>, caller: &Caller, req: &InstallationTokenRequest, e: Error) -> Error {
    if let wide @ Error::TokenTooWide { .. } = &e {
        audit::token_too_wide(caller, req.app_id, wide);
    }
    not_found_as_refused(judge, req, e)
}

/// `e`, but an installation that does not exist is refused as one the rules do not cover, for a
/// caller whose rules do not cover every installation.
fn not_found_as_refused(judge: &Judge<'_>, req: &InstallationTokenRequest, e: Error) -> Error {
    match e {
        unknown @ Error::UnknownInstallation { .. } => judge.unknown_installation(req.app_id, &req.target, unknown),
        other => other,
    }
}

fn in_target(index: usize, error: Error) -> Error {
    Error::InTarget { index, error: Box::new(error) }
}

/// The audit line of a token handed out.
fn audit_issued(caller: &Caller, app_id: i64, issued: &Issued) {
    audit::credential_issued(
        caller,
        &audit::Issued {
            kind: "installation-token",
            app_id,
            installation_id: Some(issued.record.installation_id),
            token: &issued.token.token,
            expires_at: &issued.token.expires_at_text,
            cached: false, // every caller's token is minted for it
            rule: issued.rule.as_deref(),
        },
    );
}

/// The answer to `req` with the token `issued`.
fn answer(req: InstallationTokenRequest, issued: Issued, app_slug: Option<String>) -> InstallationTokenResponse {
    let (token, record) = (issued.token, issued.record);
    InstallationTokenResponse {
        installation_token: Token::new(token.token.expose()),
        node_id: record.node_id,
        app_id: req.app_id,
        installation_id: Some(record.installation_id),
        app_slug,
        expiration_time: token.expires_at_text,
        requested_scope_down: req.scope_down,
        actual_scope_down: token.granted,
    }
}
