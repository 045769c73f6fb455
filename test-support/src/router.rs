//! One request through an in-process service (an axum `Router`, or anything else that is a
//! tower `Service` of HTTP requests) with `oneshot`: no socket, no process.

use std::fmt::Debug;

use axum::{
    body::{Body, HttpBody},
    http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode, header},
};
use http_body_util::BodyExt;
use tower::{Service, ServiceExt};

/// What a test reads of an answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub allow: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
}

/// `method path` with an empty body through a clone of `app`; panics if the service fails or
/// the body is not UTF-8.
pub async fn call<S, B>(app: &S, method: Method, path: &str) -> Answer
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: Debug,
    B: HttpBody,
    B::Error: Debug,
{
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("the service");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        allow: text(&headers, header::ALLOW),
        content_type: text(&headers, header::CONTENT_TYPE),
        body: String::from_utf8(bytes.to_vec()).expect("utf-8 body"),
    }
}

fn text(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| v.to_str().expect("ascii header").to_owned())
}
