//! [`Presigner`]: checks what a client wants to upload against `[media]` and
//! signs the URLs it then uses to talk to the bucket directly.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::config::MediaConfig;
use super::keys::ObjectKey;

/// A request a client may make to the bucket, signed: send `method` to `url`
/// with exactly `headers`, before `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    /// The presigned URL.
    pub url: String,
    /// `PUT` or `GET`.
    pub method: &'static str,
    /// Headers covered by the signature; the request must carry them unchanged.
    pub headers: BTreeMap<String, String>,
    /// When the bucket stops accepting the URL.
    pub expires_at: Timestamp,
}

/// Why an upload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefused {
    /// The object is larger than `media.max_bytes`.
    #[error("the upload is {size} bytes; at most {max} bytes are allowed")]
    TooLarge {
        /// The size asked for.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The object is empty.
    #[error("the upload must not be empty")]
    Empty,
    /// The content type is not `type/subtype` or not in `media.allowed_content_types`.
    #[error("content type {content_type:?} is not allowed; allowed: {allowed}")]
    ContentType {
        /// The content type asked for.
        content_type: String,
        /// The allowed patterns, comma-separated.
        allowed: String,
    },
}

/// Signs media URLs for one bucket.
pub struct Presigner {
    bucket: Bucket,
    credentials: Credentials,
    ttl: Duration,
    max_bytes: u64,
    allowed: Vec<String>,
}

impl fmt::Debug for Presigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presigner")
            .field("bucket", &self.bucket.name())
            .field("base_url", &self.bucket.base_url().as_str())
            .field("ttl", &self.ttl)
            .field("max_bytes", &self.max_bytes)
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl Presigner {
    /// A presigner for `config`; `Ok(None)` when media is off.
    ///
    /// # Errors
    ///
    /// A message naming the bad key if `config` does not validate.
    pub fn from_config(config: &MediaConfig) -> Result<Option<Presigner>, String> {
        config.validate()?;
        let (Some(endpoint), Some(bucket), Some(access_key), Some(secret_key)) = (
            &config.endpoint,
            &config.bucket,
            &config.access_key,
            &config.secret_key,
        ) else {
            return Ok(None);
        };
        let mut endpoint = url::Url::parse(endpoint)
            .map_err(|e| format!("media.endpoint: {endpoint:?} is not a URL ({e})"))?;
        if !endpoint.path().ends_with('/') {
            let path = format!("{}/", endpoint.path());
            endpoint.set_path(&path);
        }
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(endpoint, style, bucket.clone(), config.region.clone())
            .map_err(|e| format!("media.endpoint and media.bucket make no bucket URL ({e:?})"))?;
        Ok(Some(Presigner {
            bucket,
            credentials: Credentials::new(access_key.clone(), secret_key.clone()),
            ttl: Duration::from_secs(config.url_ttl_secs),
            max_bytes: config.max_bytes,
            allowed: config.allowed_content_types.clone(),
        }))
    }

    /// Largest object a client may upload, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Checks an upload of `size` bytes of `content_type` and returns the
    /// content type as it must be sent (lowercase).
    ///
    /// # Errors
    ///
    /// [`UploadRefused`] saying which limit the upload breaks.
    pub fn check_upload(&self, content_type: &str, size: u64) -> Result<String, UploadRefused> {
        let normalized = content_type.trim().to_ascii_lowercase();
        if !self.content_type_allowed(&normalized) {
            return Err(UploadRefused::ContentType {
                content_type: content_type.to_owned(),
                allowed: self.allowed.join(", "),
            });
        }
        if size == 0 {
            return Err(UploadRefused::Empty);
        }
        if size > self.max_bytes {
            return Err(UploadRefused::TooLarge {
                size,
                max: self.max_bytes,
            });
        }
        Ok(normalized)
    }

    /// Whether `content_type` (lowercase `type/subtype`, no parameters)
    /// matches one of the allowed patterns.
    fn content_type_allowed(&self, content_type: &str) -> bool {
        let Some((family, subtype)) = content_type.split_once('/') else {
            return false;
        };
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&-^_.+".contains(&b)
                })
        };
        if !token(family) || !token(subtype) {
            return false;
        }
        self.allowed
            .iter()
            .any(|pattern| match pattern.split_once('/') {
                Some((f, "*")) => f == family,
                _ => pattern == content_type,
            })
    }

    /// A presigned `PUT` of `key`, binding its content type and length:
    /// the bucket refuses the upload unless both headers are sent unchanged.
    /// `content_type` must come from [`Presigner::check_upload`].
    pub fn upload(&self, key: &ObjectKey, content_type: &str, size: u64) -> PresignedRequest {
        let now = Timestamp::now();
        let length = size.to_string();
        let mut action = self
            .bucket
            .put_object(Some(&self.credentials), key.as_str());
        action.headers_mut().insert("content-type", content_type);
        action
            .headers_mut()
            .insert("content-length", length.clone());
        let url = action.sign_with_time(self.ttl, &now);
        let headers = BTreeMap::from([
            ("content-type".to_owned(), content_type.to_owned()),
            ("content-length".to_owned(), length),
        ]);
        PresignedRequest {
            url: url.into(),
            method: "PUT",
            headers,
            expires_at: self.expiry(now),
        }
    }

    /// A presigned `GET` of `key`.
    pub fn download(&self, key: &ObjectKey) -> PresignedRequest {
        let now = Timestamp::now();
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key.as_str())
            .sign_with_time(self.ttl, &now);
        PresignedRequest {
            url: url.into(),
            method: "GET",
            headers: BTreeMap::new(),
            expires_at: self.expiry(now),
        }
    }

    /// When a URL signed at `now` expires: `X-Amz-Date` has whole seconds.
    fn expiry(&self, now: Timestamp) -> Timestamp {
        let secs = now
            .as_second()
            .saturating_add(i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX));
        Timestamp::from_second(secs).unwrap_or(Timestamp::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::ids::ConversationId;

    fn presigner() -> Presigner {
        let config = MediaConfig {
            endpoint: Some("http://127.0.0.1:9000".into()),
            bucket: Some("parley-media".into()),
            access_key: Some("AKIDEXAMPLE".into()),
            secret_key: Some("secret".into()),
            allowed_content_types: vec!["image/*".into(), "application/pdf".into()],
            max_bytes: 1000,
            url_ttl_secs: 60,
            ..MediaConfig::default()
        };
        Presigner::from_config(&config)
            .unwrap()
            .expect("media is on")
    }

    #[test]
    fn media_is_off_without_an_endpoint() {
        assert!(Presigner::from_config(&MediaConfig::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn content_types_and_sizes_are_checked() {
        let p = presigner();
        assert_eq!(p.check_upload("image/PNG", 10), Ok("image/png".into()));
        assert_eq!(
            p.check_upload("application/pdf", 1000),
            Ok("application/pdf".into())
        );
        assert!(matches!(
            p.check_upload("application/pdf", 1001),
            Err(UploadRefused::TooLarge {
                size: 1001,
                max: 1000
            })
        ));
        assert_eq!(p.check_upload("image/png", 0), Err(UploadRefused::Empty));
        for bad in [
            "text/html",
            "image",
            "image/",
            "/png",
            "image/png; charset=x",
            "image/png\r\nx-evil: 1",
            "",
        ] {
            assert!(
                matches!(
                    p.check_upload(bad, 10),
                    Err(UploadRefused::ContentType { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn upload_urls_sign_content_type_and_length() {
        let p = presigner();
        let key = ObjectKey::generate(&ConversationId::parse("alice~bob").unwrap()).unwrap();
        let put = p.upload(&key, "image/png", 42);
        assert_eq!(put.method, "PUT");
        assert!(
            put.url.starts_with(&format!(
                "http://127.0.0.1:9000/parley-media/alice~bob/{}?",
                key.as_str().split_once('/').unwrap().1
            )),
            "{}",
            put.url
        );
        assert!(
            put.url
                .contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost"),
            "{}",
            put.url
        );
        assert!(put.url.contains("X-Amz-Expires=60"), "{}", put.url);
        assert_eq!(put.headers["content-type"], "image/png");
        assert_eq!(put.headers["content-length"], "42");
        let now = Timestamp::now().as_second();
        let expires = put.expires_at.as_second();
        assert!(
            (now + 59..=now + 60).contains(&expires),
            "{expires} vs {now}"
        );

        let get = p.download(&key);
        assert_eq!(get.method, "GET");
        assert!(get.url.contains("X-Amz-SignedHeaders=host"), "{}", get.url);
        assert!(get.headers.is_empty());
    }
}
