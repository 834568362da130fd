//! S3 checks with aws-sdk-s3, the client a Rust service would use, against MinIO or any
//! S3-compatible endpoint (path-style addressing, static credentials).

#[cfg(feature = "run")]
mod bucket_roundtrip;
#[cfg(feature = "run")]
mod client;
#[cfg(feature = "run")]
mod payload;
#[cfg(feature = "run")]
mod steps;

use std::collections::BTreeMap;

use bytesize::ByteSize;
use schemars::JsonSchema;
use serde::Deserialize;
#[cfg(feature = "run")]
use serde_json::Value;

#[cfg(feature = "run")]
use super::Run;
use super::{Action, KindInfo};
#[cfg(feature = "run")]
use super::{StepContext, StepError};
#[cfg(feature = "run")]
use client::S3;
#[cfg(feature = "run")]
use futures::future::BoxFuture;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum S3Action {
    /// Output `{buckets: [...], count}`, names sorted.
    ListBuckets(super::NoArgs),
    /// Create a scratch bucket, write a small and a multipart object, list, read back,
    /// delete everything, and check the bucket is gone.
    Bucket(BucketSpec),
    /// Write one object from `body` (text), `body_base64` (any bytes) or `size` (generated
    /// bytes), with an optional content type and user metadata.
    Put(PutSpec),
    /// Output `{key, size, etag, content_type, metadata, body | body_base64}`: `body` when
    /// the object is UTF-8 text, else `body_base64` (standard alphabet, padded).
    Get(ObjectSpec),
    /// Output `{keys: [...], count, objects: [{key, size}]}`.
    List(ListSpec),
    Delete(ObjectSpec),
    /// Every object under `prefix` deleted (a table's directory); a non-empty prefix is
    /// required, so a typo cannot empty the bucket. Output `{deleted}`.
    DeletePrefix(ListSpec),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    #[serde(default = "default_object_size")]
    #[schemars(schema_with = "byte_size")]
    pub object_size: ByteSize,
    /// Size of the multipart object; cut into parts of 5 MiB (S3's minimum but for the last).
    #[serde(default = "default_multipart_size")]
    #[schemars(schema_with = "byte_size")]
    pub multipart_size: ByteSize,
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

/// Sizes are written as bytes (`1024`) or with a unit (`"5 MiB"`).
fn byte_size(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": ["integer", "string"],
        "description": "bytes, or a size with a unit such as \"5 MiB\""
    })
}

fn default_object_size() -> ByteSize {
    ByteSize::kib(1)
}

fn default_multipart_size() -> ByteSize {
    ByteSize::mib(12)
}

fn default_prefix() -> String {
    "harness/".into()
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSpec {
    pub bucket: String,
    pub key: String,
    pub body: Option<String>,
    /// Binary bodies: the bytes in base64 (standard alphabet, padding optional).
    pub body_base64: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "byte_size")]
    pub size: Option<ByteSize>,
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`); S3 servers keep the names in lower case.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectSpec {
    pub bucket: String,
    pub key: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSpec {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
}

impl S3Action {
    fn verb_name(&self) -> &'static str {
        match self {
            Self::ListBuckets(_) => "list_buckets",
            Self::Bucket(_) => "bucket",
            Self::Put(_) => "put",
            Self::Get(_) => "get",
            Self::List(_) => "list",
            Self::Delete(_) => "delete",
            Self::DeletePrefix(_) => "delete_prefix",
        }
    }

    #[cfg(feature = "run")]
    pub async fn execute(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        let s3 = S3::new(cx)?;
        match self {
            Self::ListBuckets(_) => s3.list_buckets().await,
            Self::Bucket(spec) => bucket_roundtrip::round_trip(&s3, spec).await,
            Self::Put(p) => steps::put(&s3, cx, p).await,
            Self::Get(o) => steps::get(&s3, cx, o).await,
            Self::List(l) => steps::list(&s3, cx, l).await,
            Self::Delete(o) => steps::delete(&s3, cx, o).await,
            Self::DeletePrefix(l) => steps::delete_prefix(&s3, cx, l).await,
        }
    }
}

impl KindInfo for S3Action {
    const NAMESPACE: &'static str = "s3";
    const DEFAULT_SERVICE: Option<&'static str> = Some("minio");
}

impl Action for S3Action {
    fn verb(&self) -> &'static str {
        self.verb_name()
    }
}

#[cfg(feature = "run")]
impl Run for S3Action {
    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(self.execute(cx))
    }
}

#[cfg(all(test, feature = "run"))]
mod tests {
    use super::*;
    use rstest::rstest;

    #[derive(Deserialize, JsonSchema)]
    struct Step {
        s3: S3Action,
    }

    fn parse(src: &str) -> Result<S3Action, String> {
        toml::from_str::<Step>(src)
            .map(|s| s.s3)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn bucket_defaults() {
        let S3Action::Bucket(b) = parse("s3.bucket = {}").unwrap() else {
            panic!("not a bucket action")
        };
        assert_eq!(b.object_size, ByteSize::kib(1));
        assert_eq!(b.multipart_size, ByteSize::mib(12));
        assert_eq!(b.prefix, "harness/");
    }

    #[rstest]
    #[case(
        r#"s3.bucket = { multipart_size = "7 MiB", object_size = 10 }"#,
        "bucket"
    )]
    #[case("s3.list_buckets = {}", "list_buckets")]
    #[case(r#"s3.put = { bucket = "lake", key = "a", size = "1 KiB" }"#, "put")]
    #[case(
        r#"s3.put = { bucket = "lake", key = "a", body_base64 = "AP8=", content_type = "application/octet-stream", metadata = { owner = "x" } }"#,
        "put"
    )]
    #[case(r#"s3.get = { bucket = "lake", key = "a" }"#, "get")]
    #[case(r#"s3.list = { bucket = "lake" }"#, "list")]
    #[case(r#"s3.delete = { bucket = "lake", key = "a" }"#, "delete")]
    #[case(
        r#"s3.delete_prefix = { bucket = "lake", prefix = "t/" }"#,
        "delete_prefix"
    )]
    fn parses_verbs(#[case] src: &str, #[case] verb: &str) {
        assert_eq!(parse(src).unwrap().verb(), verb);
    }

    #[rstest]
    #[case(r#"s3.bucket = { size = "1 KiB" }"#, "unknown field `size`")]
    #[case("s3.list_buckets = { prefix = \"a\" }", "unknown field `prefix`")]
    #[case(r#"s3.get = { bucket = "lake" }"#, "missing field `key`")]
    #[case(r#"s3.copy = { bucket = "lake" }"#, "unknown variant `copy`")]
    #[case(
        r#"s3.put = { bucket = "lake", key = "a", metadata = { n = 1 } }"#,
        "invalid type: integer"
    )]
    fn rejects_bad_specs(#[case] src: &str, #[case] wanted: &str) {
        let err = parse(src).unwrap_err();
        assert!(err.contains(wanted), "{err}");
    }
}
