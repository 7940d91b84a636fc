//! The Lambda Function URL transport: a Function URL event becomes a [`RawRequest`] (with the
//! caller from the request context, and only from there), an [`HttpReply`] becomes the response.

use std::convert::Infallible;
use std::sync::Arc;

use appcreds_wire::{ERROR_TYPE_HEADER, OIDC_TOKEN_HEADER};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response, service_fn};

use crate::deadline;
use crate::http::Operation;
use crate::http::endpoint::{Endpoint, HttpReply, RawRequest};

impl<O: Operation> Endpoint<O> {
    /// Answers one Function URL request.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let caller_arn = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => {
                ctx.authorizer.as_ref().and_then(|a| a.iam.as_ref()).and_then(|iam| iam.user_arn.as_deref())
            }
            _ => None,
        };
        let raw = RawRequest {
            method: req.method().as_str(),
            path: req.uri().path(),
            content_type: req.headers().get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
            body: req.body().as_ref(),
            caller_arn,
            oidc_token: req.headers().get(OIDC_TOKEN_HEADER).map(HeaderValue::as_bytes),
        };
        // The runtime API's deadline for this invocation (none where no runtime set a real one).
        let deadline = req.lambda_context_ref().and_then(|c| deadline::from_epoch_millis(c.deadline));
        response(self.respond(raw, deadline).await)
    }
}

fn response(reply: HttpReply) -> Response<Body> {
    let mut response = Response::new(Body::Text(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(name) = reply.error_type {
        headers.insert(ERROR_TYPE_HEADER, HeaderValue::from_static(name.as_str()));
    }
    response
}

/// Serves `endpoint` behind the Function URL until the runtime stops the process.
pub async fn serve<O: Operation>(endpoint: Endpoint<O>) -> Result<(), lambda_http::Error> {
    let endpoint = Arc::new(endpoint);
    lambda_http::run(service_fn(move |req: Request| {
        let endpoint = endpoint.clone();
        async move { Ok::<_, Infallible>(endpoint.handle(req).await) }
    }))
    .await
}
