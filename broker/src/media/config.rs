//! `[media]`: the S3-compatible bucket media is uploaded to, and what may be
//! uploaded. Media is off unless the endpoint, bucket and both keys are set.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest presigned URL lifetime S3 accepts (7 days), in seconds.
pub const MAX_URL_TTL_SECS: u64 = 7 * 24 * 3600;

/// Media uploads and downloads through presigned S3 URLs.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Base URL of the S3-compatible service, e.g. `https://s3.eu-west-1.amazonaws.com`
    /// or `http://minio.internal:9000`. Clients reach it directly through the URLs.
    pub endpoint: Option<String>,
    /// The bucket (it must exist).
    pub bucket: Option<String>,
    /// The region the URLs are signed for.
    pub region: String,
    /// Access key id.
    pub access_key: Option<String>,
    /// Secret access key.
    pub secret_key: Option<String>,
    /// Path-style URLs (`{endpoint}/{bucket}/{key}`, as MinIO wants) instead
    /// of virtual-hosted ones (`{bucket}.{endpoint host}/{key}`).
    pub path_style: bool,
    /// Lifetime of a presigned URL, in seconds (1 to 604800).
    pub url_ttl_secs: u64,
    /// Largest object a client may upload, in bytes.
    pub max_bytes: u64,
    /// Content types a client may upload: `type/subtype`, or `type/*` for a
    /// whole family.
    pub allowed_content_types: Vec<String>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            endpoint: None,
            bucket: None,
            region: "us-east-1".into(),
            access_key: None,
            secret_key: None,
            path_style: true,
            url_ttl_secs: 900,
            max_bytes: 25 * 1024 * 1024,
            allowed_content_types: [
                "image/jpeg",
                "image/png",
                "image/gif",
                "image/webp",
                "video/mp4",
                "audio/mpeg",
                "audio/ogg",
                "audio/mp4",
                "application/pdf",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl fmt::Debug for MediaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("path_style", &self.path_style)
            .field("url_ttl_secs", &self.url_ttl_secs)
            .field("max_bytes", &self.max_bytes)
            .field("allowed_content_types", &self.allowed_content_types)
            .finish()
    }
}

impl MediaConfig {
    /// Whether media is configured (endpoint, bucket and both keys set).
    pub fn enabled(&self) -> bool {
        self.endpoint.is_some()
            && self.bucket.is_some()
            && self.access_key.is_some()
            && self.secret_key.is_some()
    }

    /// Checks what serde cannot. The error names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        let set = [
            ("media.endpoint", self.endpoint.is_some()),
            ("media.bucket", self.bucket.is_some()),
            ("media.access_key", self.access_key.is_some()),
            ("media.secret_key", self.secret_key.is_some()),
        ];
        if set.iter().any(|(_, s)| *s) {
            if let Some((missing, _)) = set.iter().find(|(_, s)| !*s) {
                return Err(format!(
                    "{missing} is required once any of media.endpoint, media.bucket, \
                     media.access_key and media.secret_key is set"
                ));
            }
        }
        if let Some(endpoint) = &self.endpoint {
            let url = url::Url::parse(endpoint)
                .map_err(|e| format!("media.endpoint: {endpoint:?} is not a URL ({e})"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!(
                    "media.endpoint: {endpoint:?} must be an http or https URL"
                ));
            }
        }
        if let Some(bucket) = &self.bucket {
            let ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !ok {
                return Err(format!(
                    "media.bucket {bucket:?} must be 3 to 63 lowercase letters, digits, '-' or '.'"
                ));
            }
        }
        if self.region.is_empty() {
            return Err("media.region must not be empty".into());
        }
        if !(1..=MAX_URL_TTL_SECS).contains(&self.url_ttl_secs) {
            return Err(format!(
                "media.url_ttl_secs must be between 1 and {MAX_URL_TTL_SECS}"
            ));
        }
        if self.max_bytes == 0 {
            return Err("media.max_bytes must be positive".into());
        }
        for pattern in &self.allowed_content_types {
            if !valid_pattern(pattern) {
                return Err(format!(
                    "media.allowed_content_types: {pattern:?} is not type/subtype or type/*"
                ));
            }
        }
        Ok(())
    }
}

/// Whether `pattern` is a lowercase `type/subtype` or `type/*`.
fn valid_pattern(pattern: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&-^_.+".contains(&b))
    };
    match pattern.split_once('/') {
        Some((family, "*")) => token(family),
        Some((family, subtype)) => token(family) && token(subtype),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured() -> MediaConfig {
        MediaConfig {
            endpoint: Some("http://127.0.0.1:9000".into()),
            bucket: Some("parley-media".into()),
            access_key: Some("AKIA".into()),
            secret_key: Some("secret".into()),
            ..MediaConfig::default()
        }
    }

    #[test]
    fn off_by_default() {
        let c = MediaConfig::default();
        assert!(!c.enabled());
        c.validate().expect("defaults are valid");
    }

    #[test]
    fn complete_settings_enable_media() {
        let c = configured();
        assert!(c.enabled());
        c.validate().expect("valid");
    }

    #[test]
    fn partial_settings_name_what_is_missing() {
        let c = MediaConfig {
            secret_key: None,
            ..configured()
        };
        assert!(c.validate().unwrap_err().contains("media.secret_key"));
    }

    #[test]
    fn bad_values_are_refused() {
        let bad = [
            MediaConfig {
                endpoint: Some("s3://bucket".into()),
                ..configured()
            },
            MediaConfig {
                bucket: Some("Has_Capitals".into()),
                ..configured()
            },
            MediaConfig {
                url_ttl_secs: 0,
                ..configured()
            },
            MediaConfig {
                url_ttl_secs: MAX_URL_TTL_SECS + 1,
                ..configured()
            },
            MediaConfig {
                allowed_content_types: vec!["image".into()],
                ..configured()
            },
            MediaConfig {
                allowed_content_types: vec!["Image/PNG".into()],
                ..configured()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?} must be refused");
        }
    }

    #[test]
    fn the_secret_key_is_redacted() {
        let shown = format!("{:?}", configured());
        assert!(!shown.contains("\"secret\""), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
