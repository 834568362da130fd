//! Redis checks with the `redis` crate: what an operator does with redis-cli (PING, INFO,
//! any command) and a round trip through the features a platform leans on: keys with a
//! TTL, counters, a stream read back in order, and pub/sub.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Action, KindInfo, NoArgs};

#[cfg(feature = "run")]
mod run;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RedisAction {
    /// PING; output `{reply, latency_ms}`.
    Ping(NoArgs),
    /// INFO, parsed: `{version, role, mode, used_memory, connected_clients, sections}`.
    Info(NoArgs),
    /// Any command; the reply as JSON (`{reply}`).
    Command(CommandSpec),
    /// SET with a TTL and GET, INCR, a stream written and read in order (XADD/XRANGE),
    /// PUBLISH seen by a subscriber; every key removed after.
    Roundtrip(RoundtripSpec),
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// The command and its arguments, each with `${var}`s: `["HSET", "h", "f", "1"]`.
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoundtripSpec {
    /// Stream entries written and read back.
    #[serde(default = "default_entries")]
    pub entries: usize,
    /// TTL of the key written; the check reads it back (and it must not exceed this).
    #[serde(default = "default_ttl", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub ttl: Duration,
}

fn default_entries() -> usize {
    100
}

fn default_ttl() -> Duration {
    Duration::from_secs(60)
}

impl RedisAction {
    fn verb_name(&self) -> &'static str {
        match self {
            Self::Ping(_) => "ping",
            Self::Info(_) => "info",
            Self::Command(_) => "command",
            Self::Roundtrip(_) => "roundtrip",
        }
    }
}

impl KindInfo for RedisAction {
    const NAMESPACE: &'static str = "redis";
    const DEFAULT_SERVICE: Option<&'static str> = Some("redis");
}

impl Action for RedisAction {
    fn verb(&self) -> &'static str {
        self.verb_name()
    }
}
