//! `empty-lambda`: the floor a function's cold start is measured against. Only the Lambda runtime
//! (`lambda_http`, the functions' features and release profile) with a handler that answers 200,
//! no logging, no environment, no SDK, no TLS. `appcreds-local --cold-starts N` measures it next to
//! the functions when it is in the binary directory.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::builder().status(200).body(Body::from("{}"))?)
    }))
    .await
}
