//! The S3 client: SDK configuration (timeouts, retries, path-style addressing), the
//! object and bucket calls the checks make, and error messages naming the server.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_http_client::{tls, Builder as HttpClientBuilder};
use serde_json::{json, Value};

use crate::kinds::{StepContext, StepError};

/// What S3 says about a written object. The request id is unique per request: handy to
/// find the request in the server's log, and as a unique name in user-style checks.
pub(super) struct Written {
    pub(super) etag: String,
    pub(super) request_id: String,
}

/// A read object: its bytes and what the server says about it.
pub(super) struct Object {
    pub(super) bytes: Vec<u8>,
    pub(super) etag: String,
    pub(super) content_type: Option<String>,
    /// User metadata, sorted so outputs compare and print the same every time.
    pub(super) metadata: BTreeMap<String, String>,
}

/// S3's minimum part size (every part but the last).
const PART_SIZE: usize = 5 * 1024 * 1024;

/// A client plus what error messages need: which service, at which address.
pub(super) struct S3 {
    client: Client,
    /// `minio (http://127.0.0.1:32771)`
    place: String,
}

impl S3 {
    pub(super) fn new(cx: &StepContext<'_>) -> Result<Self, StepError> {
        let ep = cx.endpoint;
        let url = ep.base_url("s3")?;
        let http = HttpClientBuilder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&url)
            .force_path_style(true)
            .region(Region::new(ep.param_or("region", "us-east-1").to_string()))
            .credentials_provider(Credentials::new(
                ep.param("access_key")?,
                ep.param("secret_key")?,
                None,
                None,
                "platform-harness",
            ))
            .http_client(http)
            // A dead endpoint fails in seconds; a 5 MiB part still has time on a slow CI box.
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(30))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .operation_timeout(Duration::from_secs(120))
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .build();
        Ok(Self {
            client: Client::from_conf(config),
            place: format!("{} ({url})", ep.service),
        })
    }

    /// The S3 error code and message when the server answered, else the whole chain
    /// (connection refused, timeout, ...). Never the credentials: the SDK keeps them out.
    fn error<E>(&self, operation: &str, target: &str, e: SdkError<E, HttpResponse>) -> StepError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let what = format!("{operation} {target}");
        StepError::Error(format!(
            "{}: {}: {}",
            self.place,
            what.trim_end(),
            cause(&e)
        ))
    }

    pub(super) async fn list_buckets(&self) -> Result<Value, StepError> {
        let out = self
            .client
            .list_buckets()
            .send()
            .await
            .map_err(|e| self.error("ListBuckets", "", e))?;
        let mut names: Vec<String> = out
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_string))
            .collect();
        names.sort();
        Ok(json!({"count": names.len(), "buckets": names}))
    }

    pub(super) async fn create_bucket(&self, bucket: &str) -> Result<(), StepError> {
        let region = self
            .client
            .config()
            .region()
            .map(|r| r.as_ref().to_string());
        let mut req = self.client.create_bucket().bucket(bucket);
        // us-east-1 is S3's default and must not be named; other regions must be.
        if let Some(r) = region.filter(|r| r != "us-east-1") {
            req = req.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(r.as_str()))
                    .build(),
            );
        }
        req.send()
            .await
            .map_err(|e| self.error("CreateBucket", bucket, e))?;
        Ok(())
    }

    pub(super) async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: Option<String>,
        metadata: HashMap<String, String>,
    ) -> Result<Written, StepError> {
        let out = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .set_content_type(content_type)
            .set_metadata((!metadata.is_empty()).then_some(metadata))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error("PutObject", &format!("{bucket}/{key}"), e))?;
        Ok(Written {
            etag: unquote(out.e_tag()),
            request_id: out.request_id().unwrap_or_default().to_string(),
        })
    }

    /// The object's bytes, ETag, content type and user metadata.
    pub(super) async fn get(&self, bucket: &str, key: &str) -> Result<Object, StepError> {
        let target = format!("{bucket}/{key}");
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("GetObject", &target, e))?;
        let etag = unquote(out.e_tag());
        let content_type = out.content_type().map(str::to_string);
        let metadata = out
            .metadata()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let bytes = out.body.collect().await.map_err(|e| {
            StepError::Error(format!(
                "{}: GetObject {target}: reading the body: {}",
                self.place,
                DisplayErrorContext(&e)
            ))
        })?;
        Ok(Object {
            bytes: bytes.into_bytes().to_vec(),
            etag,
            content_type,
            metadata,
        })
    }

    /// Every `(key, size)` under the prefix, following continuation tokens.
    pub(super) async fn list(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<(String, i64)>, StepError> {
        let mut objects = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| self.error("ListObjectsV2", &format!("{bucket}/{prefix}"), e))?;
            objects.extend(out.contents().iter().map(|o| {
                (
                    o.key().unwrap_or_default().to_string(),
                    o.size().unwrap_or_default(),
                )
            }));
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(objects);
            }
        }
    }

    pub(super) async fn delete(&self, bucket: &str, key: &str) -> Result<(), StepError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("DeleteObject", &format!("{bucket}/{key}"), e))?;
        Ok(())
    }

    /// Upload `data` in parts of `PART_SIZE`; on any error the upload is aborted so it
    /// leaves no parts behind. Returns the number of parts.
    pub(super) async fn multipart(
        &self,
        bucket: &str,
        key: &str,
        data: &[u8],
    ) -> Result<usize, StepError> {
        let target = format!("{bucket}/{key}");
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", &target, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = async {
            let mut parts = Vec::new();
            for (i, chunk) in data.chunks(PART_SIZE).enumerate() {
                let number = i32::try_from(i + 1).unwrap_or(i32::MAX);
                let out = self
                    .client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(chunk.to_vec()))
                    .send()
                    .await
                    .map_err(|e| self.error(&format!("UploadPart {number} of"), &target, e))?;
                // Checksums the SDK computed are echoed back and must be repeated on
                // completion, or the server rejects the part list.
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                        .build(),
                );
            }
            let count = parts.len();
            self.client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.error("CompleteMultipartUpload", &target, e))?;
            Ok(count)
        }
        .await;
        if result.is_err() {
            // Best effort: the original error is what matters.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    /// Delete every object in the bucket, then the bucket.
    pub(super) async fn empty_and_delete(&self, bucket: &str) -> Result<(), StepError> {
        for (key, _) in self.list(bucket, "").await? {
            self.delete(bucket, &key).await?;
        }
        self.client
            .delete_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| self.error("DeleteBucket", bucket, e))?;
        Ok(())
    }

    /// `Ok(false)` when HeadBucket says 404.
    pub(super) async fn bucket_exists(&self, bucket: &str) -> Result<bool, StepError> {
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => Ok(false),
            Err(e) => Err(self.error("HeadBucket", bucket, e)),
        }
    }
}

/// `NoSuchBucket (HTTP 404): The specified bucket does not exist (request id 1870...)`.
/// An answer without an S3 error code (a proxy's page, an empty 5xx) gives its status and
/// a snippet of its body; no answer gives the SDK's error chain, each cause's Display (never
/// a `{:?}` dump of the SDK's types).
fn cause<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let raw = e.raw_response();
    let status = raw.map(|r| r.status().as_u16());
    let mut out = match (describe(e.code(), e.message(), status), raw) {
        (Some(described), _) => described,
        (None, Some(r)) => {
            let body = r.body().bytes().unwrap_or_default();
            let text = String::from_utf8_lossy(body);
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let mut s = format!("HTTP {} without an S3 error code", r.status().as_u16());
            if !text.is_empty() {
                s.push_str(&format!(": {}", crate::mask::clip(&text, 200)));
            }
            s
        }
        (None, None) => DisplayErrorContext(e).to_string(),
    };
    if let Some(id) = e.request_id().filter(|id| !id.is_empty()) {
        out.push_str(&format!(" (request id {id})"));
    }
    out
}

/// `NoSuchBucket (HTTP 404): The specified bucket does not exist`, or `None` when the
/// server gave no error code (no answer at all).
fn describe(code: Option<&str>, message: Option<&str>, status: Option<u16>) -> Option<String> {
    let mut out = code?.to_string();
    if let Some(s) = status {
        out.push_str(&format!(" (HTTP {s})"));
    }
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        out.push_str(&format!(": {m}"));
    }
    Some(out)
}

/// ETags arrive quoted (`"d41d8cd9..."`); suites compare the bare value.
fn unquote(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use rstest::rstest;

    #[rstest]
    #[case(12 * 1024 * 1024, vec![PART_SIZE, PART_SIZE, 2 * 1024 * 1024])]
    #[case(PART_SIZE, vec![PART_SIZE])]
    #[case(1024, vec![1024])]
    fn cuts_parts(#[case] len: usize, #[case] parts: Vec<usize>) {
        let data = vec![0u8; len];
        let sizes: Vec<usize> = data.chunks(PART_SIZE).map(<[u8]>::len).collect();
        assert_eq!(sizes, parts);
    }

    #[rstest]
    #[case(
        Some("NoSuchBucket"),
        Some("The specified bucket does not exist"),
        Some(404),
        Some("NoSuchBucket (HTTP 404): The specified bucket does not exist")
    )]
    #[case(Some("NotFound"), None, Some(404), Some("NotFound (HTTP 404)"))]
    #[case(Some("InvalidAccessKeyId"), Some(""), None, Some("InvalidAccessKeyId"))]
    #[case(None, Some("x"), Some(500), None)]
    fn describes_service_errors(
        #[case] code: Option<&str>,
        #[case] message: Option<&str>,
        #[case] status: Option<u16>,
        #[case] wanted: Option<&str>,
    ) {
        assert_eq!(describe(code, message, status).as_deref(), wanted);
    }

    fn answer(status: u16, request_id: Option<&str>, body: &str) -> HttpResponse {
        let mut r = HttpResponse::new(
            status.try_into().unwrap(),
            aws_sdk_s3::primitives::SdkBody::from(body),
        );
        if let Some(id) = request_id {
            r.headers_mut().insert("x-amz-request-id", id.to_string());
        }
        r
    }

    #[rstest]
    #[case::service_error(
        SdkError::service_error(
            GetObjectError::generic(
                ErrorMetadata::builder()
                    .code("NoSuchBucket")
                    .message("The specified bucket does not exist")
                    .build(),
            ),
            answer(404, Some("1870A2B3C4D5E6F7"), "<Error>...</Error>"),
        ),
        "NoSuchBucket (HTTP 404): The specified bucket does not exist (request id 1870A2B3C4D5E6F7)"
    )]
    #[case::no_code_from_a_proxy(
        SdkError::service_error(
            GetObjectError::generic(ErrorMetadata::builder().build()),
            answer(502, None, "<html>\n<h1>502 Bad Gateway</h1></html>"),
        ),
        "HTTP 502 without an S3 error code: <html> <h1>502 Bad Gateway</h1></html>"
    )]
    #[case::unreadable_answer(
        SdkError::response_error("truncated XML", answer(500, Some("ID9"), "")),
        "HTTP 500 without an S3 error code (request id ID9)"
    )]
    #[case::no_answer(
        SdkError::timeout_error("operation timed out after 60s"),
        "request has timed out: operation timed out after 60s"
    )]
    fn error_messages_name_code_message_and_request_id(
        #[case] e: SdkError<GetObjectError, HttpResponse>,
        #[case] wanted: &str,
    ) {
        let got = cause(&e);
        assert!(got.contains(wanted), "{got}");
        // No Debug dump of the SDK's types.
        for debug in [
            "ErrorMetadata {",
            "ServiceError {",
            "Response {",
            "Some(",
            "extras:",
        ] {
            assert!(!got.contains(debug), "{got}");
        }
    }

    #[rstest]
    #[case(
        Some("\"d41d8cd98f00b204e9800998ecf8427e\""),
        "d41d8cd98f00b204e9800998ecf8427e"
    )]
    #[case(Some("abc-3"), "abc-3")]
    #[case(None, "")]
    fn unquotes_etags(#[case] etag: Option<&str>, #[case] wanted: &str) {
        assert_eq!(unquote(etag), wanted);
    }
}
