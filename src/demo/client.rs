//! A plain hyper client that keeps no cookies — like the connectors that forget them between
//! operations. Used by the demo, the tests and the benches.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid request: {0}")]
    Request(#[from] http::Error),
    #[error("request failed: {0}")]
    Send(#[from] hyper_util::client::legacy::Error),
    #[error("reading the response body failed: {0}")]
    Body(#[from] hyper::Error),
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

/// A response with its whole body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Clone)]
pub struct CookielessClient {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Default for CookielessClient {
    fn default() -> Self {
        CookielessClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeout: Duration::from_secs(30),
        }
    }
}

impl CookielessClient {
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, ClientError> {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body.into()))?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, ClientError>(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Reply, ClientError> {
        self.send(Method::GET, url, headers, Bytes::new()).await
    }
}

impl CookielessClient {
    /// GETs like Apache HttpClient 4 does: no credentials first; on a 401, it reads only the
    /// first challenge of each `WWW-Authenticate` line, answers with Basic if one of those is
    /// Basic, and otherwise gives up (it ignores Bearer). The field's Java connectors do this.
    pub async fn challenge_driven_get(
        &self,
        url: &str,
        username: &str,
        password: &str,
    ) -> Result<Reply, ClientError> {
        let first = self.get(url, &[]).await?;
        if first.status != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        let offers_basic = first
            .headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|line| line.to_str().ok())
            .filter_map(|line| line.split_whitespace().next())
            .any(|scheme| scheme.trim_end_matches(',').eq_ignore_ascii_case("basic"));
        if !offers_basic {
            return Ok(first);
        }
        let credentials = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{username}:{password}"),
        );
        self.get(url, &[("authorization", &format!("Basic {credentials}"))])
            .await
    }
}
