//! One HTTP request to a notifier, how it is sent, and what its answer means
//! for the retry loop.

use reqwest::StatusCode;

/// A POST a notifier builds for one notification (rebuilt for every try, so
/// that signatures and timestamps are fresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRequest {
    /// Where to POST.
    pub url: String,
    /// Header names and values.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl PushRequest {
    /// The value of header `name` (exact, lowercase), if the request has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What came of one try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The notifier accepted it (2xx).
    Delivered,
    /// It may work later: a network error, a timeout, 408, 429 or 5xx.
    Retry(String),
    /// It will not work as it is: any other answer.
    GiveUp(String),
}

/// Sends `request` with `client` and classifies the answer.
pub async fn send(client: &reqwest::Client, request: &PushRequest) -> Outcome {
    let mut builder = client.post(&request.url).body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    match builder.send().await {
        Ok(response) => classify(response.status()),
        Err(e) => Outcome::Retry(format!("request failed: {e}")),
    }
}

/// What an answer with `status` means.
pub fn classify(status: StatusCode) -> Outcome {
    if status.is_success() {
        Outcome::Delivered
    } else if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Outcome::Retry(format!("answered {status}"))
    } else {
        Outcome::GiveUp(format!("answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(StatusCode::OK), Outcome::Delivered);
        assert_eq!(classify(StatusCode::NO_CONTENT), Outcome::Delivered);
        for retry in [
            StatusCode::REQUEST_TIMEOUT,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            assert!(matches!(classify(retry), Outcome::Retry(_)), "{retry}");
        }
        for give_up in [
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::NOT_FOUND,
            StatusCode::MOVED_PERMANENTLY,
        ] {
            assert!(matches!(classify(give_up), Outcome::GiveUp(_)), "{give_up}");
        }
    }

    #[test]
    fn headers_are_found_by_name() {
        let r = PushRequest {
            url: "http://x".into(),
            headers: vec![("title", "t".into())],
            body: vec![],
        };
        assert_eq!(r.header("title"), Some("t"));
        assert_eq!(r.header("tags"), None);
    }
}
