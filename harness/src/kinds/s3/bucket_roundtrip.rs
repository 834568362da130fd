//! `s3.bucket`: the full round trip in a scratch bucket of its own, timed step by step.

use std::time::Instant;

use serde_json::{json, Map, Value};

use super::client::S3;
use super::payload::{pattern, to_len};
use super::BucketSpec;
use crate::kinds::StepError;

/// The round trip in a bucket of its own, so concurrent runs and real data are never
/// touched. The bucket is emptied and deleted even when a step in between fails.
pub(super) async fn round_trip(s3: &S3, spec: &BucketSpec) -> Result<Value, StepError> {
    let (small_len, big_len) = (to_len(spec.object_size)?, to_len(spec.multipart_size)?);
    if big_len == 0 {
        return Err(StepError::Error(
            "s3.bucket: `multipart_size` must be more than 0".into(),
        ));
    }
    let bucket = format!("harness-{}", crate::kinds::unique_id(8));
    let small_key = format!("{}small.bin", spec.prefix);
    let big_key = format!("{}multipart.bin", spec.prefix);
    let mut timings = Map::new();

    let t = Instant::now();
    s3.create_bucket(&bucket).await?;
    timings.insert("create_bucket".into(), millis(t));

    let result = async {
        let small = pattern(1, small_len);
        let big = pattern(2, big_len);

        let t = Instant::now();
        s3.put(&bucket, &small_key, small.clone(), None, Default::default())
            .await?;
        timings.insert("put".into(), millis(t));

        let t = Instant::now();
        let parts = s3.multipart(&bucket, &big_key, &big).await?;
        timings.insert("multipart_upload".into(), millis(t));

        let t = Instant::now();
        let listed = s3.list(&bucket, &spec.prefix).await?;
        timings.insert("list".into(), millis(t));
        let mut keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort();
        let mut wanted = vec![small_key.as_str(), big_key.as_str()];
        wanted.sort();
        if keys != wanted {
            return Err(StepError::Failure(format!(
                "expected listing {bucket}/{} to give {wanted:?}, got {keys:?}",
                spec.prefix
            )));
        }

        let t = Instant::now();
        for (key, wrote) in [(&small_key, &small), (&big_key, &big)] {
            let got = s3.get(&bucket, key).await?.bytes;
            compare(key, wrote, &got).map_err(StepError::Failure)?;
        }
        timings.insert("get".into(), millis(t));
        Ok(parts)
    }
    .await;

    let t = Instant::now();
    let cleanup = s3.empty_and_delete(&bucket).await;
    timings.insert("delete".into(), millis(t));
    let parts = result?;
    cleanup?;

    if s3.bucket_exists(&bucket).await? {
        return Err(StepError::Failure(format!(
            "expected bucket {bucket} to be gone after DeleteBucket, HeadBucket still finds it"
        )));
    }
    Ok(json!({
        "bucket": bucket,
        "keys": [small_key, big_key],
        "sizes": {"object": small_len, "multipart": big_len},
        "parts": parts,
        "timings_ms": timings,
    }))
}

/// Why `got` is not `wrote`, if it is not.
fn compare(key: &str, wrote: &[u8], got: &[u8]) -> Result<(), String> {
    if wrote.len() != got.len() {
        return Err(format!(
            "expected {key} to read back {} bytes, got {}",
            wrote.len(),
            got.len()
        ));
    }
    match wrote.iter().zip(got).position(|(a, b)| a != b) {
        Some(at) => Err(format!(
            "expected {key} to read back the bytes written, got different bytes from offset {at}"
        )),
        None => Ok(()),
    }
}

fn millis(since: Instant) -> Value {
    json!((since.elapsed().as_secs_f64() * 10_000.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(b"abc", b"abc", None)]
    #[case(b"abc", b"ab", Some("expected k to read back 3 bytes, got 2"))]
    #[case(b"abc", b"abd", Some("got different bytes from offset 2"))]
    fn compares_bytes(#[case] wrote: &[u8], #[case] got: &[u8], #[case] wanted: Option<&str>) {
        match (compare("k", wrote, got), wanted) {
            (Ok(()), None) => {}
            (Err(e), Some(w)) => assert!(e.contains(w), "{e}"),
            (r, w) => panic!("got {r:?}, wanted {w:?}"),
        }
    }
}
