//! The backends of the same API: the shipped Lambda bootstrap behind API Gateway's REST
//! front, the same bootstrap behind a Lambda Function URL (payload format 2.0), and
//! `counterctl serve`. Conformance cases are written once, against [`Backend`], and run
//! against each by [`on_both_backends!`] (named when there were two).

use std::future::Future;

use serde_json::Value;

use super::serve::Serve;
use super::{LambdaStack, send};

/// A running counter API, whichever backend answers it, and plain HTTP to it.
pub(crate) trait Backend: Send + Sync + 'static {
    /// What the API's paths go after: the stage URL (`http://127.0.0.1:PORT/prod`) of
    /// API Gateway, the root URL of a Function URL or of `serve`.
    fn base_url(&self) -> &str;

    fn http(&self) -> &reqwest::Client;

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base_url())
    }

    fn post(&self, path_and_query: &str) -> impl Future<Output = (u16, Value)> + Send {
        send(self.http().post(self.url(path_and_query)))
    }

    fn get(&self, path_and_query: &str) -> impl Future<Output = (u16, Value)> + Send {
        send(self.http().get(self.url(path_and_query)))
    }

    /// One plain increment, which must succeed.
    fn increment(&self, counter: &str) -> impl Future<Output = i64> + Send {
        let response = send(self.http().post(self.url(&format!("/counter/increment?counter={counter}"))));
        async move {
            let (status, body) = response.await;
            assert_eq!(status, 200, "{body}");
            body["new_value"].as_i64().expect("new_value is an integer")
        }
    }

    /// The counter's value, `None` when it does not exist.
    fn value(&self, counter: &str) -> impl Future<Output = Option<i64>> + Send {
        let response = send(self.http().get(self.url(&format!("/counter/value?counter={counter}"))));
        async move {
            match response.await {
                (200, body) => Some(body["value"].as_i64().expect("value is an integer")),
                (404, _) => None,
                (status, body) => panic!("unexpected {status} {body}"),
            }
        }
    }
}

/// `clients` tasks each increment `counter` `per_client` times at once; asserts that every
/// value is unique, each client's values increase, and together they are 1..=total.
pub(crate) async fn assert_unique_gapless_increments(
    api: std::sync::Arc<impl Backend>,
    counter: &'static str,
    clients: usize,
    per_client: usize,
) {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let api = std::sync::Arc::clone(&api);
            tokio::spawn(async move {
                let mut values = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    values.push(api.increment(counter).await);
                }
                values
            })
        })
        .collect();
    let mut all = std::collections::BTreeSet::new();
    for task in tasks {
        let values = task.await.unwrap();
        assert!(values.windows(2).all(|pair| pair[0] < pair[1]), "each client's values increase: {values:?}");
        for value in values {
            assert!(all.insert(value), "{value} was handed out twice");
        }
    }
    let total = i64::try_from(clients * per_client).unwrap();
    assert_eq!(all, (1..=total).collect(), "unique and gapless");
    assert_eq!(api.value(counter).await, Some(total));
}

/// A backend shared between tasks is the same backend.
impl<B: Backend> Backend for std::sync::Arc<B> {
    fn base_url(&self) -> &str {
        (**self).base_url()
    }

    fn http(&self) -> &reqwest::Client {
        (**self).http()
    }
}

impl Backend for LambdaStack {
    fn base_url(&self) -> &str {
        &self.api.url
    }

    fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

impl Backend for Serve {
    fn base_url(&self) -> &str {
        &self.url
    }

    fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// Writes a test case once and runs it against every backend: the case becomes a module
/// holding the tests `lambda` (REST front), `function_url` and `serve`, which start their
/// backend and hand it to the body as `Arc<impl Backend>`. Cases marked `concurrent` run
/// on several threads, with the Lambda function in four execution environments.
macro_rules! on_both_backends {
    ($(#[$meta:meta])* async fn $case:ident($api:ident) $body:block) => {
        $(#[$meta])*
        mod $case {
            use super::*;

            #[tokio::test]
            async fn lambda() {
                check(std::sync::Arc::new($crate::support::LambdaStack::start(1).await)).await
            }

            #[tokio::test]
            async fn function_url() {
                let auth = $crate::support::function_url::AuthType::None;
                check(std::sync::Arc::new($crate::support::function_url::FunctionUrlStack::start(1, auth).await)).await
            }

            #[tokio::test]
            async fn serve() {
                check(std::sync::Arc::new($crate::support::serve::Serve::start().await)).await
            }

            async fn check($api: std::sync::Arc<impl $crate::support::backend::Backend>) $body
        }
    };
    (concurrent $(#[$meta:meta])* async fn $case:ident($api:ident) $body:block) => {
        $(#[$meta])*
        mod $case {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn lambda() {
                check(std::sync::Arc::new($crate::support::LambdaStack::start(4).await)).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn function_url() {
                let auth = $crate::support::function_url::AuthType::None;
                check(std::sync::Arc::new($crate::support::function_url::FunctionUrlStack::start(4, auth).await)).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn serve() {
                check(std::sync::Arc::new($crate::support::serve::Serve::start().await)).await
            }

            async fn check($api: std::sync::Arc<impl $crate::support::backend::Backend>) $body
        }
    };
}
pub(crate) use on_both_backends;
